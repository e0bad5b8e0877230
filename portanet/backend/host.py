"""Moving data between the host (NumPy) and the backends.

NumPy arrays are the host's; :func:`to_numpy` brings any backend array back, and MPI's buffers
are NumPy arrays made here.
"""

from __future__ import annotations

import numpy as np

from .libraries import library_of


def is_host_data(data) -> bool:
    """True for NumPy arrays, lists and scalars: data that lives on the host, not a backend."""
    return isinstance(data, (np.ndarray, np.generic, list, tuple, int, float))


def host_array_view(data, dtype=None) -> np.ndarray:
    """``data`` as a NumPy array of ``dtype`` (no copy when it already is one)."""
    return np.asarray(data, dtype=dtype)


def to_numpy(x) -> np.ndarray:
    """Any backend array (or host data) as a NumPy array: a copy from a GPU, else sharing
    memory with ``x`` where NumPy can."""
    if is_host_data(x):
        return np.asarray(x)
    library = library_of(x)
    return library.to_numpy(x) if library is not None else np.from_dlpack(x)


def cuda_buffer(x):
    """``x`` ready for a CUDA-aware MPI call (its queued GPU work finished), or None where MPI
    must go through host memory: CPU arrays, and JAX arrays (immutable, so nothing can be
    received into them)."""
    library = library_of(x)
    return library.cuda_buffer(x) if library is not None else None


def host_array(data, dtype=None) -> np.ndarray:
    """A fresh, writable, C-contiguous NumPy copy of ``data``: a buffer MPI can read and fill."""
    return np.array(data, dtype=dtype, copy=True, order="C")


def host_empty(shape, dtype="float64") -> np.ndarray:
    """An uninitialised NumPy buffer, for MPI to receive into."""
    return np.empty(shape, dtype=dtype)


def host_concat(arrays) -> np.ndarray:
    """NumPy ``arrays`` joined along their first axis."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
