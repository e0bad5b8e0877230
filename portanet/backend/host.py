"""Moving data between the host and the backends, and sharing the host with other processes.

NumPy arrays are the host's; :func:`to_numpy` brings any backend array back, and MPI's buffers
are NumPy arrays made here. Part of the backend package: it may name array libraries.
"""

from __future__ import annotations

import os
import sys

import array_api_compat
import numpy as np


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def is_host_data(data) -> bool:
    """True for NumPy arrays, lists and scalars: data that lives on the host, not a backend."""
    return isinstance(data, (np.ndarray, np.generic, list, tuple, int, float))


def host_array_view(data, dtype=None) -> np.ndarray:
    """``data`` as a NumPy array of ``dtype`` (no copy when it already is one)."""
    return np.asarray(data, dtype=dtype)


def to_numpy(x) -> np.ndarray:
    """Copy any backend array (or host data) to a NumPy array."""
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if is_host_data(x) or array_api_compat.is_jax_array(x):
        return np.asarray(x)
    return np.from_dlpack(x)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def share_cpu_cores(processes: int) -> int | None:
    """Give this process its share of the CPU cores when ``processes`` share a node: BLAS,
    OpenMP and torch's thread pools are limited to cores // processes (at least one, never more
    than the cores this process may run on). Nothing changes when the user has set a thread
    count (OMP_NUM_THREADS, ...). Returns the thread count set, or None."""
    if processes <= 1 or any(_env(variable) for variable in THREAD_VARIABLES):
        return None
    cores = os.cpu_count() or 1
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    threads = max(1, min(allowed, cores // processes))
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
    except ImportError:  # scikit-learn brings it; without it, only torch is limited
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


def cuda_buffer(x):
    """``x`` ready for a CUDA-aware MPI call (its queued GPU work finished), or None where MPI
    must go through host memory: CPU arrays, and JAX arrays (immutable, so nothing can be
    received into them)."""
    if array_api_compat.is_cupy_array(x):
        sys.modules["cupy"].cuda.get_current_stream().synchronize()
        return x
    if array_api_compat.is_torch_array(x) and x.is_cuda:
        sys.modules["torch"].cuda.current_stream(x.device).synchronize()
        return x
    return None


def host_array(data, dtype=None) -> np.ndarray:
    """A fresh, writable, C-contiguous NumPy copy of ``data``: a buffer MPI can read and fill."""
    return np.array(data, dtype=dtype, copy=True, order="C")


def host_empty(shape, dtype="float64") -> np.ndarray:
    """An uninitialised NumPy buffer, for MPI to receive into."""
    return np.empty(shape, dtype=dtype)
