"""The CuPy backend: CUDA GPUs only."""

from __future__ import annotations

import sys

import array_api_compat

from ..errors import BackendError
from .library import Library, device_name


class CuPy(Library):
    name = module = "cupy"
    install = "pip install 'portanet[cuda12]' or 'portanet[cuda13]' (match your CUDA version)"
    half_dtypes = ("float16",)  # CuPy has no bfloat16

    def device(self, module, kind, index, text):
        if kind not in ("", "cuda", "gpu"):
            raise BackendError(f"cupy runs on CUDA GPUs only (asked for device {text!r}); "
                               "use PORTANET_BACKEND=numpy for the CPU")
        return module.cuda.Device(index)

    def gpu_count(self, module):
        return module.cuda.runtime.getDeviceCount()

    def devices(self, module):
        return [f"cuda:{i}" for i in range(self.gpu_count(module))]

    def probe(self, module, device):
        with device:
            return module.zeros(1)

    def owns(self, x):
        return array_api_compat.is_cupy_array(x)

    def to_numpy(self, x):
        return x.get()

    def cuda_buffer(self, x):
        sys.modules["cupy"].cuda.get_current_stream().synchronize()
        return x

    def unusable(self, device, exc):
        return BackendError(f"backend 'cupy' cannot allocate on device {device_name(device)}: "
                            f"{exc}. CuPy "
                            "needs a working NVIDIA GPU and driver; on a CPU-only machine use "
                            "PORTANET_BACKEND=numpy.")


LIBRARY = CuPy()
