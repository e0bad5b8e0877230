"""What portanet knows about one array library: the base every backend module describes.

Each backend is one small module of this package (``numpy.py``, ``torch.py``, ...) holding one
:class:`Library`; :mod:`portanet.backend.libraries` lists them. A new backend is a new module
and one line there.
"""

from __future__ import annotations

import importlib

import numpy as np

from ..errors import BackendError


def device_name(device) -> str:
    """A short printable name of a device object."""
    if isinstance(device, str):
        return device
    text = str(device)
    if text.startswith("<CUDA Device"):  # cupy.cuda.Device
        return f"cuda:{device.id}"
    return text.replace("array_api_strict.Device(", "").strip("()'")


class Library:
    """One array library as a backend: how to import it, find and probe its devices, copy
    host data to it and back, and compile for it. Subclasses override what differs."""

    name = ""  # the backend's name (PORTANET_BACKEND)
    module = ""  # the module to import
    install = ""  # how to install it
    compiler = None  # a portanet.backend.compilers.Compiler class, where it has one
    kernels: dict = {}  # native kernels by name, where it has them (see portanet.backend.kernels)
    half_dtypes: tuple = ()  # the 16-bit float dtypes a precision policy may compute in here

    def load(self):
        """Import the library, with portanet's settings for it."""
        return importlib.import_module(self.module)

    def owns(self, x) -> bool:
        """True when ``x`` is one of this library's arrays."""
        return type(x).__module__.split(".")[0] == self.module

    def device(self, module, kind: str, index: int, text: str | None):
        """The device object for a device string ``text`` (split into ``kind`` "cpu"/"cuda"/
        "gpu"/"" and ``index``); BackendError where the library has no such device."""
        raise NotImplementedError

    def gpu_count(self, module) -> int:
        """The CUDA GPUs the library sees."""
        return 0

    def devices(self, module) -> list[str]:
        """Names of the devices the library can use here."""
        return ["cpu"]

    def probe(self, module, device):
        """A tiny array allocated on ``device`` (it fails on an unusable device)."""
        return module.zeros(1, device=device)

    def asarray(self, xp, host: np.ndarray, device):
        """NumPy array ``host`` copied to ``device``."""
        return xp.asarray(host, device=device)

    def zeros(self, xp, shape, dtype: str, device):
        """An array of zeros of dtype ``dtype`` (by name) on ``device``."""
        return xp.zeros(shape, dtype=getattr(xp, dtype), device=device)

    def to_numpy(self, x) -> np.ndarray:
        """Array ``x`` as a NumPy array (a copy from a GPU, else sharing memory where it can)."""
        return np.from_dlpack(x)

    def cuda_buffer(self, x):
        """``x`` ready for a CUDA-aware MPI call (its queued GPU work done), or None where MPI
        must go through host memory."""
        return None

    def is_traced(self, x) -> bool:
        """True while ``x`` is a placeholder this library's compiler traces."""
        return False

    def unusable(self, device, exc) -> BackendError:
        """The error for a device that failed its probe."""
        return BackendError(f"backend {self.name!r} cannot allocate on device "
                            f"{device_name(device)}: {exc}. Unset PORTANET_DEVICE to run on "
                            "the CPU.")

    def cpu_only(self, kind: str, text: str | None) -> None:
        """BackendError unless ``kind`` names the CPU (for libraries without GPUs)."""
        if kind not in ("", "cpu"):
            raise BackendError(f"{self.name} runs on the CPU only (asked for device {text!r}); "
                               "use PORTANET_BACKEND=cupy or torch for a GPU")
