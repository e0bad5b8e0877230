"""Conv1D, MaxPool1D and AvgPool1D on the backend under test: NumPy reference outputs, the same
outputs and gradients as PyTorch's nn.Conv1d / nn.MaxPool1d / nn.AvgPool1d from the same
weights (where torch is installed), shapes, errors, saving and the summary. Their
finite-difference gradient checks are in test_gradients.py, their compiled training step in
tests/training/test_compile.py and their ONNX export in tests/saving/test_onnx.py."""

import json

import numpy as np
import pytest
from helpers import assert_backend_array, on_backend

import portanet
from portanet import (
    ActivationLayer,
    AvgPool1D,
    Conv1D,
    Conv2D,
    FCLayer,
    Flatten,
    InputError,
    MaxPool1D,
    Network,
    ShapeError,
)
from portanet.backend import to_numpy
from portanet.layers import LAYERS

RNG = np.random.default_rng(21)

CONV_CASES = {  # in, out, kernel, stride, padding, dilation, input (N, C, L)
    "valid": (2, 3, 3, 1, "valid", 1, (2, 2, 9)),
    "same": (2, 3, 4, 1, "same", 1, (2, 2, 9)),  # padding 1 before, 2 after
    "valid-stride-2": (3, 2, 3, 2, "valid", 1, (2, 3, 10)),
    "same-stride-2": (2, 4, 3, 2, "same", 1, (3, 2, 10)),  # padding 0 before, 1 after
    "dilated-valid": (2, 3, 3, 1, "valid", 2, (2, 2, 11)),
    "dilated-same-stride-3": (3, 3, 3, 3, "same", 3, (2, 3, 13)),
    "first-layer": (1, 6, 5, 2, "same", 2, (2, 1, 16)),
}


def conv1d(case, dtype="float64"):
    c_in, c_out, kernel, stride, padding, dilation, shape = CONV_CASES[case]
    layer = Conv1D(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation,
                   dtype=dtype)
    layer.bias = on_backend(RNG.normal(size=(c_out,)), dtype)
    return layer, RNG.normal(size=shape)


def same_padding(length, kernel, stride, dilation):
    """TensorFlow's 'same' padding (before, after): the odd value at the end."""
    reach = (kernel - 1) * dilation + 1
    total = max((-(-length // stride) - 1) * stride + reach - length, 0)
    return total // 2, total - total // 2


def reference_conv1d(x, w, b, stride, padding, dilation):
    """Direct-loop NumPy cross-correlation."""
    kernel = w.shape[2]
    if padding == "same":
        x = np.pad(x, ((0, 0), (0, 0), same_padding(x.shape[2], kernel, stride, dilation)))
    out_length = (x.shape[2] - (kernel - 1) * dilation - 1) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], out_length))
    for position in range(out_length):
        start = position * stride
        window = x[:, :, start:start + (kernel - 1) * dilation + 1:dilation]  # (N, C, k)
        out[:, :, position] = np.einsum("nck,ock->no", window, w) + b
    return out


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv1d_matches_numpy_reference(case, backend):
    layer, x = conv1d(case)
    out = layer.forward(on_backend(x))
    assert_backend_array(out, backend, "float64")
    _, _, _, stride, padding, dilation, _ = CONV_CASES[case]
    expected = reference_conv1d(x, to_numpy(layer.weights), to_numpy(layer.bias), stride,
                                padding, dilation)
    assert tuple(out.shape[1:]) == layer.output_shape(x.shape[1:])
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-12, atol=1e-12)


def reference_pool(x, size, stride, reduce):
    out_length = (x.shape[2] - size) // stride + 1
    return np.stack([reduce(x[:, :, p * stride:p * stride + size], axis=2)
                     for p in range(out_length)], axis=2)


POOLS = [(MaxPool1D, 2, None), (MaxPool1D, 3, 2), (MaxPool1D, 2, 3), (AvgPool1D, 2, None),
         (AvgPool1D, 4, 3)]


@pytest.mark.parametrize("kind, size, stride", POOLS, ids=str)
def test_pool1d_matches_numpy_reference(kind, size, stride, backend):
    layer = kind(size, stride)
    x = RNG.permutation(np.arange(2 * 3 * 11) * 0.1).reshape(2, 3, 11)  # distinct values
    out = layer.forward(on_backend(x))
    assert_backend_array(out, backend, "float64")
    expected = reference_pool(x, size, stride or size, np.max if kind is MaxPool1D else np.mean)
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-12)
    assert layer.output_shape(x.shape[1:]) == expected.shape[1:]


def test_max_pool1d_gives_a_tied_windows_gradient_to_its_first_maximum():
    layer = MaxPool1D(3, stride=1)
    layer.forward(on_backend(np.array([[[1.0, 1.0, 0.0, 1.0, 1.0]]])))
    grad = to_numpy(layer.backward(on_backend(np.array([[[1.0, 10.0, 100.0]]]))))
    np.testing.assert_array_equal(grad, [[[1.0, 10.0, 0.0, 100.0, 0.0]]])


# -- the same as PyTorch --------------------------------------------------------------------
@pytest.fixture
def torch(backend):
    return pytest.importorskip("torch")


def assert_close(actual, expected, what):
    """Equal to 1e-10 relative, the scale being the largest magnitude of ``expected``."""
    actual, expected = to_numpy(actual), expected.detach().numpy()
    assert actual.shape == expected.shape, what
    scale = np.max(np.abs(expected))
    assert scale > 0, what
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10 * scale, err_msg=what)


def torch_conv1d(torch, layer, length):
    """nn.Conv1d holding a copy of ``layer``'s weights; 'same' padding that PyTorch's own
    padding cannot express (strides above 1) is an nn.ConstantPad1d before it."""
    nn = torch.nn
    (kernel,), (stride,), (dilation,) = layer.kernel_size, layer.stride, layer.dilation
    if layer.padding == "same" and stride > 1:
        padding, pad = 0, nn.ConstantPad1d(same_padding(length, kernel, stride, dilation), 0.0)
    else:
        padding, pad = layer.padding, nn.Identity()
    conv = nn.Conv1d(layer.in_channels, layer.out_channels, kernel, stride=stride,
                     padding=padding, dilation=dilation, dtype=torch.float64)
    conv.weight = nn.Parameter(torch.tensor(to_numpy(layer.weights)))
    conv.bias = nn.Parameter(torch.tensor(to_numpy(layer.bias)))
    return nn.Sequential(pad, conv)


def torch_gradients(torch, module, x, grad):
    """Output of ``module`` on ``x`` and the gradients of ``sum(output * grad)``: of the
    input, then of the module's parameters."""
    x = torch.tensor(x, requires_grad=True)
    out = module(x)
    (out * torch.tensor(grad)).sum().backward()
    return out, x.grad, [parameter.grad for parameter in module.parameters()]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv1d_equals_torch_conv1d(case, torch):
    layer, x = conv1d(case)
    module = torch_conv1d(torch, layer, x.shape[2])
    out = layer.forward(on_backend(x), training=True)
    grad = RNG.normal(size=tuple(out.shape))
    expected, grad_x, (grad_weights, grad_bias) = torch_gradients(torch, module, x, grad)
    assert_close(out, expected, "output")
    assert_close(layer.backward(on_backend(grad)), grad_x, "gradient of the input")
    assert_close(layer.grads["weights"], grad_weights, "gradient of the weights")
    assert_close(layer.grads["bias"], grad_bias, "gradient of the bias")


@pytest.mark.parametrize("kind, size, stride", POOLS, ids=str)
def test_pool1d_equals_torch_pooling(kind, size, stride, torch):
    layer = kind(size, stride)
    module = (torch.nn.MaxPool1d if kind is MaxPool1D else torch.nn.AvgPool1d)(size, stride)
    x = RNG.normal(size=(2, 3, 11))
    out = layer.forward(on_backend(x), training=True)
    grad = RNG.normal(size=tuple(out.shape))
    expected, grad_x, _ = torch_gradients(torch, module, x, grad)
    assert_close(out, expected, "output")
    assert_close(layer.backward(on_backend(grad)), grad_x, "gradient of the input")


# -- shapes, arguments, errors --------------------------------------------------------------
@pytest.mark.parametrize("kwargs, length, expected", [
    ({}, 10, 8), ({"padding": "same"}, 10, 10), ({"stride": 2}, 10, 4),
    ({"stride": 2, "padding": "same"}, 11, 6), ({"dilation": 3}, 10, 4),
    ({"dilation": 4, "padding": "same", "stride": 3}, 10, 4),
])
def test_conv1d_output_shape(kwargs, length, expected):
    assert Conv1D(2, 5, 3, **kwargs).output_shape((2, length)) == (5, expected)


def test_conv1d_weights_and_initialisation_follow_conv2d():
    """Weights (out, in, k) as nn.Conv1d's; the same He-uniform draws as Conv2D's (1, k)
    kernel; a zero bias."""
    portanet.set_seed(3)
    layer = Conv1D(3, 4, 5)
    portanet.set_seed(3)
    image = Conv2D(3, 4, (1, 5))
    assert tuple(layer.weights.shape) == (4, 3, 5)
    np.testing.assert_array_equal(to_numpy(layer.weights), to_numpy(image.weights)[:, :, 0])
    np.testing.assert_array_equal(to_numpy(layer.bias), np.zeros(4))


def test_conv1d_shape_errors():
    layer = Conv1D(2, 4, 3)
    with pytest.raises(ShapeError, match="expects 2 input channels.*got 3"):
        layer.output_shape((3, 8))
    with pytest.raises(ShapeError, match=r"channels-last.*NCL.*x\.transpose\(0, 2, 1\)"):
        Conv1D(3, 4, 3).output_shape((50, 3))
    with pytest.raises(ShapeError, match=r"3-D batches in NCL layout \(batch, channels, "
                                         r"length\), got an array of shape \(2, 2, 8, 8\)"):
        layer.forward(on_backend(np.zeros((2, 2, 8, 8)), "float32"))
    with pytest.raises(ShapeError, match=r"shape \(5, 8\); samples of one channel need that "
                                         r"axis: x\[:, None\]"):
        Conv1D(1, 4, 3).forward(on_backend(np.zeros((5, 8))))
    with pytest.raises(ShapeError, match=r"per-sample shape \(channels, length\)"):
        layer.output_shape((2,))
    with pytest.raises(ShapeError, match=r"input length 2 is smaller than the kernel \(3\) "
                                         r"with padding='valid'; use padding='same'"):
        layer.output_shape((2, 2))
    with pytest.raises(ShapeError, match=r"input length 6 is smaller than the kernel \(3 "
                                         r"dilated by 3: 7\)"):
        Conv1D(2, 4, 3, dilation=3).output_shape((2, 6))
    assert Conv1D(2, 4, 3, padding="same").output_shape((2, 2)) == (4, 2)
    with pytest.raises(ShapeError, match="channels"):
        Conv1D(1, 4, 3, input_shape=(3, 8))


@pytest.mark.parametrize("kwargs", [{"padding": "full"}, {"kernel_size": 0},
                                    {"kernel_size": (3, 3)}, {"stride": 0}, {"dilation": 0},
                                    {"dilation": 1.5}, {"in_channels": 1.5}])
def test_conv1d_bad_arguments(kwargs):
    args = {"in_channels": 1, "out_channels": 2, "kernel_size": 3, **kwargs}
    with pytest.raises(InputError, match=f"Conv1D {next(iter(kwargs))}"):
        Conv1D(**args)


def test_pool1d_shapes_and_errors():
    assert MaxPool1D().output_shape((3, 9)) == (3, 4)
    assert AvgPool1D(3, stride=1).output_shape((1, 5)) == (1, 3)
    assert MaxPool1D(2).config() == {"pool_size": 2, "stride": 2}
    with pytest.raises(ShapeError, match="input length 2 is smaller than the pool 3"):
        MaxPool1D(3).output_shape((1, 2))
    with pytest.raises(ShapeError, match=r"NCL layout \(batch, channels, length\)"):
        AvgPool1D().forward(on_backend(np.zeros((4, 8))))
    with pytest.raises(ShapeError, match="NCL"):
        MaxPool1D().output_shape((1, 8, 8))
    for bad in (0, (2, 2), 1.5):
        with pytest.raises(InputError, match="MaxPool1D pool_size"):
            MaxPool1D(bad)
    with pytest.raises(InputError, match="AvgPool1D stride"):
        AvgPool1D(2, stride=-1)


def test_a_network_names_a_batch_of_the_wrong_layout():
    net = Network([Conv1D(2, 3, 3, input_shape=(2, 10)), Flatten()])
    with pytest.raises(ShapeError, match="NCL"):
        net.predict(np.zeros((4, 2, 10, 1)))
    with pytest.raises(ShapeError, match="channels-last"):
        net.predict(np.zeros((4, 10, 2)))


# -- saving, config, summary ----------------------------------------------------------------
def sequence_model(dtype="float32"):
    """A small 1-D CNN on (N, 2, 16) sequences."""
    return Network([Conv1D(2, 4, 3, padding="same", dilation=2, input_shape=(2, 16), dtype=dtype),
                    ActivationLayer("relu"), MaxPool1D(2), Conv1D(4, 3, 3, stride=2, dtype=dtype),
                    AvgPool1D(2, stride=1), Flatten(), FCLayer(6, 2, dtype=dtype)], dtype=dtype)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_saved_and_loaded_on_this_backend_and_on_numpy(backend, tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    portanet.set_seed(2)
    net = sequence_model()
    x = RNG.normal(size=(5, 2, 16))
    expected = net.predict(x)
    path = net.save(tmp_path / f"net{suffix}")
    loaded = portanet.load(path)
    assert repr(loaded) == repr(net)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in net.layers]
    np.testing.assert_array_equal(loaded.predict(x), expected)
    with portanet.using_backend("numpy"):
        np.testing.assert_allclose(portanet.load(path).predict(x), expected, rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize("layer", [Conv1D(2, 3, 5, stride=2, padding="same", dilation=3,
                                          input_shape=(2, 20)), MaxPool1D(3, stride=2),
                                   AvgPool1D(4)], ids=repr)
def test_layers_rebuild_from_json_config(layer):
    config = json.loads(json.dumps(layer.config()))
    rebuilt = LAYERS[type(layer).__name__](**config)
    assert rebuilt.config() == layer.config() and repr(rebuilt) == repr(layer)
    assert [w.shape for w in rebuilt.get_weights()] == [w.shape for w in layer.get_weights()]


def test_summary_shows_the_shapes_and_parameters():
    lines = []
    sequence_model().summary(print_fn=lines.append)
    rows = lines[0].splitlines()
    assert "Conv1D(in_channels=2, out_channels=4, kernel_size=3, padding='same', dilation=2" \
        in rows[1] and "(4, 16)" in rows[1] and rows[1].endswith(f"{2 * 4 * 3 + 4:>10,}")
    assert rows[3].startswith("MaxPool1D(") and "(4, 8)" in rows[3]
    assert rows[4].startswith("Conv1D(") and "(3, 3)" in rows[4]
    assert rows[5].startswith("AvgPool1D(stride=1)") and "(3, 2)" in rows[5]
    assert rows[-1].startswith(f"total trainable parameters: {28 + 39 + 14}")


def test_a_sequence_model_trains(backend):
    """Class 0: a bump early in the sequence, class 1: late."""
    labels = np.arange(48) % 2
    x = RNG.normal(scale=0.3, size=(48, 2, 16))
    x[labels == 0, :, 2:5] += 1.0
    x[labels == 1, :, 11:14] += 1.0
    portanet.set_seed(1)
    net = sequence_model()
    net.use("softmax_crossentropy")
    history = net.fit(x, np.eye(2)[labels], epochs=8, learning_rate=0.05, batch_size=8,
                      verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0]
