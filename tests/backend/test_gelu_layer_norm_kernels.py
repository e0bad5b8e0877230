"""The GELU and layer normalisation kernels: NumPy's native ones against the portable ones
(forward and gradients), GELU against its formula on every backend."""

import numpy as np
import pytest
from test_kernels import assert_close, native_or_skip, random

from portanet.backend import kernels, to_numpy


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape, transposed", [((3, 5, 7), False), ((70000,), False),
                                               ((40, 900), True), ((0, 4), False)])
def test_native_gelu_equals_the_portable_one(backend, shape, transposed, dtype):
    """Value and gradient, over one block and several (a last one partial), on a transposed
    view; the dtype is kept and the input is not changed."""
    native_or_skip(backend, "gelu")
    x = 3 * random(backend, shape, dtype, 0)
    if transposed:
        x = backend.xp.matrix_transpose(x)
    before = to_numpy(x).copy()
    grad = random(backend, x.shape, dtype, 1)
    (y, backward), (expected, expected_backward) = kernels.gelu(x), kernels.portable_gelu(x)
    for mine, theirs, label in ((y, expected, "value"),
                                (backward(grad), expected_backward(grad), "gradient")):
        assert mine.dtype == theirs.dtype == x.dtype and mine.shape == x.shape
        if x.size:
            assert_close(mine, theirs, dtype, label)
    np.testing.assert_array_equal(to_numpy(x), before)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape, transposed", [((4, 7, 6), False), ((5, 6), True)])
def test_native_layer_norm_equals_the_portable_one(backend, shape, transposed, dtype):
    """Output and the three gradients (and none of the input's when it is not needed), on rows
    of an offset and spread far from 0 and 1, and on a transposed view."""
    native_or_skip(backend, "layer_norm")
    x = 5.0 + 3 * random(backend, shape, dtype, 0)
    if transposed:
        x = backend.xp.matrix_transpose(x)
    gamma, beta = random(backend, (x.shape[-1],), dtype, 1), random(backend, (x.shape[-1],),
                                                                     dtype, 2)
    before = to_numpy(x).copy()
    (out, backward), (expected, expected_backward) = (
        kernel(x, gamma, beta, 1e-5) for kernel in (kernels.layer_norm,
                                                    kernels.portable_layer_norm))
    assert out.dtype == expected.dtype and out.shape == expected.shape
    assert_close(out, expected, dtype, "output")
    grad = random(backend, x.shape, dtype, 3)
    for label, mine, theirs in zip(("x", "gamma", "beta"), backward(grad),
                                   expected_backward(grad)):
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape
        assert_close(mine, theirs, dtype, f"gradient of {label}")
    skipped = backward(grad, need_input=False)
    assert skipped[0] is None
    assert_close(skipped[1], expected_backward(grad)[1], dtype, "gradient of gamma alone")
    np.testing.assert_array_equal(to_numpy(x), before)


def gelu_formula(v):
    return 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))


def test_gelu_matches_its_formula_and_derivative(backend):
    """The kernel on every backend against NumPy float64: GELU's tanh form and the slope of
    that formula by central differences."""
    x = np.linspace(-6, 6, 241)
    y, backward = kernels.gelu(backend.asarray(x, "float64"))
    np.testing.assert_allclose(to_numpy(y), gelu_formula(x), rtol=1e-12, atol=1e-14)
    step = 1e-6
    slope = (gelu_formula(x + step) - gelu_formula(x - step)) / (2 * step)
    grad = to_numpy(backward(backend.asarray(np.full_like(x, 2.0), "float64")))
    np.testing.assert_allclose(grad, 2 * slope, rtol=1e-7, atol=1e-8)
