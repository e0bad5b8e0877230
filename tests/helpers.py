"""Shared test helpers: backend arrays and their assertions, IDX files (gradient checks are
public, in :mod:`portanet.testing`)."""

import gzip

import array_api_compat
import numpy as np

import portanet


def on_backend(array, dtype="float64"):
    return portanet.get_backend().asarray(array, dtype)


def assert_backend_array(array, backend, dtype_name):
    """``array`` belongs to ``backend``: its namespace, dtype and device."""
    assert array_api_compat.array_namespace(array) is backend.xp
    assert array.dtype == getattr(backend.xp, dtype_name)
    assert array_api_compat.device(array) == backend.device


def write_idx(path, array, gzipped=True):
    """Write array (cast to uint8) as an IDX file, gzipped or raw; return the path."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path
