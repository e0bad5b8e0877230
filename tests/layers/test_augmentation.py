"""Augmentation layers (RandomFlip, RandomCrop, RandomErasing) on every backend: NumPy
references given the same draws, identity in inference, gradients, one seed giving the same
batches everywhere, eager and compiled training, saving and ONNX export."""

import json
import warnings

import numpy as np
import pytest
from helpers import on_backend

import portanet
from portanet import (
    ActivationLayer,
    CompileWarning,
    Conv2D,
    FCLayer,
    Flatten,
    InputError,
    Network,
    RandomCrop,
    RandomErasing,
    RandomFlip,
    ShapeError,
)
from portanet.backend import to_numpy
from portanet.layers import LAYERS
from portanet.testing import check_layer

RNG = np.random.default_rng(0)
AXES = {"horizontal": (3,), "vertical": (2,), "horizontal_and_vertical": (2, 3)}


def reference_flip(x, flags, mode):
    out = x.copy()
    for n in range(len(x)):
        for k, axis in enumerate(AXES[mode]):
            if flags[n, k]:
                out[n] = np.flip(out[n], axis=axis - 1)
    return out


def reference_crop(x, offsets, padding):
    _, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    return np.stack([padded[n, :, r:r + h, c:c + w] for n, (r, c) in enumerate(offsets)])


def reference_erase(x, corners, size):
    out = x.copy()
    for n, (r, c) in enumerate(corners):
        out[n, :, r:r + size, c:c + size] = 0
    return out


def reference(layer, x, draws):
    if isinstance(layer, RandomFlip):
        return reference_flip(x, draws, layer.mode)
    if isinstance(layer, RandomCrop):
        return reference_crop(x, draws, layer.padding)
    return reference_erase(x, draws, layer.size)


CASES = {
    "flip-horizontal": lambda: RandomFlip(),
    "flip-vertical": lambda: RandomFlip("vertical"),
    "flip-both": lambda: RandomFlip("horizontal_and_vertical"),
    "crop-1": lambda: RandomCrop(1),
    "crop-3": lambda: RandomCrop(3),
    "erasing-2": lambda: RandomErasing(2),
    "erasing-full": lambda: RandomErasing(5),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_training_output_and_gradient_match_numpy_given_the_draws(name):
    layer = CASES[name]()
    x = RNG.normal(size=(6, 2, 5, 7))
    portanet.set_seed(11)
    draws = layer.draw(x.shape)  # what the layer draws for itself after the same seed
    portanet.set_seed(11)
    out = layer.forward(on_backend(x), training=True)
    expected = reference(layer, x, draws)
    np.testing.assert_array_equal(to_numpy(out), expected)
    # backprop is the transpose: <grad, T x> == <T^T grad, x> for every x, grad
    grad = RNG.normal(size=x.shape)
    grad_input = to_numpy(layer.backward(on_backend(grad)))
    np.testing.assert_allclose(np.sum(grad_input * x), np.sum(grad * expected), rtol=1e-12)
    np.testing.assert_array_equal(grad_input, _transpose(layer, draws, grad, x.shape))


def _transpose(layer, draws, grad, shape):
    """The transpose of the layer's transform given ``draws``, built column by column."""
    size = int(np.prod(shape))
    matrix = np.stack([reference(layer, np.eye(size)[k].reshape(shape), draws).ravel()
                       for k in range(size)], axis=1)
    return (matrix.T @ grad.ravel()).reshape(shape)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_with_fixed_draws(name):
    check_layer(CASES[name](), (2, 5, 6), batch=3)


@pytest.mark.parametrize("name", sorted(CASES))
def test_identity_in_inference(name):
    layer = CASES[name]()
    x = RNG.normal(size=(4, 3, 5, 6))
    np.testing.assert_array_equal(to_numpy(layer.forward(on_backend(x))), x)
    grad = RNG.normal(size=x.shape)
    np.testing.assert_array_equal(to_numpy(layer.backward(on_backend(grad))), grad)
    net = Network([CASES[name](), Flatten(), FCLayer(90, 2, dtype="float64")], dtype="float64")
    plain = Network([Flatten(), FCLayer(90, 2, dtype="float64")], dtype="float64")
    plain.layers[1].set_weights(net.layers[2].get_weights())
    np.testing.assert_array_equal(net.predict(x), plain.predict(x))


def test_no_padding_draws_nothing_and_passes_through():
    layer = RandomCrop(0)
    assert not layer.random
    x = RNG.normal(size=(2, 1, 3, 3))
    np.testing.assert_array_equal(to_numpy(layer.forward(on_backend(x), training=True)), x)


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_seed_same_output_here_and_on_numpy(name):
    x = RNG.normal(size=(8, 2, 5, 6))
    outputs = []
    for _ in range(2):
        portanet.set_seed(5)
        outputs.append(to_numpy(CASES[name]().forward(on_backend(x), training=True)))
    portanet.set_backend("numpy")
    portanet.set_seed(5)
    outputs.append(CASES[name]().forward(x, training=True))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])


def test_flips_and_shifts_are_drawn_per_sample():
    x = np.broadcast_to(RNG.normal(size=(1, 1, 6, 6)), (64, 1, 6, 6)).copy()
    for layer in (RandomFlip("horizontal_and_vertical"), RandomCrop(2), RandomErasing(2)):
        out = to_numpy(layer.forward(on_backend(x), training=True))
        distinct = {row.tobytes() for row in out}
        assert len(distinct) > 3, layer


# -- training -----------------------------------------------------------------------------------
def augmented_cnn():
    net = Network(dtype="float64")
    for layer in (RandomFlip("horizontal_and_vertical"), RandomCrop(1), RandomErasing(2),
                  Conv2D(1, 3, 3, input_shape=(1, 6, 6), dtype="float64"),
                  ActivationLayer("tanh"), Flatten(), FCLayer(48, 3, dtype="float64")):
        net.add(layer)
    net.use("softmax_crossentropy")
    return net


def data():
    gen = np.random.default_rng(3)
    return gen.normal(size=(32, 1, 6, 6)), np.eye(3)[gen.integers(0, 3, 32)]


def weights(net):
    return [array for layer in net.layers for array in layer.get_weights()]


def train(compile):
    portanet.set_seed(7)
    net = augmented_cnn()
    x, y = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)  # backends without a compiler say so
        history = net.fit(x, y, epochs=2, batch_size=8, shuffle=True, optimizer="adam",
                          learning_rate=0.01, verbose=0, compile=compile)
    return net, history


def test_fit_eager_equals_compiled_and_numpy():
    eager, eager_history = train(compile=False)
    compiled, history = train(compile=True)
    np.testing.assert_allclose(history.history["loss"], eager_history.history["loss"],
                               rtol=1e-10)
    for mine, theirs in zip(weights(compiled), weights(eager)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-12)
    portanet.set_backend("numpy")
    reference, reference_history = train(compile=False)
    np.testing.assert_allclose(eager_history.history["loss"], reference_history.history["loss"],
                               rtol=1e-10)
    for mine, theirs in zip(weights(eager), weights(reference)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12)


def test_augmentation_changes_training():
    augmented, _ = train(compile=False)
    portanet.set_seed(7)
    plain = augmented_cnn()
    plain.layers = plain.layers[3:]
    x, y = data()
    plain.fit(x, y, epochs=2, batch_size=8, shuffle=True, optimizer="adam",
              learning_rate=0.01, verbose=0, compile=False)
    assert not np.allclose(weights(augmented)[0], weights(plain)[0])


# -- saving and export ----------------------------------------------------------------------------
def test_save_and_load(tmp_path):
    net, _ = train(compile=False)
    path = net.save(tmp_path / "augmented.npz") or tmp_path / "augmented.npz"
    loaded = portanet.load(path)
    assert [repr(layer) for layer in loaded.layers] == [repr(layer) for layer in net.layers]
    x, _ = data()
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_rebuilds_the_layer(name):
    layer = CASES[name]()
    rebuilt = LAYERS[type(layer).__name__](**json.loads(json.dumps(layer.config())))
    assert rebuilt.config() == layer.config() and repr(rebuilt) == repr(layer)


def test_onnx_export_leaves_them_out(tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    import onnxruntime

    net, _ = train(compile=False)
    path = portanet.export_onnx(net, tmp_path / "net.onnx", input_shape=(1, 6, 6),
                                  dtype="float32")
    model = onnx.load(str(path))
    assert [node.op_type for node in model.graph.node] == ["Conv", "Tanh", "Flatten", "Gemm"]
    x, _ = data()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.astype(np.float32)})[0]
    np.testing.assert_allclose(got, net.predict(x), rtol=0, atol=1e-4)


# -- arguments and shapes -------------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: RandomFlip("diagonal"), "RandomFlip mode must be one of"),
    (lambda: RandomFlip(None), "RandomFlip mode"),
    (lambda: RandomCrop(-1), "RandomCrop padding must be an integer >= 0"),
    (lambda: RandomCrop(1.5), "RandomCrop padding"),
    (lambda: RandomCrop(True), "RandomCrop padding"),
    (lambda: RandomErasing(0), "RandomErasing size must be an integer >= 1"),
    (lambda: RandomErasing("4"), "RandomErasing size"),
])
def test_bad_arguments(make, match):
    with pytest.raises(InputError, match=match):
        make()


def test_shapes():
    for layer in (RandomFlip(), RandomCrop(2), RandomErasing(3)):
        assert layer.output_shape((3, 8, 8)) == (3, 8, 8)
        with pytest.raises(ShapeError, match="expects images"):
            layer.output_shape((8, 8))
        with pytest.raises(ShapeError, match="expects images"):
            layer.forward(on_backend(np.zeros((2, 8))), training=True)
    with pytest.raises(ShapeError, match="at least that large"):
        RandomErasing(4).output_shape((1, 3, 8))
    with pytest.raises(ShapeError):
        Network([RandomErasing(9), Flatten()]).summary(print_fn=str, input_shape=(1, 8, 8))
