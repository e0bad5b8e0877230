"""The sparse softmax cross-entropy kernel: NumPy's native one against the portable one (value
and gradient), and the kernel against its formula on every backend."""

import numpy as np
import pytest
from test_kernels import assert_close, native_or_skip, random

from portanet.backend import kernels, to_numpy

CLASSES = 7


def targets(backend, shape, dtype, seed, outside=False):
    """Random class indices of ``shape``; with ``outside``, the first is -1 and the last
    ``CLASSES`` (out of range)."""
    ids = np.random.default_rng(seed).integers(0, CLASSES, size=shape)
    if outside:
        ids.reshape(-1)[[0, -1]] = -1, CLASSES
    return backend.asarray(ids, dtype)


def reference(ids, logits):
    """Value and gradient in NumPy float64, from the formula: ``-log softmax[target]`` averaged
    over every row, a target out of range adding nothing."""
    logits = np.asarray(logits, np.float64).reshape(-1, CLASSES)
    ids = np.asarray(ids).reshape(-1)
    inside = (ids >= 0) & (ids < CLASSES)
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    picked = np.where(inside, ids, 0)
    chosen = np.take_along_axis(log_p, picked[:, None], axis=1)[:, 0]
    grad = (np.exp(log_p) - np.eye(CLASSES)[picked]) * inside[:, None] / len(ids)
    return -np.sum(chosen * inside) / len(ids), grad


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("target_dtype", ["int32", "int64"])
@pytest.mark.parametrize("shape", [(9,), (3, 5)])
@pytest.mark.parametrize("outside", [False, True])
def test_native_sparse_crossentropy_equals_the_portable_one(backend, shape, dtype, target_dtype,
                                                             outside):
    """Leading shapes (N,) and (N, T); targets out of range give the portable kernel's zeros;
    dtypes kept, inputs unchanged."""
    native_or_skip(backend, "sparse_softmax_crossentropy")
    logits = 4 * random(backend, (*shape, CLASSES), dtype, 0)
    ids = targets(backend, shape, target_dtype, 1, outside)
    before = to_numpy(logits).copy(), to_numpy(ids).copy()
    loss, gradient = kernels.sparse_softmax_crossentropy(ids, logits)
    expected, expected_gradient = kernels.portable_sparse_softmax_crossentropy(ids, logits)
    assert kernels.kernel("sparse_softmax_crossentropy", logits) is not (
        kernels.portable_sparse_softmax_crossentropy)
    assert loss.dtype == expected.dtype == logits.dtype and loss.shape == ()
    assert_close(loss, expected, dtype, "value")
    grad, expected_grad = gradient(), expected_gradient()
    assert grad.dtype == logits.dtype and grad.shape == logits.shape
    assert_close(grad, expected_grad, dtype, "gradient")
    if outside:  # the out-of-range rows: no gradient
        flat = to_numpy(grad).reshape(-1, CLASSES)
        assert not flat[0].any() and not flat[-1].any() and flat[1].any()
    np.testing.assert_array_equal(to_numpy(logits), before[0])
    np.testing.assert_array_equal(to_numpy(ids), before[1])


@pytest.mark.parametrize("outside", [False, True])
def test_sparse_crossentropy_kernel_matches_its_formula(backend, outside):
    """Whichever implementation the backend uses, float64, targets (N, T)."""
    logits = 4 * random(backend, (4, 3, CLASSES), "float64", 2)
    ids = targets(backend, (4, 3), "int64", 3, outside)
    loss, gradient = kernels.sparse_softmax_crossentropy(ids, logits)
    expected, expected_grad = reference(to_numpy(ids), to_numpy(logits))
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    assert_close(np.reshape(to_numpy(gradient()), (-1, CLASSES)), expected_grad, "float64",
                 "gradient")
