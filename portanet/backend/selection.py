"""Which backend portanet creates arrays on, and the seeded host random generator.

``PORTANET_BACKEND`` / ``PORTANET_DEVICE``, :func:`set_backend` or :func:`using_backend` choose
the backend (one of :data:`BACKENDS`, described by its module in this package); everything else
in portanet takes its namespace from the arrays it is given, so layers are written once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np

from .._checks import float_dtype, integer
from ..errors import BackendError
from .libraries import BACKENDS, LIBRARIES
from .library import Library, device_name
from .resources import env, keep_freed_memory, local_rank


@dataclass(frozen=True)
class Backend:
    """A resolved backend: its name, array-API namespace ``xp`` and the device arrays go to."""

    name: str
    xp: Any
    device: Any
    library: Library = field(compare=False, repr=False)

    def dtype(self, name: str = "float32"):
        """The backend's floating dtype called ``name`` ("float32" or "float64")."""
        return getattr(self.xp, float_dtype("dtype", name))

    def asarray(self, data, dtype: str | None = "float32"):
        """Copy host data (NumPy, lists, scalars) to this backend's device with ``dtype``."""
        return self.library.asarray(self.xp, np.asarray(data, dtype=dtype), self.device)

    def zeros(self, shape, dtype: str = "float32"):
        """An array of zeros on this backend's device."""
        self.dtype(dtype)
        return self.library.zeros(self.xp, shape, dtype, self.device)

    def __str__(self) -> str:
        return f"{self.name} on {device_name(self.device)}"


_current: Backend | None = None
_rng = np.random.default_rng()


def _import(library: Library):
    try:
        return library.load()
    except ImportError as exc:
        raise BackendError(f"backend {library.name!r} is not installed ({exc}). Install it "
                           f"with: {library.install}") from exc


def _resolve_device(library: Library, module, device: str | None):
    """Turn a device string ("cpu", "cuda", "cuda:1", ...) into the backend's device object.

    A bare "cuda" under an MPI launcher means GPU ``local rank % GPUs on the node``: one rank
    per GPU without changing the command.
    """
    kind, _, index_text = (device or "").partition(":")
    if index_text and not index_text.isdigit():
        raise BackendError(f"device {device!r} is not understood: use cpu, cuda or cuda:N")
    index = int(index_text or 0)
    wants_gpu = kind in ("cuda", "gpu") or (library.name == "cupy" and not kind)
    if wants_gpu and not index_text and local_rank():
        try:
            index = local_rank() % max(1, library.gpu_count(module))
        except Exception:  # no GPU at all: the library's device() says so
            index = 0
    return library.device(module, kind, index, device)


def _probe(library: Library, module, device):
    """The namespace of one tiny array allocated on ``device``, so an unusable GPU fails here,
    clearly."""
    try:
        probe = library.probe(module, device)
    except Exception as exc:  # any failure of the probe means the device is unusable
        raise library.unusable(device, exc) from exc
    return array_api_compat.array_namespace(probe)


def backend_name(text: str) -> str:
    """The backend ``text`` names ("NumPy", "array-api-strict", ...), as :data:`BACKENDS`
    spells it; BackendError if it names none."""
    name = text.strip().lower().replace("-", "_")
    if name not in LIBRARIES:
        raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    return name


def set_backend(name: str | None = None, device: str | None = None) -> Backend:
    """Select the backend (and device) portanet creates arrays on, and return it.

    ``name`` is one of :data:`BACKENDS`; ``None`` reads ``PORTANET_BACKEND`` (default numpy).
    ``device`` is "cpu", "cuda", "cuda:N" (or an array_api_strict device name); ``None`` reads
    ``PORTANET_DEVICE`` (when ``name`` is the environment's backend, or none is set there) and
    otherwise uses the backend's default device.
    """
    global _current
    for label, value in (("backend name", name), ("device", device)):
        if value is not None and not isinstance(value, str):
            raise BackendError(f"the {label} must be a str or None, got {value!r}")
    env_name = env("PORTANET_BACKEND")
    name = backend_name(name or env_name or "numpy")
    if device is None and (env_name is None or backend_name(env_name) == name):
        device = env("PORTANET_DEVICE")  # the env's device goes with the env's backend
    library = LIBRARIES[name]
    module = _import(library)
    resolved = _resolve_device(library, module, device)
    if _current is None:
        keep_freed_memory()
    _current = Backend(name, _probe(library, module, resolved), resolved, library)
    return _current


def get_backend() -> Backend:
    """The selected backend, resolved from the environment on first use."""
    return _current if _current is not None else set_backend()


@contextlib.contextmanager
def using_backend(backend: str | Backend | None = None, device: str | None = None):
    """Select a backend inside a ``with`` block, and the one selected before again after it::

        with portanet.using_backend("numpy"):
            on_numpy = portanet.load("model.npz")

    ``backend`` is a name (with ``device``, as :func:`set_backend` takes them) or a
    :class:`Backend` that :func:`get_backend` returned; the block gets the selected Backend."""
    global _current
    previous = _current
    try:
        if isinstance(backend, Backend):
            _current = backend
        else:
            set_backend(backend, device)
        yield _current
    finally:
        _current = previous


def set_seed(seed: int | None) -> None:
    """Seed the host generator behind every random draw portanet makes (weights, shuffles, masks).

    ``seed`` is an integer >= 0 (None: a fresh, unrepeatable one). One seed gives the same
    initial network and batch order on every backend.
    """
    global _rng
    _rng = np.random.default_rng(None if seed is None else integer("seed", seed, low=0))


def rng() -> np.random.Generator:
    """portanet's seeded host random generator."""
    return _rng


def describe_backends() -> list[dict]:
    """For each backend: whether it imports, its version and the devices it can see."""
    rows = []
    for name, library in LIBRARIES.items():
        row = {"backend": name, "installed": False, "version": "", "devices": []}
        try:
            module = library.load()
        except ImportError as exc:
            row["note"] = f"not installed: {library.install} ({exc.__class__.__name__})"
            rows.append(row)
            continue
        row.update(installed=True, version=getattr(module, "__version__", "?"))
        try:
            row["devices"] = library.devices(module)
        except Exception as exc:  # report, do not stop: this is a diagnostic listing
            row["note"] = f"no usable device: {exc}"
        rows.append(row)
    return rows
