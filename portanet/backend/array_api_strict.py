"""The array-api-strict backend: the standard and nothing else, with fake devices (tests)."""

from __future__ import annotations

from ..errors import BackendError
from .library import Library, device_name


class ArrayApiStrict(Library):
    name = module = "array_api_strict"
    install = "pip install 'portanet[strict]'"

    def device(self, module, kind, index, text):
        try:
            return module.Device("CPU_DEVICE" if kind in ("", "cpu") else text)
        except ValueError as exc:
            raise BackendError(f"array_api_strict has no device {text!r}: use one of "
                               f"{self.devices(module)}") from exc

    def devices(self, module):
        return [device_name(d) for d in module.__array_namespace_info__().devices()]


LIBRARY = ArrayApiStrict()
