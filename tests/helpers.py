"""Shared test helpers: finite differences and backend-array assertions."""

import array_api_compat
import numpy as np

import portanet
from portanet.backend import to_numpy


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


def check_gradients(layer, x, param_names=(), training=True, seed=None):
    """Backward of ``layer`` (input and every parameter) against finite differences of
    sum(forward(x) * weights); ``seed`` reseeds portanet before each forward (dropout masks)."""

    def run(point):
        if seed is not None:
            portanet.set_seed(seed)
        return layer.forward(on_backend(point), training=training)

    weights = np.random.default_rng(11).normal(size=tuple(run(x).shape))

    def objective(point):
        return float(np.sum(to_numpy(run(point)) * weights))

    run(x)
    grad_input = layer.backward(on_backend(weights))
    grads = dict(layer.grads)
    assert set(grads) == set(param_names)
    assert_close_gradient(grad_input, numeric_gradient(objective, x))
    for name in param_names:
        original = to_numpy(getattr(layer, name))

        def at_param(point, name=name):
            setattr(layer, name, on_backend(point))
            return objective(x)

        numeric = numeric_gradient(at_param, original)
        setattr(layer, name, on_backend(original))
        assert_close_gradient(grads[name], numeric)
