"""Moving data between the host and the backends, and sharing the host with other processes.

NumPy arrays are the host's; :func:`to_numpy` brings any backend array back, and MPI's buffers
are NumPy arrays made here. Part of the backend package: it may name array libraries.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys

import array_api_compat
import numpy as np

from ..errors import InputError


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
    """Any backend array (or host data) as a NumPy array: a copy from a GPU, else sharing
    memory with ``x`` where NumPy can."""
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
    threads = max(1, min(usable_cores(), (os.cpu_count() or 1) // processes))
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
    except ImportError:  # scikit-learn brings it; without it, only torch is limited
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def step_threads(backend_name: str) -> int:
    """How many threads an eager training step may split its batch between: the value of
    ``PORTANET_STEP_THREADS`` when set; on NumPy, whose element-wise operations run on one core,
    the usable cores (no more than a thread count the user set, e.g. ``OMP_NUM_THREADS``);
    1 on the other backends, whose operations use the cores (or the GPU) themselves."""
    value = _env("PORTANET_STEP_THREADS")
    if value is not None:
        if not value.isdigit() or int(value) < 1:
            raise InputError(f"PORTANET_STEP_THREADS must be a positive integer, got {value!r}")
        return int(value)
    if backend_name != "numpy":
        return 1
    user_set = [int(v) for v in map(_env, THREAD_VARIABLES) if v is not None and v.isdigit()]
    return max(1, min([usable_cores(), *user_set]))


_blas_controller = None


@contextlib.contextmanager
def blas_threads(count: int):
    """BLAS limited to ``count`` threads inside the block (threadpoolctl, which scikit-learn
    brings): threads that each run their own matrix products want one core each."""
    global _blas_controller
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController
        _blas_controller = ThreadpoolController()
    with _blas_controller.limit(limits=count, user_api="blas"):
        yield


MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                    "MALLOC_MMAP_MAX_")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (glibc malloc.h)
HEAP_ARRAY_LIMIT = 32 << 20  # the largest mmap threshold glibc accepts on 64-bit systems
KEPT_FREE_MEMORY = 512 << 20


def keep_freed_memory() -> bool:
    """On Linux with glibc, let the memory of freed arrays be reused instead of handed back to
    the system and faulted in again: arrays up to 32 MiB come from the heap, and up to 512 MiB
    of free heap stays with the process. A training step allocates and frees the same large
    arrays every time (a CNN step on NumPy measured ~8 % faster). Nothing changes when
    ``PORTANET_KEEP_FREED_MEMORY=0`` or glibc's own ``MALLOC_*`` variables are set. Returns
    whether the setting was made."""
    if _env("PORTANET_KEEP_FREED_MEMORY") == "0" or any(map(_env, MALLOC_VARIABLES)):
        return False
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, HEAP_ARRAY_LIMIT)
                and libc.mallopt(M_TRIM_THRESHOLD, KEPT_FREE_MEMORY))


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
