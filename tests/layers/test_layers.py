"""Convolution, pooling, shape and regularisation layers on the backend under test: float64
finite-difference gradients, NumPy reference outputs, shapes and errors, and a tiny CNN."""

import json

import numpy as np
import pytest
from helpers import assert_backend_array, on_backend

import portanet
from portanet import ActivationLayer, FCLayer, InputError, Network, ShapeError
from portanet.backend import to_numpy
from portanet.layers import (
    LAYERS,
    AvgPool1D,
    AvgPool2D,
    BatchNorm,
    Conv1D,
    Conv2D,
    Dropout,
    Flatten,
    MaxPool1D,
    MaxPool2D,
    RandomCrop,
    RandomErasing,
    RandomFlip,
    Reshape,
)
from portanet.testing import check_layer

RNG = np.random.default_rng(11)


def distinct(shape):
    """Values at least 0.1 apart, in random order: every pooling window has a unique maximum."""
    return RNG.permutation(np.arange(np.prod(shape)) * 0.1 - 1.0).reshape(shape)


def reference_conv(x, w, b, stride, padding, dilation=(1, 1)):
    """Direct-loop NumPy convolution (cross-correlation), TensorFlow's 'same' padding."""
    n, _, h, width = x.shape
    o, _, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    kh, kw = (kh - 1) * dh + 1, (kw - 1) * dw + 1  # the pixels a window covers
    if padding == "same":
        oh, ow = -(-h // sh), -(-width // sw)
        ph, pw = max((oh - 1) * sh + kh - h, 0), max((ow - 1) * sw + kw - width, 0)
        x = np.pad(x, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
    else:
        oh, ow = (h - kh) // sh + 1, (width - kw) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for s in range(n):
        for f in range(o):
            for r in range(oh):
                for q in range(ow):
                    patch = x[s, :, r * sh:r * sh + kh:dh, q * sw:q * sw + kw:dw]
                    out[s, f, r, q] = np.sum(patch * w[f]) + b[f]
    return out


def reference_pool(x, size, stride, reduce):
    n, c, h, w = x.shape
    oh, ow = (h - size[0]) // stride[0] + 1, (w - size[1]) // stride[1] + 1
    out = np.zeros((n, c, oh, ow))
    for r in range(oh):
        for q in range(ow):
            block = x[:, :, r * stride[0]:r * stride[0] + size[0],
                      q * stride[1]:q * stride[1] + size[1]]
            out[:, :, r, q] = reduce(block, axis=(2, 3))
    return out


# -- Conv2D -----------------------------------------------------------------------------------
CONV_CASES = [  # in, out, kernel, stride, padding, input (N, C, H, W)
    (2, 3, 3, 1, "valid", (2, 2, 4, 5)),
    (2, 3, 3, 1, "same", (2, 2, 4, 5)),
    (2, 3, 3, 2, "valid", (2, 2, 5, 6)),
    (1, 2, (2, 3), 2, "same", (2, 1, 6, 5)),
    (1, 5, 2, 1, "same", (2, 1, 5, 6)),  # fewer patch rows than output channels
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_gradient(case):
    c_in, c_out, kernel, stride, padding, shape = case
    layer = Conv2D(c_in, c_out, kernel, stride=stride, padding=padding, dtype="float64")
    layer.bias = on_backend(RNG.normal(size=(c_out,)))
    check_layer(layer, x=RNG.normal(size=shape))


@pytest.mark.parametrize("case", CONV_CASES + [
    (3, 4, 3, 2, "same", (2, 3, 8, 7)),
    (2, 2, (3, 1), (1, 2), "valid", (1, 2, 6, 7)),
    (1, 1, 1, 1, "same", (3, 1, 4, 4)),
], ids=str)
def test_conv2d_matches_numpy_reference(case):
    c_in, c_out, kernel, stride, padding, shape = case
    layer = Conv2D(c_in, c_out, kernel, stride=stride, padding=padding, dtype="float64")
    layer.bias = on_backend(RNG.normal(size=(c_out,)))
    x = RNG.normal(size=shape)
    out = layer.forward(on_backend(x))
    expected = reference_conv(x, to_numpy(layer.weights), to_numpy(layer.bias), layer.stride,
                              padding)
    assert tuple(out.shape[1:]) == layer.output_shape(shape[1:])
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dilation, stride, padding, shape", [
    (2, 1, "valid", (2, 2, 7, 8)), ((2, 3), 1, "same", (2, 2, 7, 8)),
    ((3, 2), (2, 1), "same", (2, 2, 9, 6)), ((1, 2), 2, "valid", (1, 2, 5, 9)),
], ids=str)
def test_conv2d_dilation_gradient_and_reference(dilation, stride, padding, shape):
    layer = Conv2D(2, 3, 3, stride=stride, padding=padding, dilation=dilation, dtype="float64")
    layer.bias = on_backend(RNG.normal(size=(3,)))
    x = RNG.normal(size=shape)
    out = layer.forward(on_backend(x))
    expected = reference_conv(x, to_numpy(layer.weights), to_numpy(layer.bias), layer.stride,
                              padding, layer.dilation)
    assert tuple(out.shape[1:]) == layer.output_shape(shape[1:])
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-12, atol=1e-12)
    check_layer(layer, x=x)


def test_conv2d_one_bias_per_output_channel():
    layer = Conv2D(2, 3, 3, padding="same", dtype="float64")
    x = on_backend(RNG.normal(size=(2, 2, 4, 5)))
    before = to_numpy(layer.forward(x))
    layer.bias = on_backend([0.0, 1.5, 0.0])
    shift = to_numpy(layer.forward(x)) - before
    np.testing.assert_allclose(shift[:, 1], 1.5)
    np.testing.assert_allclose(shift[:, [0, 2]], 0.0, atol=1e-12)
    grad = RNG.normal(size=(2, 3, 4, 5))
    layer.backward(on_backend(grad))
    assert tuple(layer.bias.shape) == (3,)
    np.testing.assert_allclose(to_numpy(layer.grads["bias"]), grad.sum(axis=(0, 2, 3)))


def test_conv2d_backward_params_matches_backward():
    layer = Conv2D(2, 3, 3, padding="same", dtype="float64")
    x, grad = on_backend(RNG.normal(size=(2, 2, 4, 5))), on_backend(RNG.normal(size=(2, 3, 4, 5)))
    layer.forward(x, training=True)
    layer.backward(grad)
    full = {name: to_numpy(value) for name, value in layer.grads.items()}
    layer.backward_params(grad)
    for name in layer.params:
        np.testing.assert_array_equal(to_numpy(layer.grads[name]), full[name])


@pytest.mark.parametrize("kernel, stride, padding, dilation, shape, expected", [
    (3, 1, "valid", 1, (1, 8, 8), (4, 6, 6)),
    (3, 1, "same", 1, (1, 8, 8), (4, 8, 8)),
    (3, 2, "valid", 1, (1, 7, 7), (4, 3, 3)),
    (3, 2, "same", 1, (1, 7, 8), (4, 4, 4)),
    ((5, 3), (2, 1), "valid", 1, (1, 9, 4), (4, 3, 2)),
    (3, 1, "valid", (2, 3), (1, 9, 9), (4, 5, 3)),
    (3, 2, "same", 3, (1, 7, 8), (4, 4, 4)),
])
def test_conv2d_output_shape(kernel, stride, padding, dilation, shape, expected):
    layer = Conv2D(1, 4, kernel, stride=stride, padding=padding, dilation=dilation)
    assert layer.output_shape(shape) == expected


def test_conv2d_shape_errors():
    layer = Conv2D(2, 4, 3)
    with pytest.raises(ShapeError, match="expects 2 input channels.*got 3"):
        layer.output_shape((3, 8, 8))
    with pytest.raises(ShapeError, match="channels-last.*NCHW"):
        Conv2D(1, 4, 3).output_shape((28, 28, 1))
    with pytest.raises(ShapeError, match=r"NCHW.*\(batch, channels, height, width\)"):
        layer.forward(on_backend(np.zeros((2, 8, 8)), "float32"))
    with pytest.raises(ShapeError, match="smaller than the kernel"):
        layer.output_shape((2, 2, 8))
    assert Conv2D(2, 4, 3, padding="same").output_shape((2, 2, 2)) == (4, 2, 2)
    with pytest.raises(ShapeError, match="channels"):
        Conv2D(1, 4, 3, input_shape=(3, 8, 8))


@pytest.mark.parametrize("kwargs", [{"padding": "full"}, {"kernel_size": 0},
                                    {"stride": (1, 2, 3)}, {"in_channels": 1.5},
                                    {"kernel_size": 2.0}, {"dilation": 0},
                                    {"dilation": (1, 2, 1)}])
def test_conv2d_bad_arguments(kwargs):
    args = {"in_channels": 1, "out_channels": 2, "kernel_size": 3, **kwargs}
    with pytest.raises(InputError):
        Conv2D(**args)


# -- pooling ----------------------------------------------------------------------------------
POOLS = [(MaxPool2D, 2, None), (MaxPool2D, 3, 2), (MaxPool2D, (2, 3), (1, 2)),
         (AvgPool2D, 2, None), (AvgPool2D, 3, 2)]


@pytest.mark.parametrize("height", [5, 4], ids=["rest", "tiled"])  # 4x6: 2x2 windows tile it
@pytest.mark.parametrize("kind, size, stride", POOLS, ids=str)
def test_pool_gradient_and_reference(kind, size, stride, height):
    layer = kind(size, stride)
    x = distinct((2, 2, height, 6))
    reduce = np.max if kind is MaxPool2D else np.mean
    expected = reference_pool(x, layer.pool_size, layer.stride, reduce)
    np.testing.assert_allclose(to_numpy(layer.forward(on_backend(x))), expected, rtol=1e-12)
    assert layer.output_shape((2, height, 6)) == expected.shape[1:]
    check_layer(layer, x=x)


@pytest.mark.parametrize("size, stride", [(2, None), (3, 2)])
def test_max_pool_ties_send_the_gradient_once(size, stride):
    layer = MaxPool2D(size, stride)
    x = on_backend(np.ones((1, 2, 7, 7)))
    out = layer.forward(x)
    grad = RNG.normal(size=tuple(out.shape))
    grad_input = to_numpy(layer.backward(on_backend(grad)))
    np.testing.assert_allclose(grad_input.sum(), grad.sum())
    if stride is None:  # windows do not overlap: exactly one element of each gets its gradient
        blocks = grad_input[:, :, :6, :6].reshape(1, 2, 3, 2, 3, 2)
        assert ((blocks != 0).sum(axis=(3, 5)) == 1).all()


@pytest.mark.parametrize("ties, winner", [
    ([(0, 1), (1, 0)], (0, 1)), ([(1, 0), (1, 1)], (1, 0)), ([(0, 0), (1, 1)], (0, 0)),
    ([(0, 1), (1, 1)], (0, 1)),
])
def test_max_pool_tie_goes_to_the_first_in_row_major_order(ties, winner):
    x = np.zeros((1, 1, 2, 2))
    for position in ties:
        x[(0, 0, *position)] = 1.0
    layer = MaxPool2D(2)
    layer.forward(on_backend(x))
    expected = np.zeros_like(x)
    expected[(0, 0, *winner)] = 3.0
    np.testing.assert_array_equal(to_numpy(layer.backward(on_backend(np.full((1, 1, 1, 1), 3.0)))),
                                  expected)


def test_pool_shapes_and_errors():
    assert MaxPool2D().output_shape((3, 9, 8)) == (3, 4, 4)
    assert AvgPool2D(3, stride=1).output_shape((1, 5, 5)) == (1, 3, 3)
    assert MaxPool2D(2).config() == {"pool_size": 2, "stride": 2}
    with pytest.raises(ShapeError, match="smaller than the pool"):
        MaxPool2D(3).output_shape((1, 2, 8))
    with pytest.raises(ShapeError, match="NCHW"):
        AvgPool2D().forward(on_backend(np.zeros((4, 8))))
    with pytest.raises(InputError):
        MaxPool2D(0)


# -- Flatten, Reshape -------------------------------------------------------------------------
def test_flatten_and_reshape_gradients():
    x = RNG.normal(size=(3, 2, 3, 4))
    check_layer(Flatten(), x=x)
    check_layer(Reshape((4, -1)), x=x)


def test_flatten_and_reshape_shapes():
    assert Flatten().output_shape((2, 3, 4)) == (24,)
    assert tuple(Flatten().forward(on_backend(np.zeros((5, 2, 3)))).shape) == (5, 6)
    assert Reshape((4, -1)).output_shape((2, 3, 4)) == (4, 6)
    assert Reshape([1, 2, 12]).output_shape((24,)) == (1, 2, 12)
    assert tuple(Reshape((3, 8)).forward(on_backend(np.zeros((5, 24)))).shape) == (5, 3, 8)
    with pytest.raises(ShapeError, match="24 values"):
        Reshape((5, 5)).output_shape((24,))
    with pytest.raises(ShapeError, match="not a multiple of 5"):
        Reshape((5, -1)).forward(on_backend(np.zeros((2, 24))))
    for bad in [(-1, -1), (), (0, 3), (2.0,), 6]:
        with pytest.raises(InputError):
            Reshape(bad)


# -- Dropout ----------------------------------------------------------------------------------
def test_dropout_gradient_with_fixed_mask():
    check_layer(Dropout(0.4), (6,), batch=4)


def test_dropout_scales_kept_values_and_is_identity_in_inference():
    layer = Dropout(0.25)
    x = RNG.uniform(1.0, 2.0, size=(200, 50))
    out = to_numpy(layer.forward(on_backend(x), training=True))
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(out[kept], x[kept] / 0.75)
    np.testing.assert_array_equal(to_numpy(layer.forward(on_backend(x))), x)
    grad = RNG.normal(size=x.shape)
    np.testing.assert_array_equal(to_numpy(layer.backward(on_backend(grad))), grad)
    check_layer(layer, (4,), training=False)


def test_dropout_same_seed_same_mask_here_and_on_numpy():
    x = RNG.normal(size=(6, 7))
    outputs = []
    for _ in range(2):
        portanet.set_seed(5)
        outputs.append(to_numpy(Dropout(0.5).forward(on_backend(x), training=True)))
    portanet.set_backend("numpy")
    portanet.set_seed(5)
    outputs.append(Dropout(0.5).forward(x, training=True))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_allclose(outputs[0], outputs[2], rtol=1e-15)


@pytest.mark.parametrize("rate", [-0.1, 1, 1.5, True, "0.5", None])
def test_dropout_rejects_bad_rates(rate):
    with pytest.raises(InputError, match="rate"):
        Dropout(rate)


# -- BatchNorm --------------------------------------------------------------------------------
def batch_norm(features):
    layer = BatchNorm(features, dtype="float64")
    layer.gamma = on_backend(RNG.uniform(0.5, 2.0, size=features))
    layer.beta = on_backend(RNG.normal(size=features))
    return layer


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 3, 4)], ids=["2d", "4d"])
def test_batch_norm_gradient_training(shape):
    check_layer(batch_norm(shape[1]), x=RNG.normal(size=shape))


def test_batch_norm_gradient_inference():
    layer = batch_norm(2)
    layer.running_mean = on_backend([0.5, -1.0])
    layer.running_var = on_backend([2.0, 0.25])
    check_layer(layer, x=RNG.normal(size=(3, 2, 2, 3)), training=False)


def test_batch_norm_training_statistics_and_running_update():
    layer = BatchNorm(2, momentum=0.8, dtype="float64")
    x = RNG.normal(loc=3.0, scale=2.0, size=(4, 2, 3, 3))
    out = to_numpy(layer.forward(on_backend(x), training=True))
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1.0, rtol=1e-4)
    np.testing.assert_allclose(to_numpy(layer.running_mean), 0.2 * x.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(to_numpy(layer.running_var), 0.8 + 0.2 * x.var(axis=(0, 2, 3)))


def test_batch_norm_inference_uses_running_statistics():
    layer = batch_norm(3)
    mean, var = np.array([1.0, -2.0, 0.5]), np.array([4.0, 0.5, 1.0])
    layer.running_mean, layer.running_var = on_backend(mean), on_backend(var)
    x = RNG.normal(size=(6, 3))
    out = to_numpy(layer.forward(on_backend(x)))
    expected = (x - mean) / np.sqrt(var + 1e-5) * to_numpy(layer.gamma) + to_numpy(layer.beta)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    np.testing.assert_array_equal(to_numpy(layer.running_mean), mean)
    np.testing.assert_array_equal(to_numpy(layer.running_var), var)


def test_batch_norm_shapes_and_errors():
    layer = BatchNorm(3)
    assert layer.buffers == ("running_mean", "running_var")
    assert layer.output_shape((3,)) == (3,) and layer.output_shape((3, 4, 5)) == (3, 4, 5)
    for shape in [(4,), (4, 5, 5), (3, 4)]:
        with pytest.raises(ShapeError, match="expects per-sample shape"):
            layer.output_shape(shape)
    with pytest.raises(ShapeError):
        layer.forward(on_backend(np.zeros((2, 3, 4)), "float32"))
    with pytest.raises(InputError):
        BatchNorm(0)


# -- every layer ------------------------------------------------------------------------------
EXAMPLES = {  # a float32 layer and a batch it accepts
    "conv": (lambda: Conv2D(2, 3, 3, stride=2, padding="same"), (2, 2, 5, 6)),
    "conv_dilated": (lambda: Conv2D(2, 3, 2, padding="same", dilation=(2, 1)), (2, 2, 5, 6)),
    "conv1d": (lambda: Conv1D(2, 3, 3, stride=2, padding="same", dilation=2), (2, 2, 11)),
    "max_pool1d": (lambda: MaxPool1D(3, stride=2), (2, 2, 11)),
    "avg_pool1d": (lambda: AvgPool1D(2), (2, 2, 11)),
    "max_pool": (lambda: MaxPool2D(2), (2, 2, 5, 6)),
    "avg_pool": (lambda: AvgPool2D(3, stride=2), (2, 2, 5, 6)),
    "flatten": (Flatten, (2, 2, 5, 6)),
    "reshape": (lambda: Reshape((-1, 5)), (2, 2, 5, 6)),
    "dropout": (lambda: Dropout(0.5), (2, 2, 5, 6)),
    "batch_norm_4d": (lambda: BatchNorm(2), (2, 2, 5, 6)),
    "batch_norm_2d": (lambda: BatchNorm(6), (4, 6)),
    "random_flip": (lambda: RandomFlip("horizontal_and_vertical"), (2, 2, 5, 6)),
    "random_crop": (lambda: RandomCrop(2), (2, 2, 5, 6)),
    "random_erasing": (lambda: RandomErasing(3), (2, 2, 5, 6)),
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_layers_keep_the_backend_and_leave_inputs_alone(name, backend):
    make, shape = EXAMPLES[name]
    layer = make()
    x_host = distinct(shape)
    x_copy = x_host.copy()
    x = on_backend(x_host, "float32")
    out = layer.forward(x, training=True)
    assert_backend_array(out, backend, "float32")
    grad_host = RNG.normal(size=tuple(out.shape))
    grad_copy = grad_host.astype(np.float32)
    grad = on_backend(grad_host, "float32")
    grad_input = layer.backward(grad)
    assert_backend_array(grad_input, backend, "float32")
    for value in layer.grads.values():
        assert_backend_array(value, backend, "float32")
    for value in [getattr(layer, n) for n in layer.params + layer.buffers]:
        assert_backend_array(value, backend, "float32")
    np.testing.assert_array_equal(to_numpy(x), x_copy.astype(np.float32))
    np.testing.assert_array_equal(to_numpy(grad), grad_copy)
    assert_backend_array(layer.forward(x, training=False), backend, "float32")


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_layers_rebuild_from_json_config(name):
    layer = EXAMPLES[name][0]()
    config = json.loads(json.dumps(layer.config()))
    rebuilt = LAYERS[type(layer).__name__](**config)
    assert rebuilt.config() == layer.config()
    assert [w.shape for w in rebuilt.get_weights()] == [w.shape for w in layer.get_weights()]


def test_registry_names_every_layer():
    assert set(LAYERS) == {"FCLayer", "ActivationLayer", "Conv2D", "MaxPool2D", "AvgPool2D",
                           "Conv1D", "MaxPool1D", "AvgPool1D",
                           "Flatten", "Reshape", "Dropout", "BatchNorm", "Dense", "LayerNorm",
                           "Embedding", "PositionalEmbedding", "TiedDense", "SelfAttention",
                           "Sequential", "Residual", "RandomFlip", "RandomCrop", "RandomErasing",
                           "LSTM", "GRU", "Bidirectional"}
    assert all(LAYERS[name].__name__ == name for name in LAYERS)
    conv = Conv2D(1, 2, (3, 5), stride=(2, 1), input_shape=(1, 8, 8))
    assert conv.config()["kernel_size"] == [3, 5] and conv.config()["input_shape"] == [1, 8, 8]
    assert LAYERS["Conv2D"](**conv.config()).input_shape == (1, 8, 8)


# -- a tiny CNN -------------------------------------------------------------------------------
def test_tiny_cnn_trains():
    labels = np.arange(32) % 2
    x = RNG.normal(scale=0.3, size=(32, 1, 8, 8))
    x[labels == 0, 0, 3:5, :] += 1.0  # class 0: a horizontal bar, class 1: a vertical one
    x[labels == 1, 0, :, 3:5] += 1.0
    y = np.eye(2)[labels]
    net = Network()
    for layer in (Conv2D(1, 4, 3, input_shape=(1, 8, 8)), ActivationLayer("relu"), MaxPool2D(2),
                  Flatten(), FCLayer(36, 2)):
        net.add(layer)
    net.use("softmax_crossentropy")
    losses = net.fit(x, y, epochs=4, learning_rate=0.05, batch_size=8, verbose=0).history["loss"]
    assert losses[-1] < 0.8 * losses[0]
    assert net.predict(x[:8]).shape == (8, 2)
    with pytest.raises(ShapeError):
        net.add(FCLayer(3, 2))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int32", np.float32])
def test_dtypes_other_than_float32_and_float64_are_refused_where_given(dtype):
    refused = (r"dtype must be 'float32' or 'float64', got .*: weights are kept in one of them; "
               r"for float16 or bfloat16 compute .* precision='mixed_float16'")
    layer = FCLayer(2, 3)
    with pytest.raises(InputError, match=refused):
        layer.astype(dtype)
    assert layer.get_weights()[0].dtype == np.float32  # untouched
    with pytest.raises(InputError, match=refused):
        portanet.Sequential([FCLayer(2, 3)]).astype(dtype)
    with pytest.raises(InputError, match=refused):
        FCLayer(2, 3, dtype=dtype)
    with pytest.raises(InputError, match=refused):
        Network(dtype=dtype)
