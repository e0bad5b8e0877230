"""Shared test helpers: finite differences and backend-array assertions."""

import array_api_compat
import numpy as np

import portanet


def on_backend(array, dtype="float64"):
    return portanet.get_backend().asarray(array, dtype)


def numeric_gradient(f, point, eps=1e-6):
    """Central-difference gradient of scalar ``f`` (NumPy in, float out) at ``point``."""
    point = np.array(point, dtype=np.float64)
    grad = np.zeros_like(point)
    for index in np.ndindex(point.shape):
        up, down = point.copy(), point.copy()
        up[index] += eps
        down[index] -= eps
        grad[index] = (f(up) - f(down)) / (2 * eps)
    return grad


def assert_close_gradient(analytic, numeric, rtol=1e-6, atol=1e-8):
    analytic = portanet.backend.to_numpy(analytic)
    assert analytic.shape == numeric.shape
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)


def assert_backend_array(array, backend, dtype_name):
    """``array`` belongs to ``backend``: its namespace, dtype and device."""
    assert array_api_compat.array_namespace(array) is backend.xp
    assert array.dtype == getattr(backend.xp, dtype_name)
    assert array_api_compat.device(array) == backend.device
