"""Shared test helpers: backend arrays and their assertions (gradient checks are public, in
:mod:`portanet.testing`)."""

import array_api_compat

import portanet


def on_backend(array, dtype="float64"):
    return portanet.get_backend().asarray(array, dtype)


def assert_backend_array(array, backend, dtype_name):
    """``array`` belongs to ``backend``: its namespace, dtype and device."""
    assert array_api_compat.array_namespace(array) is backend.xp
    assert array.dtype == getattr(backend.xp, dtype_name)
    assert array_api_compat.device(array) == backend.device
