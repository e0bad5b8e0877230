"""The kernels of portanet.backend.kernels: each native kernel against the portable one (forward
and gradients, eager and compiled), and which one the layers get on each backend."""

import numpy as np
import pytest

import portanet
from portanet.backend import kernels, to_numpy

NATIVE = {"torch": {"conv2d", "max_pool2d", "avg_pool2d", "embedding", "attention",
                    "relu_backward"},
          "jax": {"conv2d", "avg_pool2d", "embedding", "scan"},
          "numpy": {"attention", "conv2d", "gelu", "layer_norm", "lstm", "max_pool2d",
                    "relu_backward", "sparse_softmax_crossentropy"}}  # elsewhere: portable
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}  # relative to the largest expected magnitude

# (channels in, out), (height, width), kernel, stride, padding ((top, bottom), (left, right)),
# dilation
CONVOLUTIONS = {
    "valid": ((3, 4), (7, 9), (3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    "same": ((3, 4), (7, 9), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    "same-stride-2-uneven": ((3, 4), (8, 10), (3, 3), (2, 2), ((0, 1), (0, 1)), (1, 1)),
    "valid-stride-2-odd": ((2, 5), (7, 9), (3, 2), (2, 2), ((0, 0), (0, 0)), (1, 1)),
    "tall-kernel-mixed-stride": ((3, 2), (9, 7), (5, 3), (2, 1), ((2, 2), (1, 1)), (1, 1)),
    "first-layer": ((1, 16), (9, 9), (3, 3), (2, 2), ((0, 0), (0, 0)), (1, 1)),
    "dilated-same": ((3, 4), (9, 11), (3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2)),
    "dilated-stride-uneven": ((2, 3), (10, 12), (2, 3), (2, 3), ((0, 1), (1, 2)), (3, 2)),
    "dilated-first-layer": ((1, 8), (11, 11), (3, 2), (2, 2), ((0, 0), (0, 0)), (2, 4)),
    "one-row-dilated": ((3, 4), (1, 13), (1, 3), (1, 2), ((0, 0), (2, 3)), (1, 3)),
}
# (height, width), pool, stride
POOLS = {"tiled": ((8, 6), (2, 2), (2, 2)), "odd": ((7, 9), (2, 2), (2, 2)),
         "overlapping": ((7, 9), (3, 3), (2, 2)), "uneven": ((9, 8), (2, 3), (1, 2)),
         "tiled-3": ((9, 6), (3, 3), (3, 3)), "gaps": ((9, 10), (2, 2), (3, 3)),
         "one-column-strided": ((6, 7), (2, 1), (2, 3))}


def native_or_skip(backend, name):
    if name not in NATIVE.get(backend.name, ()):
        pytest.skip(f"{backend.name} has no native {name}: the portable one is used "
                    "(test_each_backend_uses_its_native_kernels_and_the_portable_ones_elsewhere)")


def random(backend, shape, dtype, seed):
    return backend.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


def assert_close(got, expected, dtype, label):
    got, expected = to_numpy(got), to_numpy(expected)
    assert got.shape == expected.shape, label
    error = np.max(np.abs(got - expected)) / np.max(np.abs(expected))
    assert error <= TOLERANCE[dtype], f"{label}: relative error {error:.2e}"


def conv_inputs(backend, case, dtype):
    (c_in, c_out), size, kernel, stride, padding, dilation = CONVOLUTIONS[case]
    x = random(backend, (2, c_in, *size), dtype, 0)
    weights = random(backend, (c_out, c_in, *kernel), dtype, 1)
    return x, weights, random(backend, (c_out,), dtype, 2), stride, padding, dilation


def reference_conv2d(x, weights, bias, stride, padding, dilation):
    """NumPy cross-correlation, one strided slice of the padded image per kernel offset."""
    x = np.pad(x, ((0, 0), (0, 0), *padding))
    (kh, kw), (sh, sw), (dh, dw) = weights.shape[2:], stride, dilation
    out_h = (x.shape[2] - (kh - 1) * dh - 1) // sh + 1
    out_w = (x.shape[3] - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((x.shape[0], weights.shape[0], out_h, out_w)) + bias[:, None, None]
    for i in range(kh):
        for j in range(kw):
            seen = x[:, :, i * dh:i * dh + sh * (out_h - 1) + 1:sh,
                     j * dw:j * dw + sw * (out_w - 1) + 1:sw]
            out += np.einsum("nchw,oc->nohw", seen, weights[:, :, i, j])
    return out


@pytest.mark.parametrize("case", CONVOLUTIONS)
def test_conv2d_equals_a_numpy_reference_and_its_gradients_are_the_adjoints(backend, case):
    """The output is the direct sum over kernel offsets; the convolution is linear in the
    image and in the weights, so the gradients must satisfy ``<out - bias, g> = <x, grad_x> =
    <weights, grad_weights>``, and the bias gradient sums ``g``."""
    args = conv_inputs(backend, case, "float64")
    x, weights, bias = map(to_numpy, args[:3])
    out, backward = kernels.conv2d(*args)
    expected = reference_conv2d(x, weights, bias, *args[3:])
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-10, atol=1e-10)
    grad = np.random.default_rng(3).normal(size=expected.shape)
    grad_x, grad_weights, grad_bias = map(to_numpy, backward(backend.asarray(grad, "float64")))
    product = np.sum((expected - bias[:, None, None]) * grad)
    np.testing.assert_allclose(np.sum(x * grad_x), product, rtol=1e-10)
    np.testing.assert_allclose(np.sum(weights * grad_weights), product, rtol=1e-10)
    np.testing.assert_allclose(grad_bias, grad.sum(axis=(0, 2, 3)), rtol=1e-10)


def test_each_backend_uses_its_native_kernels_and_the_portable_ones_elsewhere(backend):
    x = backend.zeros((1, 1, 4, 4), "float32")
    for name, portable in kernels.PORTABLE.items():
        used = kernels.kernel(name, x)
        native = name in NATIVE.get(backend.name, ())
        assert (used is not portable) == native, name
        assert used is backend.library.kernels.get(name, portable)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CONVOLUTIONS)
def test_native_conv2d_equals_the_portable_one(backend, case, dtype):
    native_or_skip(backend, "conv2d")
    args = conv_inputs(backend, case, dtype)
    out, backward = kernels.conv2d(*args)
    expected, expected_backward = kernels.portable_conv2d(*args)
    assert_close(out, expected, dtype, "output")
    grad = random(backend, tuple(expected.shape), dtype, 3)
    got, wanted = backward(grad), expected_backward(grad)
    for label, mine, theirs in zip(("input", "weights", "bias"), got, wanted):
        assert mine.dtype == theirs.dtype
        assert_close(mine, theirs, dtype, f"gradient of the {label}")
    none, *params = backward(grad, need_input=False)
    assert none is None
    for label, mine, theirs in zip(("weights", "bias"), params, wanted[1:]):
        assert_close(mine, theirs, dtype, f"gradient of the {label} without the input's")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", POOLS)
@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_native_pooling_equals_the_portable_one(backend, name, case, dtype):
    native_or_skip(backend, name)
    size, pool, stride = POOLS[case]
    x = random(backend, (2, 3, *size), dtype, 0)
    out, backward = getattr(kernels, name)(x, pool, stride)
    expected, expected_backward = kernels.PORTABLE[name](x, pool, stride)
    assert_close(out, expected, dtype, "output")
    grad = random(backend, tuple(expected.shape), dtype, 1)
    assert_close(backward(grad), expected_backward(grad), dtype, "gradient of the input")


@pytest.mark.parametrize("case", POOLS)
def test_native_max_pooling_breaks_ties_as_the_portable_one(backend, case):
    """On small integers (after a ReLU: many zeros), most windows hold their maximum more
    than once: the gradient must go to the same one of them (integer gradients, so that sums
    over overlapping windows are exact in any order)."""
    native_or_skip(backend, "max_pool2d")
    size, pool, stride = POOLS[case]
    rng = np.random.default_rng(0)
    x = backend.asarray(np.maximum(rng.integers(-2, 3, (2, 3, *size)), 0), "float64")
    out, backward = kernels.max_pool2d(x, pool, stride)
    expected, expected_backward = kernels.portable_max_pool2d(x, pool, stride)
    grad = backend.asarray(rng.integers(1, 9, tuple(expected.shape)), "float64")
    np.testing.assert_array_equal(to_numpy(out), to_numpy(expected))
    np.testing.assert_array_equal(to_numpy(backward(grad)), to_numpy(expected_backward(grad)))


def test_max_pooling_gives_a_tied_windows_gradient_to_its_first_maximum(backend):
    """As the portable kernel does (after a ReLU, windows of zeros are common)."""
    x = backend.asarray([[[[0, 0, 1, 1], [0, 0, 1, 1], [2, 0, 0, 3], [0, 2, 3, 3]]]], "float64")
    for pool, stride, expected in (
            ((2, 2), (2, 2), [[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]]),
            ((3, 3), (1, 1), [[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 2], [0, 0, 1, 0]])):
        _, backward = kernels.max_pool2d(x, pool, stride)
        grad = backward(backend.asarray(np.ones((1, 1, 2, 2)), "float64"))
        np.testing.assert_array_equal(to_numpy(grad)[0, 0], expected)


def embedding_inputs(backend, dtype, ids_shape=(3, 7)):
    """A table of 6 rows and ids that repeat and leave row 5 unused."""
    ids = np.random.default_rng(4).integers(0, 5, ids_shape)
    return random(backend, (6, 4), dtype, 0), backend.asarray(ids, "int64")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ids_shape", [(3, 7), (11,)])
def test_native_embedding_equals_the_portable_one(backend, ids_shape, dtype):
    native_or_skip(backend, "embedding")
    table, ids = embedding_inputs(backend, dtype, ids_shape)
    out, backward = kernels.embedding(table, ids)
    expected, expected_backward = kernels.portable_embedding(table, ids)
    assert_close(out, expected, dtype, "output")
    grad = random(backend, tuple(expected.shape), dtype, 1)
    assert_close(backward(grad), expected_backward(grad), dtype, "gradient of the table")


def test_embedding_gradient_adds_up_the_rows_of_repeated_ids(backend):
    table, ids = embedding_inputs(backend, "float64")
    out, backward = kernels.embedding(table, ids)
    np.testing.assert_array_equal(to_numpy(out), to_numpy(table)[to_numpy(ids)])
    grad = np.random.default_rng(1).normal(size=(3, 7, 4))
    expected = np.zeros((6, 4))
    np.add.at(expected, to_numpy(ids), grad)
    np.testing.assert_allclose(to_numpy(backward(backend.asarray(grad, "float64"))), expected,
                               rtol=1e-12, atol=1e-12)


def attention_inputs(backend, dtype, positions=9):
    return [random(backend, (2, 3, positions, 8), dtype, seed) for seed in range(3)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("positions, views", [(9, False), (75, True)])
def test_native_attention_equals_the_portable_one(backend, causal, positions, views, dtype):
    """``views``: q, k, v are the layer's kind, transposed views of one array, and long enough
    for NumPy's kernel to take the heads in several blocks (the last one partial)."""
    native_or_skip(backend, "attention")
    q, k, v = attention_inputs(backend, dtype, positions)
    if views:  # (N, T, heads, d) arrays seen as (N, heads, T, d)
        q, k, v = (backend.xp.permute_dims(random(backend, (2, positions, 3, 8), dtype, seed),
                                           (0, 2, 1, 3)) for seed in range(3))
    before = [to_numpy(a).copy() for a in (q, k, v)]
    out, backward = kernels.attention(q, k, v, causal)
    expected, expected_backward = kernels.portable_attention(q, k, v, causal)
    assert out.dtype == expected.dtype and out.shape == expected.shape
    assert_close(out, expected, dtype, "output")
    grad = random(backend, tuple(expected.shape), dtype, 3)
    for label, mine, theirs in zip("qkv", backward(grad), expected_backward(grad)):
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape
        assert_close(mine, theirs, dtype, f"gradient of {label}")
    for a, copy in zip((q, k, v), before):
        np.testing.assert_array_equal(to_numpy(a), copy)


@pytest.mark.parametrize("name", ["gelu", "attention", "layer_norm"])
def test_numpy_kernels_compute_integer_arrays_in_floats(backend, name):
    """Integer inputs give what the portable kernel's arithmetic gives on NumPy (float64), not
    integer results."""
    if backend.name != "numpy":
        pytest.skip("NumPy's native kernels (elsewhere integer arithmetic is the library's)")
    ints = backend.asarray(np.arange(-6, 6).reshape(1, 2, 3, 2), "int64")
    inputs = {"gelu": (ints,), "attention": (ints, ints, ints, True),
              "layer_norm": (ints, ints[0, 0, 0], ints[0, 0, 1], 1e-5)}[name]
    (out, backward), (expected, expected_backward) = (
        kernel(*inputs) for kernel in (getattr(kernels, name), kernels.PORTABLE[name]))
    assert out.dtype == expected.dtype and "float" in str(out.dtype)
    assert_close(out, expected, "float64", name)
    grad = backend.xp.ones_like(expected)
    mine, theirs = backward(grad), expected_backward(grad)
    for got, want in (zip(mine, theirs) if isinstance(mine, tuple) else [(mine, theirs)]):
        assert_close(got, want, "float64", f"gradient of {name}")


def test_causal_attention_only_looks_back(backend):
    """The first query sees only the first value, and no later key changes an earlier output
    or gets a gradient from it."""
    q, k, v = attention_inputs(backend, "float64")
    out, backward = kernels.attention(q, k, v, True)
    np.testing.assert_allclose(to_numpy(out)[:, :, 0], to_numpy(v)[:, :, 0], rtol=1e-12)
    grad = np.zeros(tuple(out.shape))
    grad[:, :, :4] = 1.0  # the first four outputs
    grad_q, grad_k, grad_v = map(to_numpy, backward(backend.asarray(grad, "float64")))
    assert not np.any(grad_k[:, :, 4:]) and not np.any(grad_v[:, :, 4:])
    assert np.all(np.abs(grad_v[:, :, :4]) > 0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_relu_backward_passes_the_gradient_where_the_output_is_positive(backend, dtype):
    """Zero outputs (ReLU's negative and zero inputs) stop the gradient; the native kernel
    gives exactly the portable one's values."""
    y = np.maximum(np.random.default_rng(0).normal(size=(3, 4, 5)), 0.0)
    y[0, 0, :2] = 0.0
    grad = np.random.default_rng(1).normal(size=y.shape)
    got = kernels.relu_backward(backend.asarray(y, dtype), backend.asarray(grad, dtype))
    assert got.dtype == backend.dtype(dtype)
    expected = np.where(y > 0, grad, 0.0).astype(dtype)
    np.testing.assert_array_equal(to_numpy(got), expected)
    portable = kernels.portable_relu_backward(backend.asarray(y, dtype),
                                              backend.asarray(grad, dtype))
    np.testing.assert_array_equal(to_numpy(got), to_numpy(portable))


def test_kernels_compile_with_the_backends_compiler(backend):
    """Forward and backward of every kernel inside one compiled function (traced: no host
    reads) give what they give eagerly."""
    if backend.library.compiler is None:
        pytest.skip(f"{backend.name} has no compiler")
    x, weights, bias, stride, padding, dilation = conv_inputs(backend, "dilated-stride-uneven",
                                                             "float64")

    def step(x, weights, bias):
        out, conv_backward = kernels.conv2d(x, weights, bias, stride, padding, dilation)
        rectified = portanet.activations.relu(out)
        pooled, max_backward = kernels.max_pool2d(rectified, (2, 2), (1, 1))
        averaged, avg_backward = kernels.avg_pool2d(pooled, (2, 2), (1, 1))
        grad = kernels.relu_backward(rectified, max_backward(avg_backward(averaged)))
        return averaged, conv_backward(grad)

    compiled = backend.library.compiler().compile(step)
    for mine, theirs in zip(flatten(compiled(x, weights, bias)), flatten(step(x, weights, bias))):
        assert_close(mine, theirs, "float64", "compiled")
    table, ids = embedding_inputs(backend, "float64")

    def sequence_step(table, ids):
        """An embedding of (3, 7) ids to 4 = heads x features, layer normalisation, causal
        attention and GELU over it."""
        rows, embedding_backward = kernels.embedding(table, ids)
        normalized, norm_backward = kernels.layer_norm(rows, table[0, :], table[1, :], 1e-5)
        heads = backend.xp.reshape(normalized, (3, 1, 7, 4))
        attended, attention_backward = kernels.attention(heads, heads, heads, True)
        out, gelu_backward = kernels.gelu(attended)
        grad, grad_gamma, grad_beta = norm_backward(
            backend.xp.reshape(sum(attention_backward(gelu_backward(out))), (3, 7, 4)))
        return out, [embedding_backward(grad), grad_gamma, grad_beta]

    compiled = backend.library.compiler().compile(sequence_step)
    for mine, theirs in zip(flatten(compiled(table, ids)), flatten(sequence_step(table, ids))):
        assert_close(mine, theirs, "float64", "compiled sequence kernels")


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_runs_the_steps_in_order_eagerly_and_compiled(backend, reverse):
    """Running sums and products of tanh over the first axis, forwards or backwards: eagerly
    (the Python loop on every backend) as NumPy computes them, and inside the backend's
    compiler (JAX: lax.scan) the same."""
    xp, host = backend.xp, np.random.default_rng(3).normal(size=(5, 3, 2))

    def run(xs):
        def step(carry, inputs):
            total, product = carry[0] + inputs[0], carry[1] * xp.tanh(inputs[0])
            return (total, product), (total, product)
        return kernels.scan(step, (xp.zeros_like(xs[0, ...]), xp.ones_like(xs[0, ...])), (xs,),
                            reverse)

    ordered = host[::-1] if reverse else host
    totals, products = np.cumsum(ordered, axis=0), np.cumprod(np.tanh(ordered), axis=0)
    if reverse:
        totals, products = totals[::-1], products[::-1]
    xs = backend.asarray(host, "float64")
    (total, product), (all_totals, all_products) = run(xs)
    last = 0 if reverse else -1
    for got, expected, label in ((total, totals[last], "carry"), (product, products[last], "carry"),
                                 (all_totals, totals, "ys"), (all_products, products, "ys")):
        assert_close(got, expected, "float64", label)
    if backend.library.compiler is not None:
        compiled = backend.library.compiler().compile(run)
        for got, expected in zip(flatten(compiled(xs)), flatten(run(xs))):
            for mine, theirs in zip(got, expected):
                assert_close(mine, theirs, "float64", "compiled scan")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("steps, shared_start", [(6, False), (1, False), (4, True)])
def test_native_lstm_equals_the_portable_one(backend, steps, shared_start, dtype):
    """Hidden states and every gradient; the inputs stay as they were (``shared_start``: the
    initial states are one read-only row broadcast to the batch, as learned ones are)."""
    native_or_skip(backend, "lstm")
    xp, n, size = backend.xp, 3, 5
    projected = random(backend, (steps, n, 4 * size), dtype, 0)
    weight_hh = random(backend, (4 * size, size), dtype, 1)
    if shared_start:
        h0, c0 = (xp.broadcast_to(random(backend, (size,), dtype, seed), (n, size))
                  for seed in (2, 3))
    else:
        h0, c0 = (random(backend, (n, size), dtype, seed) for seed in (2, 3))
    inputs = (projected, weight_hh, h0, c0)
    before = [to_numpy(x).copy() for x in inputs]
    hidden, backward = kernels.lstm(*inputs)
    expected, expected_backward = kernels.portable_lstm(*inputs)
    assert hidden.dtype == expected.dtype
    assert_close(hidden, expected, dtype, "hidden states")
    grad = random(backend, (steps, n, size), dtype, 4)
    for label, mine, theirs in zip(("projected", "h0", "c0"), backward(grad),
                                   expected_backward(grad)):
        assert mine.dtype == theirs.dtype
        assert_close(mine, theirs, dtype, f"gradient of {label}")
    for x, copy in zip(inputs, before):
        np.testing.assert_array_equal(to_numpy(x), copy)


def flatten(result):
    out, grads = result
    return [out, *grads]


@pytest.mark.parametrize("call, match", [
    (lambda b: kernels.conv2d(b.zeros((3, 4, 4), "float32"), b.zeros((2, 3, 3, 3), "float32"),
                              b.zeros((2,), "float32"), (1, 1), ((0, 0), (0, 0))), "4-D"),
    (lambda b: kernels.conv2d(b.zeros((1, 2, 4, 4), "float32"), b.zeros((2, 3, 3, 3), "float32"),
                              b.zeros((2,), "float32"), (1, 1), ((0, 0), (0, 0))),
     "take 3 input channels, the batch has 2"),
    (lambda b: kernels.conv2d(b.zeros((1, 3, 2, 4), "float32"), b.zeros((2, 3, 3, 3), "float32"),
                              b.zeros((2,), "float32"), (1, 1), ((0, 0), (0, 0))), "does not fit"),
    (lambda b: kernels.conv2d(b.zeros((1, 3, 4, 4), "float32"), b.zeros((2, 3, 2, 2), "float32"),
                              b.zeros((2,), "float32"), (1, 1), ((0, 0), (0, 0)), (1, 4)),
     "a 2x5 window does not fit"),
    (lambda b: kernels.conv2d(b.zeros((1, 3, 4, 4), "float32"), b.zeros((2, 3, 2, 2), "float32"),
                              b.zeros((2,), "float32"), (1, 1), ((0, 0), (0, 0)), (0, 1)),
     "dilations must be positive"),
    (lambda b: kernels.max_pool2d(b.zeros((1, 1, 4, 4), "float32"), (2, 2), (0, 1)), "positive"),
    (lambda b: kernels.avg_pool2d(b.zeros((1, 1, 4, 1), "float32"), (2, 2), (2, 2)),
     "does not fit"),
    (lambda b: kernels.conv1d(b.zeros((1, 3, 4, 4), "float32"), b.zeros((2, 3, 3), "float32"),
                              b.zeros((2,), "float32"), (1,), ((0, 0),)), "3-D batches"),
    (lambda b: kernels.conv1d(b.zeros((1, 3, 6), "float32"), b.zeros((2, 3, 3), "float32"),
                              b.zeros((2,), "float32"), (1,), ((0, 0),), (3,)), "does not fit"),
    (lambda b: kernels.max_pool1d(b.zeros((1, 3, 2), "float32"), (3,), (1,)), "does not fit"),
    (lambda b: kernels.avg_pool1d(b.zeros((3, 8), "float32"), (2,), (2,)), "3-D batches"),
    (lambda b: kernels.attention(*[b.zeros(shape, "float32") for shape in
                                   ((1, 2, 5, 4), (1, 2, 6, 4), (1, 2, 6, 4))], True),
     "one shape"),
])
def test_bad_shapes_are_refused(backend, call, match):
    with pytest.raises(portanet.ShapeError, match=match):
        call(backend)
