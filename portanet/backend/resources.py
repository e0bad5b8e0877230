"""Sharing the machine: CPU cores among processes and threads, freed memory kept for reuse,
and where this process stands among the MPI ranks of its node."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys

from threadpoolctl import ThreadpoolController, threadpool_limits

from .._checks import integer_text


def env(name: str) -> str | None:
    """The environment variable ``name``, or None where it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def share_cpu_cores(processes: int) -> int | None:
    """Give this process its share of the CPU cores when ``processes`` share a node: BLAS,
    OpenMP and torch's thread pools are limited to cores // processes (at least one, never more
    than the cores this process may run on). Nothing changes when the user has set a thread
    count (OMP_NUM_THREADS, ...). Returns the thread count set, or None."""
    if processes <= 1 or any(env(variable) for variable in THREAD_VARIABLES):
        return None
    threads = max(1, min(usable_cores(), (os.cpu_count() or 1) // processes))
    threadpool_limits(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


def step_threads(backend_name: str) -> int:
    """How many threads an eager training step may split its batch between: the value of
    ``PORTANET_STEP_THREADS`` when set; on NumPy, whose element-wise operations run on one core,
    the usable cores (no more than a thread count the user set, e.g. ``OMP_NUM_THREADS``);
    1 on the other backends, whose operations use the cores (or the GPU) themselves."""
    value = env("PORTANET_STEP_THREADS")
    if value is not None:
        return integer_text("PORTANET_STEP_THREADS", value)
    if backend_name != "numpy":
        return 1
    user_set = [int(v) for v in map(env, THREAD_VARIABLES) if v is not None and v.isdigit()]
    return max(1, min([usable_cores(), *user_set]))


_blas_controller = None


@contextlib.contextmanager
def blas_threads(count: int):
    """BLAS limited to ``count`` threads inside the block (threadpoolctl): threads that each
    run their own matrix products want one core each."""
    global _blas_controller
    if _blas_controller is None:
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
    if env("PORTANET_KEEP_FREED_MEMORY") == "0" or any(map(env, MALLOC_VARIABLES)):
        return False
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, HEAP_ARRAY_LIMIT)
                and libc.mallopt(M_TRIM_THRESHOLD, KEPT_FREE_MEMORY))


# where MPI launchers (Open MPI, MPICH/Hydra, Slurm, Intel MPI) put a process's rank on its node
LOCAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID",
                        "PMI_LOCAL_RANK")


def local_rank() -> int:
    """This process's rank among the MPI processes on its node (0 outside MPI)."""
    for variable in LOCAL_RANK_VARIABLES:
        value = env(variable)
        if value is not None and value.isdigit():
            return int(value)
    return 0
