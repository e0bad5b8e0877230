"""ParameterLayout: where a step's parameters live (flat buffers per dtype, or one array each),
flatten and split, gather and assign, relaying between layouts, gradient shape checks."""

import numpy as np
import pytest

import portanet
from portanet import Dense
from portanet.backend import to_numpy
from portanet.layers.parameters import ParameterLayout


def mixed():
    """A float64 and a float32 Dense with known weights, and their four slots interleaved:
    float64 weights, float32 weights, float64 bias, float32 bias."""
    wide, narrow = Dense(3, 1, dtype="float64"), Dense(2, 3, dtype="float32")
    gen = np.random.default_rng(0)
    wide.set_weights([gen.normal(size=(3, 1)), gen.normal(size=(1,))])
    narrow.set_weights([gen.normal(size=(2, 3)), gen.normal(size=(3,))])
    slots = [(wide, "weights"), (narrow, "weights"), (wide, "bias"), (narrow, "bias")]
    return slots, [to_numpy(getattr(layer, name)).copy() for layer, name in slots]


def dtype_of(array):
    return to_numpy(array).dtype.name


def test_flat_layout_groups_by_dtype_and_splits_back(backend):
    slots, values = mixed()
    layout = ParameterLayout(slots)
    assert layout.flat and len(layout) == 4
    assert layout.dtypes == ["float32", "float64"] and layout.sizes == [6 + 3, 3 + 1]
    assert layout.places == [(1, 0, 3, (3, 1)), (0, 0, 6, (2, 3)), (1, 3, 4, (1,)),
                             (0, 6, 9, (3,))]
    flats = layout.gather()
    assert len(flats) == 2 and [dtype_of(f) for f in flats] == ["float32", "float64"]
    np.testing.assert_array_equal(to_numpy(flats[0]), np.concatenate(
        [values[1].ravel(), values[3]]))
    np.testing.assert_array_equal(to_numpy(flats[1]), np.concatenate(
        [values[0].ravel(), values[2]]))
    pieces = layout.split(flats)
    for piece, value in zip(pieces, values):
        assert tuple(piece.shape) == value.shape and dtype_of(piece) == value.dtype.name
        np.testing.assert_array_equal(to_numpy(piece), value)
    again = layout.flatten(pieces)
    for mine, theirs in zip(again, flats):
        np.testing.assert_array_equal(to_numpy(mine), to_numpy(theirs))
    assert layout.shapes() == [((3, 1), "float64"), ((2, 3), "float32"), ((1,), "float64"),
                               ((3,), "float32")]


def test_layout_of_one_dtype_is_one_buffer(backend):
    slots, values = mixed()
    layout = ParameterLayout([slot for slot in slots if dtype_of(getattr(*slot)) == "float64"])
    (flat,) = layout.gather()
    np.testing.assert_array_equal(to_numpy(flat), np.concatenate([values[0].ravel(),
                                                                  values[2]]))


def test_non_flat_layout_has_one_group_per_parameter(backend):
    slots, values = mixed()
    layout = ParameterLayout(slots, flat=False)
    assert layout.dtypes == ["float64", "float32", "float64", "float32"]
    assert layout.sizes == [3, 6, 1, 3]
    arrays = [getattr(layer, name) for layer, name in slots]
    groups = layout.flatten(arrays)
    assert len(groups) == 4
    for group, array, value in zip(groups, arrays, values):
        assert group is not array  # copies: a compiled step may reuse the buffers it is given
        assert tuple(group.shape) == value.shape and dtype_of(group) == value.dtype.name
        np.testing.assert_array_equal(to_numpy(group), value)
    assert all(mine is theirs for mine, theirs in zip(layout.split(groups), groups))


@pytest.mark.parametrize("flat", [True, False])
def test_assign_sets_every_slot_and_gather_reads_them(backend, flat):
    slots, values = mixed()
    layout = ParameterLayout(slots, flat)
    changed = [backend.asarray(value * 2 + 1, value.dtype.name) for value in values]
    layout.assign(layout.flatten(changed))
    for (layer, name), value in zip(slots, values):
        now = getattr(layer, name)
        assert tuple(now.shape) == value.shape and dtype_of(now) == value.dtype.name
        np.testing.assert_array_equal(to_numpy(now), value * 2 + 1)
    for mine, theirs in zip(layout.gather(), layout.flatten(changed)):
        np.testing.assert_array_equal(to_numpy(mine), to_numpy(theirs))


def test_relaid_moves_arrays_between_flat_and_per_parameter_layouts(backend):
    slots, values = mixed()
    flat, apart = ParameterLayout(slots), ParameterLayout(slots, flat=False)
    flats = flat.gather()
    groups = apart.relaid(flats, flat)
    assert len(groups) == 4
    for group, value in zip(groups, values):
        assert tuple(group.shape) == value.shape and dtype_of(group) == value.dtype.name
        np.testing.assert_array_equal(to_numpy(group), value)
    back = flat.relaid(groups, apart)
    assert len(back) == 2
    for mine, theirs in zip(back, flats):
        assert dtype_of(mine) == dtype_of(theirs)
        np.testing.assert_array_equal(to_numpy(mine), to_numpy(theirs))
    assert flat.relaid(flats, ParameterLayout(slots)) is flats  # same layout kind: unchanged


def test_a_gradient_of_another_shape_names_the_parameter(backend):
    slots, values = mixed()
    layout = ParameterLayout(slots)
    grads = [backend.asarray(np.ones_like(value), value.dtype.name) for value in values]
    assert len(layout.flatten_gradients(grads)) == 2
    grads[1] = backend.asarray(np.ones((3, 2)), "float32")  # as many values, transposed
    with pytest.raises(portanet.ShapeError) as info:
        layout.flatten_gradients(grads)
    message = str(info.value)
    assert message.startswith("Dense(input_size=2, output_size=3) left a gradient of shape "
                              "(3, 2) for its parameter 'weights' of shape (2, 3)")


def test_same_parameters_means_the_same_layers_names_shapes_and_dtypes(backend):
    slots, _ = mixed()
    layout = ParameterLayout(slots)
    assert layout.same_parameters(ParameterLayout(slots))
    assert layout.same_parameters(ParameterLayout(slots, flat=False))  # flat or not
    twin_wide, twin_narrow = Dense(3, 1, dtype="float64"), Dense(2, 3, dtype="float32")
    twins = [(twin_wide, "weights"), (twin_narrow, "weights"), (twin_wide, "bias"),
             (twin_narrow, "bias")]
    assert not layout.same_parameters(ParameterLayout(twins))  # same shapes, other layers
    assert not layout.same_parameters(ParameterLayout(slots[:3]))
    assert not layout.same_parameters(ParameterLayout([slots[1], slots[0], *slots[2:]]))
    wide = slots[0][0]
    wide.astype("float32")  # the same layers, one of them now float32
    assert not layout.same_parameters(ParameterLayout(slots))


def test_an_empty_layout_has_nothing_to_lay_out(backend):
    layout = ParameterLayout([])
    assert len(layout) == 0 and layout.gather() == [] and layout.split([]) == []
    assert layout.dtypes == [] and layout.sizes == []
