"""portanet.inputs, called directly: data as backend rows (the tutorial's (N, 1, n) layout,
lists, 1-D arrays, backend arrays), x and y checked against each other and the network,
the network's readiness, and integer class labels."""

import array_api_strict
import numpy as np
import pytest
from helpers import assert_backend_array

import portanet
from portanet import Conv2D, FCLayer, Network
from portanet.backend import to_numpy
from portanet.training import inputs


def network(outputs=2, loss="mse", dtype=None):
    net = Network([FCLayer(3, outputs)], dtype=dtype)
    if loss is not None:
        net.use(loss)
    return net


X = np.arange(12, dtype=float).reshape(4, 3) / 10
Y = np.stack([X[:, 0] - X[:, 1], X[:, 2]], axis=1)


# -- as_rows ------------------------------------------------------------------------------
def test_rows_of_n_by_features_become_backend_rows_of_the_working_dtype(backend):
    for dtype in (None, "float64"):
        rows, host, tutorial = inputs.as_rows(network(dtype=dtype), X, "x", inputs=True)
        assert_backend_array(rows, backend, dtype or "float32")
        assert host and not tutorial
        np.testing.assert_allclose(to_numpy(rows), X, rtol=1e-7)


def test_the_tutorials_n_by_1_by_features_layout_is_read_as_rows(backend):
    rows, host, tutorial = inputs.as_rows(network(), X.reshape(4, 1, 3), "x", inputs=True)
    assert host and tutorial
    assert tuple(rows.shape) == (4, 3)
    np.testing.assert_allclose(to_numpy(rows), X, rtol=1e-7)


def test_n_by_1_by_n_stays_as_it_is_for_a_first_layer_wanting_three_axes(backend):
    net = Network([Conv2D(1, 2, 3, padding="same", input_shape=(1, 2, 6))])
    rows, _, tutorial = inputs.as_rows(net, np.zeros((5, 1, 6)), "x", inputs=True)
    assert not tutorial and tuple(rows.shape) == (5, 1, 6)


def test_lists_and_one_dimensional_data_become_rows(backend):
    rows, host, tutorial = inputs.as_rows(network(), [[1, 2, 3], [4, 5, 6]], "x")
    assert_backend_array(rows, backend, "float32")
    assert host and not tutorial
    np.testing.assert_array_equal(to_numpy(rows), [[1, 2, 3], [4, 5, 6]])
    rows, _, _ = inputs.as_rows(network(), [0.5, 1.5, 2.5], "y")  # samples of one value
    np.testing.assert_array_equal(to_numpy(rows), [[0.5], [1.5], [2.5]])


def test_backend_arrays_stay_on_the_backend_in_the_working_dtype(backend):
    given = backend.asarray(X, "float64")
    rows, host, tutorial = inputs.as_rows(network(), given, "x", inputs=True)
    assert host == (backend.name == "numpy") and not tutorial  # NumPy arrays are host data
    assert_backend_array(rows, backend, "float32")
    rows, _, _ = inputs.as_rows(network(dtype="float64"), given, "x", inputs=True)
    assert_backend_array(rows, backend, "float64")
    np.testing.assert_array_equal(to_numpy(rows), X)


def test_integer_targets_keep_their_dtype_when_asked(backend):
    rows, host, _ = inputs.as_rows(network(), np.array([2, 0, 1]), "y", integers=True)
    assert host
    assert_backend_array(rows, backend, "int64")
    np.testing.assert_array_equal(to_numpy(rows), [2, 0, 1])
    with pytest.raises(portanet.InputError, match=r"^y must hold integers .* got dtype float"):
        inputs.as_rows(network(), np.array([0.5, 1.0]), "y", integers=True)


def test_empty_or_unreadable_data_is_refused_with_its_label(backend):
    with pytest.raises(portanet.InputError, match=r"^x_train is empty: give at least one"):
        inputs.as_rows(network(), np.zeros((0, 3)), "x_train", inputs=True)
    with pytest.raises(portanet.InputError, match=r"^x_val holds strings \(dtype <U1\)"):
        inputs.as_rows(network(), [["a", "b", "c"]], "x_val", inputs=True)
    with pytest.raises(portanet.InputError, match=r"^x_val cannot be read as an array of numbers"):
        inputs.as_rows(network(), [[1.0, 2.0, 3.0], [1.0]], "x_val", inputs=True)  # ragged


# -- pair and check_features --------------------------------------------------------------
def test_pair_refuses_different_sample_counts_naming_both(backend):
    y = np.zeros((3, 2))
    with pytest.raises(portanet.InputError) as info:
        inputs.pair(network(), X, y, "x_train")
    assert str(info.value) == "x_train has 4 samples but y_train has 3: they must match"
    with pytest.raises(portanet.InputError, match=r"^x_val has 4 samples but y_val has 5: "):
        inputs.pair(network(outputs=3), X, np.array([0, 1, 2, 1, 0]), "x_val")  # labels too


def test_pair_gives_rows_and_refuses_targets_of_another_width(backend):
    x_rows, y_rows = inputs.pair(network(), X.reshape(4, 1, 3), np.ones((4, 1, 2)))
    assert tuple(x_rows.shape) == (4, 3) and tuple(y_rows.shape) == (4, 2)
    assert_backend_array(y_rows, backend, "float32")
    with pytest.raises(portanet.ShapeError, match=r"^the network outputs per-sample shape "
                       r"\(2,\) but y has \(3,\): give one target per output"):
        inputs.pair(network(), X, np.ones((4, 3)))


def test_check_features_refuses_the_wrong_width_naming_the_first_layer(backend):
    net = network()
    rows = backend.asarray(np.zeros((5, 4)), "float32")
    with pytest.raises(portanet.ShapeError) as info:
        inputs.check_features(net, rows, "x")
    assert str(info.value) == (
        "x has per-sample shape (4,) but the first layer FCLayer(input_size=3, output_size=2) "
        "expects (3,): FCLayer(input_size=3, output_size=2) expects 3 features per sample, got "
        "per-sample shape (4,)")
    inputs.check_features(net, backend.asarray(np.zeros((5, 3)), "float32"), "x")  # fits


def test_check_features_recognises_one_sample_given_as_a_1d_array(backend):
    net = network()
    rows, _, _ = inputs.as_rows(net, np.array([1.0, 2.0, 3.0]), "x", inputs=True)
    assert tuple(rows.shape) == (3, 1)
    with pytest.raises(portanet.ShapeError, match=r"^x looks like one sample of 3 values .* "
                       r"give a batch of one, x\.reshape\(1, -1\)$"):
        inputs.check_features(net, rows, "x")


# -- check_ready --------------------------------------------------------------------------
def test_check_ready_wants_layers_and_for_training_a_loss(backend):
    with pytest.raises(portanet.InputError, match=r"^the network has no layers: add some"):
        inputs.check_ready(Network(), need_loss=False)
    with pytest.raises(portanet.InputError, match=r"^no loss set: call net\.use\(loss, "
                       r"loss_prime\) before fit/evaluate$"):
        inputs.check_ready(network(loss=None), need_loss=True)
    inputs.check_ready(network(loss=None), need_loss=False)  # enough to predict
    inputs.check_ready(network(), need_loss=True)


def test_check_ready_names_a_weight_on_another_backend(backend):
    net = network()
    layer = net.layers[0]
    value = np.zeros((3, 2), dtype=np.float32)
    foreign = array_api_strict.asarray(value) if backend.name == "numpy" else value
    layer.weights = foreign
    with pytest.raises(portanet.InputError) as info:
        inputs.check_ready(net, need_loss=False)
    message = str(info.value)
    other = "array_api_strict" if backend.name == "numpy" else "numpy"
    assert message.startswith(f"FCLayer(input_size=3, output_size=2).weights lives on {other} ")
    assert f"but the selected backend is {backend}: move the network with " \
        "net.to_backend()" in message


# -- integer class labels -----------------------------------------------------------------
@pytest.mark.parametrize("on_backend", [False, True])
def test_integer_labels_become_one_hot_rows_for_several_outputs(backend, on_backend):
    net = network(outputs=3)
    x_rows, _, _ = inputs.as_rows(net, X, "x", inputs=True)
    labels = np.array([2, 0, 1, 2])
    for shape in ((4,), (4, 1)):
        given = labels.reshape(shape)
        if on_backend:
            given = backend.asarray(given, "int64")
        encoded = inputs.one_hot_labels(net, given, x_rows)
        assert tuple(encoded.shape) == (4, 3)
        np.testing.assert_array_equal(to_numpy(encoded), np.eye(3)[labels])
    with pytest.raises(portanet.InputError, match=r"labels must lie in \[0, num_classes\); got "
                       r"range \[0, 3\] with num_classes=3"):
        inputs.one_hot_labels(net, np.array([0, 3, 1, 2]), x_rows)
    _, y_rows = inputs.pair(net, X, labels)  # what fit and evaluate score
    assert_backend_array(y_rows, backend, "float32")
    np.testing.assert_array_equal(to_numpy(y_rows), np.eye(3)[labels])


def test_other_targets_are_not_one_hot_encoded(backend):
    x_rows, _, _ = inputs.as_rows(network(outputs=3), X, "x", inputs=True)
    floats = np.array([2.0, 0.0, 1.0, 2.0])
    assert inputs.one_hot_labels(network(outputs=3), floats, x_rows) is floats
    rows = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]])  # (N, 3) integers: not labels
    assert inputs.one_hot_labels(network(outputs=3), rows, x_rows) is rows
    labels = np.array([1, 0, 1, 1])
    assert inputs.one_hot_labels(network(outputs=1), labels, x_rows) is labels  # one output


def test_check_classes_for_a_loss_on_integer_targets(backend):
    net = network(outputs=4, loss="sparse_softmax_crossentropy")
    x_rows, y_rows = inputs.pair(net, X, np.array([3, 0, 1, 2]), "x")
    assert_backend_array(y_rows, backend, "int64")  # integers kept, not one-hot
    inputs.check_classes(net, x_rows, y_rows, "y")
    too_high = backend.asarray(np.array([3, 0, 4, 2]), "int64")
    with pytest.raises(portanet.InputError) as info:
        inputs.check_classes(net, x_rows, too_high, "y")
    assert str(info.value) == "y holds classes from 0 to 4, but the network scores classes 0 to 3"
    with pytest.raises(portanet.InputError, match=r"^y_train holds classes from -1 to 2,"):
        inputs.pair(net, X, np.array([-1, 0, 1, 2]), "x_train")
    with pytest.raises(portanet.ShapeError, match=r"^the network outputs per-sample shape \(4,\), "
                       r"so y needs one class index per row of scores: per-sample shape \(\), "
                       r"got \(2,\)$"):
        inputs.check_classes(net, x_rows, backend.asarray(np.zeros((4, 2)), "int64"), "y")


# -- NaN and infinity, at every entry point ---------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("entry, label", [
    (lambda net, x, y: net.fit(x, y, 1, verbose=0), "x_train "),
    (lambda net, x, y: net.fit(X, Y, 1, verbose=0, validation_data=(x, y)), "x_val "),
    (lambda net, x, y: net.evaluate(x, y), "x "),
    (lambda net, x, y: net.predict(x), "x "),
    (lambda net, x, y: net.fit(X, x[:, :2], 1, verbose=0), "y_train "),
    (lambda net, x, y: net.evaluate(X, x[:, :2]), "y "),
])
def test_nan_and_infinity_are_refused_where_data_enters(backend, bad, entry, label):
    x = X.copy()
    x[2, 1] = bad
    net = network()
    before = net.layers[0].get_weights()
    with pytest.raises(portanet.InputError, match=f"{label}contains NaN or infinity"):
        entry(net, x, Y)
    for now, then in zip(net.layers[0].get_weights(), before):
        np.testing.assert_array_equal(now, then)
    with pytest.raises(portanet.InputError, match="contains NaN or infinity"):
        net.predict(backend.asarray(x))  # backend arrays are checked on the device


@pytest.mark.parametrize("values, finite", [
    ([3e38, 3e38, 1.0], True),  # finite values whose float32 sum would overflow
    ([-3e38, -3e38, 1.0], True),
    ([np.inf, -np.inf, 1.0], False),  # infinities that would cancel to NaN in a sum
    ([1.0, np.nan, 1.0], False),
    ([1.0, 2.0, 3.0], True),
])
def test_the_finiteness_check_is_exact(backend, values, finite):
    column = np.array(values, dtype=np.float32).reshape(-1, 1)
    rows = np.concatenate([column] * 3, axis=1)
    assert inputs.all_finite(backend.asarray(rows, "float32")) is finite
    assert inputs.all_finite(backend.asarray(np.arange(6).reshape(3, 2), "int64")) is True
    assert inputs.all_finite(backend.asarray(np.zeros((0, 3)), "float32")) is True
