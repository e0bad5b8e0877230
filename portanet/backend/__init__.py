"""The only package that knows array libraries by name.

- :mod:`~portanet.backend.selection`: which backend and device portanet creates arrays on
  (``PORTANET_BACKEND``, :func:`set_backend`, :func:`using_backend`), and the seeded host
  random generator behind every draw;
- one module per backend (:mod:`~portanet.backend.numpy`, ``array_api_strict``, ``torch``,
  ``jax``, ``cupy``) describing it, listed in :mod:`~portanet.backend.libraries`;
- :mod:`~portanet.backend.ops`: hot-path helpers (the namespace of arrays, ``matmul``, ...);
- :mod:`~portanet.backend.kernels`: convolution, pooling, embedding, attention and ReLU's
  backward, native where the library has them;
- :mod:`~portanet.backend.host`: transfers between the host (NumPy) and the backends;
- :mod:`~portanet.backend.reading`: what users give as data, read as arrays;
- :mod:`~portanet.backend.resources`: CPU cores, threads and memory shared with other processes;
- :mod:`~portanet.backend.compilers`: compiling pure functions where the backend can.
"""

from .host import (
    cuda_buffer,
    host_array,
    host_array_view,
    host_concat,
    host_empty,
    is_host_data,
    to_numpy,
)
from .libraries import BACKENDS
from .library import device_name
from .ops import (
    add_at,
    cast,
    dtype_name,
    is_array,
    is_traced,
    matmul,
    namespace,
    row_major,
    softmax,
    softmax_vjp,
    sum_rows,
    take_rows,
    writes_into,
)
from .reading import readable
from .resources import (
    blas_threads,
    keep_freed_memory,
    local_rank,
    share_cpu_cores,
    step_threads,
    usable_cores,
)
from .selection import (
    Backend,
    backend_name,
    describe_backends,
    get_backend,
    rng,
    set_backend,
    set_seed,
    using_backend,
)

__all__ = [
    "add_at", "BACKENDS", "Backend", "backend_name", "blas_threads", "cast", "cuda_buffer",
    "describe_backends", "device_name", "dtype_name", "get_backend", "host_array",
    "host_array_view", "host_concat", "host_empty",
    "is_host_data", "is_array", "is_traced", "keep_freed_memory", "local_rank", "matmul",
    "namespace", "readable", "rng", "row_major", "set_backend", "set_seed", "share_cpu_cores",
    "softmax", "softmax_vjp", "step_threads", "sum_rows", "take_rows", "to_numpy", "usable_cores",
    "using_backend", "writes_into",
]
