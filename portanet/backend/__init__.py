"""The one module that knows array libraries by name.

It resolves which backend portanet computes on (``PORTANET_BACKEND`` / ``PORTANET_DEVICE`` or
:func:`set_backend`), hands out its array-API namespace and device, moves data between the host
(NumPy) and the backend, and owns the seeded host random generator that every initialiser,
shuffle and dropout mask draws from. Everything else in portanet takes its namespace from the
arrays it is given (:func:`namespace`), so layers are written once.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from ..errors import BackendError
from .host import (  # noqa: F401  (re-exported: the backend's public helpers)
    _env,
    blas_threads,
    cuda_buffer,
    host_array,
    host_array_view,
    host_empty,
    is_host_data,
    keep_freed_memory,
    share_cpu_cores,
    step_threads,
    to_numpy,
)

BACKENDS = ("numpy", "array_api_strict", "torch", "jax", "cupy")
MODULES = {"numpy": "numpy", "array_api_strict": "array_api_strict", "torch": "torch",
           "jax": "jax", "cupy": "cupy"}
INSTALL = {
    "numpy": "pip install numpy",
    "array_api_strict": "pip install 'portanet[strict]'",
    "torch": "pip install 'portanet[torch]'  (CPU only: pip install torch --index-url "
             "https://download.pytorch.org/whl/cpu)",
    "jax": "pip install 'portanet[jax]'  (for NVIDIA GPUs: pip install 'jax[cuda12]')",
    "cupy": "pip install 'portanet[cuda12]' or 'portanet[cuda13]' (match your CUDA version)",
}
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Backend:
    """A resolved backend: its name, array-API namespace ``xp`` and the device arrays go to."""

    name: str
    xp: Any
    device: Any

    def dtype(self, name: str = "float32"):
        """The backend's floating dtype called ``name`` ("float32" or "float64")."""
        if name not in DTYPES:
            raise BackendError(f"unsupported dtype {name!r}: use one of {DTYPES}")
        return getattr(self.xp, name)

    def asarray(self, data, dtype: str | None = "float32"):
        """Copy host data (NumPy, lists, scalars) to this backend's device with ``dtype``."""
        host = np.asarray(data, dtype=dtype)
        if self.name == "jax":  # a plain copy: jnp.asarray would compile a conversion per shape
            return sys.modules["jax"].device_put(host, self.device)
        return self.xp.asarray(host, device=self.device)

    def zeros(self, shape, dtype: str = "float32"):
        """An array of zeros on this backend's device."""
        if self.name == "jax":  # made on the host and copied: no compilation per shape
            return self.asarray(np.zeros(shape), dtype)
        return self.xp.zeros(shape, dtype=self.dtype(dtype), device=self.device)

    def __str__(self) -> str:
        return f"{self.name} on {device_name(self.device)}"


def take_rows(x, rows):
    """Rows ``rows`` (non-negative indices) of ``x``: ``take`` along the first axis, on torch
    without the negative-index fix-up array-api-compat adds there (two operations a call)."""
    if type(x).__module__.startswith("torch"):
        return x.index_select(0, rows)
    return namespace(x).take(x, rows, axis=0)


def _writable(out, shape, dtype) -> bool:
    """True when ``out`` is a NumPy array that can take a result of ``shape`` and ``dtype``."""
    return type(out) is np.ndarray and out.shape == shape and out.dtype == dtype


def matmul(a, b, out=None):
    """``a @ b``; of NumPy matrices, written into ``out`` when it is given and has the result's
    shape and dtype (a layer puts a gradient straight into its piece of the training step's flat
    gradient buffer, see :meth:`portanet.layers.base.Pass.place`). Otherwise a new array."""
    if (type(a) is np.ndarray and type(b) is np.ndarray and a.ndim == b.ndim == 2
            and a.dtype == b.dtype and _writable(out, (a.shape[0], b.shape[1]), a.dtype)):
        return np.matmul(a, b, out=out)
    return a @ b


def sum_rows(x, keepdims=False, out=None):
    """The sum of ``x`` over its first axis; on NumPy straight through the ``add`` ufunc, as
    ``np.sum`` itself ends up doing (its Python wrapper costs more than summing a small batch),
    and into ``out`` as :func:`matmul` does."""
    if type(x) is np.ndarray:
        shape = (1, *x.shape[1:]) if keepdims else x.shape[1:]
        return np.add.reduce(x, axis=0, keepdims=keepdims,
                             out=out if _writable(out, shape, x.dtype) else None)
    return namespace(x).sum(x, axis=0, keepdims=keepdims)


def writes_into(array) -> bool:
    """True when :func:`matmul` and :func:`sum_rows` can write results into arrays like
    ``array`` (NumPy's)."""
    return type(array) is np.ndarray


_current: Backend | None = None
_rng = np.random.default_rng()
_namespaces: dict[type, Any] = {}


def _load(name: str):
    """Import backend ``name``'s library, with portanet's settings for it."""
    if name == "jax":  # take GPU memory on demand, like torch and cupy, so processes can share
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return importlib.import_module(MODULES[name])


def _import(name: str):
    try:
        return _load(name)
    except ImportError as exc:
        raise BackendError(
            f"backend {name!r} is not installed ({exc}). Install it with: {INSTALL[name]}"
        ) from exc


# where MPI launchers (Open MPI, MPICH/Hydra, Slurm, Intel MPI) put a process's rank on its node
LOCAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID",
                        "PMI_LOCAL_RANK")


def local_rank() -> int:
    """This process's rank among the MPI processes on its node (0 outside MPI)."""
    for variable in LOCAL_RANK_VARIABLES:
        value = _env(variable)
        if value is not None and value.isdigit():
            return int(value)
    return 0


def _gpu_count(name: str, module) -> int:
    if name == "torch":
        return module.cuda.device_count()
    if name == "jax":
        return len(module.devices("gpu"))
    return module.cuda.runtime.getDeviceCount()


def _resolve_device(name: str, module, device: str | None):
    """Turn a device string ("cpu", "cuda", "cuda:1", ...) into the backend's device object.

    A bare "cuda" under an MPI launcher means GPU ``local rank % GPUs on the node``: one rank
    per GPU without changing the command.
    """
    kind, _, index_text = (device or "").partition(":")
    if index_text and not index_text.isdigit():
        raise BackendError(f"device {device!r} is not understood: use cpu, cuda or cuda:N")
    index = int(index_text or 0)
    wants_gpu = kind in ("cuda", "gpu") or (name == "cupy" and not kind)
    if wants_gpu and not index_text and local_rank():
        try:
            index = local_rank() % max(1, _gpu_count(name, module))
        except Exception:  # no GPU at all: the checks below say so
            index = 0
    if name == "numpy":
        if kind not in ("", "cpu"):
            raise BackendError(f"numpy runs on the CPU only (asked for device {device!r}); "
                               "use PORTANET_BACKEND=cupy or torch for a GPU")
        return "cpu"
    if name == "array_api_strict":
        try:
            return module.Device("CPU_DEVICE" if kind in ("", "cpu") else device)
        except ValueError as exc:
            devices = [device_name(d) for d in module.__array_namespace_info__().devices()]
            raise BackendError(f"array_api_strict has no device {device!r}: use one of "
                               f"{devices}") from exc
    if name == "torch":
        if kind in ("", "cpu"):
            return module.device("cpu")
        if kind != "cuda" or not module.cuda.is_available():
            raise BackendError(f"torch cannot use device {device!r}: no usable CUDA GPU "
                               "(torch.cuda.is_available() is False). Unset PORTANET_DEVICE "
                               "to run on the CPU, or install a CUDA build of torch.")
        return module.device(f"cuda:{index}")
    if name == "jax":
        platform = {"": None, "cpu": "cpu", "cuda": "gpu", "gpu": "gpu"}.get(kind, kind)
        try:
            found = module.devices(platform) if platform else module.devices()
            return found[index]
        except (RuntimeError, IndexError) as exc:
            raise BackendError(f"jax has no device {device!r} ({exc}). Unset PORTANET_DEVICE to "
                               "run on the CPU, or install jax with CUDA support.") from exc
    if kind not in ("", "cuda", "gpu"):
        raise BackendError(f"cupy runs on CUDA GPUs only (asked for device {device!r}); "
                           "use PORTANET_BACKEND=numpy for the CPU")
    return module.cuda.Device(index)


def _probe(name: str, module, device):
    """Allocate one tiny array on ``device`` so an unusable GPU fails here, clearly."""
    try:
        if name == "numpy":
            probe = np.zeros(1)
        elif name == "cupy":
            with device:
                probe = module.zeros(1)
        elif name == "jax":
            module.config.update("jax_enable_x64", True)  # float64 on request, like the others
            if not _env("JAX_DEFAULT_MATMUL_PRECISION"):  # full float32 matmuls on GPUs (no TF32),
                module.config.update("jax_default_matmul_precision", "highest")  # as elsewhere
            probe = module.device_put(module.numpy.zeros(1), device)
        else:
            probe = module.zeros(1, device=device)
    except Exception as exc:  # any failure of the probe means the device is unusable
        raise BackendError(
            f"backend {name!r} cannot allocate on device {device_name(device)}: {exc}. "
            + ("CuPy needs a working NVIDIA GPU and driver; on a CPU-only machine use "
               "PORTANET_BACKEND=numpy." if name == "cupy" else
               "Unset PORTANET_DEVICE to run on the CPU.")
        ) from exc
    return array_api_compat.array_namespace(probe)


def set_backend(name: str | None = None, device: str | None = None) -> Backend:
    """Select the backend (and device) portanet creates arrays on, and return it.

    ``name`` is one of :data:`BACKENDS`; ``None`` reads ``PORTANET_BACKEND`` (default numpy).
    ``device`` is "cpu", "cuda", "cuda:N" (or an array_api_strict device name); ``None`` reads
    ``PORTANET_DEVICE`` (when ``name`` is the environment's backend, or none is set there) and
    otherwise uses the backend's default device.
    """
    global _current
    def canonical(text):
        return text.strip().lower().replace("-", "_")

    env_name = _env("PORTANET_BACKEND")
    name = canonical(name or env_name or "numpy")
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if device is None and (env_name is None or canonical(env_name) == name):
        device = _env("PORTANET_DEVICE")  # the env's device goes with the env's backend
    module = _import(name)
    resolved = _resolve_device(name, module, device)
    if _current is None:
        keep_freed_memory()
    _current = Backend(name, _probe(name, module, resolved), resolved)
    return _current


def get_backend() -> Backend:
    """The selected backend, resolved from the environment on first use."""
    return _current if _current is not None else set_backend()


def set_seed(seed: int | None) -> None:
    """Seed the host generator behind every random draw portanet makes (weights, shuffles, masks).

    One seed gives the same initial network and batch order on every backend.
    """
    global _rng
    _rng = np.random.default_rng(seed)


def rng() -> np.random.Generator:
    """portanet's seeded host random generator."""
    return _rng


def namespace(*arrays):
    """The array-API namespace of ``arrays`` (cached per array type: this sits on hot paths)."""
    try:
        return _namespaces[type(arrays[0])]
    except KeyError:
        xp = _namespaces[type(arrays[0])] = array_api_compat.array_namespace(*arrays)
        return xp


def dtype_name(x) -> str:
    """ "float64" or "float32": the floating dtype of array ``x``, by name."""
    return "float64" if x.dtype == namespace(x).float64 else "float32"


def device_name(device) -> str:
    """A short printable name of a device object."""
    if isinstance(device, str):
        return device
    text = str(device)
    if text.startswith("<CUDA Device"):  # cupy.cuda.Device
        return f"cuda:{device.id}"
    return text.replace("array_api_strict.Device(", "").strip("()'")


def describe_backends() -> list[dict]:
    """For each backend: whether it imports, its version and the devices it can see."""
    rows = []
    for name in BACKENDS:
        row = {"backend": name, "installed": False, "version": "", "devices": []}
        try:
            module = _load(name)
        except ImportError as exc:
            row["note"] = f"not installed: {INSTALL[name]} ({exc.__class__.__name__})"
            rows.append(row)
            continue
        row.update(installed=True, version=getattr(module, "__version__", "?"))
        try:
            row["devices"] = _list_devices(name, module)
        except Exception as exc:  # report, do not stop: this is a diagnostic listing
            row["note"] = f"no usable device: {exc}"
        rows.append(row)
    return rows


def _list_devices(name: str, module) -> list[str]:
    if name == "numpy":
        return ["cpu"]
    if name == "array_api_strict":
        return [device_name(d) for d in module.__array_namespace_info__().devices()]
    if name == "jax":
        return [str(d) for d in module.devices()]
    gpus = [f"cuda:{i}" for i in range(_gpu_count(name, module))]
    return ["cpu"] + gpus if name == "torch" else gpus
