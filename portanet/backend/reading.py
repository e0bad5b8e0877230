"""Reading what users give as data: host data (NumPy, lists, numbers) as NumPy views, the
selected backend's arrays as they are, and other libraries' arrays copied through the host."""

from __future__ import annotations

import warnings

from ..errors import InputError, InputWarning
from .host import host_array_view, is_host_data, to_numpy
from .libraries import library_of
from .ops import namespace
from .selection import get_backend


def readable(data, label):
    """``data`` as an array: ``(array, host)``, a NumPy view of host data (``host`` True) or the
    selected backend's array as it is. Arrays of another library (a torch tensor on the NumPy
    backend, ...) are copied through the host, with one InputWarning; InputError for data that
    is not numbers (strings, objects, complex numbers) or cannot be read at all."""
    backend = get_backend()
    if not is_host_data(data):
        library = library_of(data)
        if library is backend.library:
            return _numbers(data, label), False
        if library is None and not hasattr(data, "__dlpack__"):
            raise InputError(f"{label} is a {type(data).__name__}, not an array: give a NumPy "
                             f"array (or a list of numbers) or an array of the {backend.name} "
                             "backend")
        origin = library.name if library is not None else type(data).__name__
        warnings.warn(f"{label} is a {origin} array but the backend is {backend.name}: it is "
                      f"copied through the host (portanet.set_backend({origin!r}) computes on "
                      "such arrays without a copy)", InputWarning, stacklevel=4)
        try:
            data = to_numpy(data)
        except Exception as exc:  # a tracer, an array on a device NumPy cannot read, ...
            raise InputError(f"{label} (a {origin} array) cannot be read on the host ({exc}): "
                             f"convert it to NumPy (e.g. .numpy()) or select its backend with "
                             f"portanet.set_backend({origin!r})") from None
    try:
        array = host_array_view(data)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{label} cannot be read as an array of numbers: {exc}") from None
    return _numbers(array, label), True


def _numbers(array, label):
    """``array``, unless its dtype is not real numbers (InputError naming what it holds)."""
    kind = getattr(array.dtype, "kind", None)  # NumPy's: U strings, S bytes, O objects
    if kind in ("U", "S", "O"):
        raise InputError(f"{label} holds {'objects' if kind == 'O' else 'strings'} (dtype "
                         f"{array.dtype}), not numbers: encode text labels as integers, e.g. "
                         "classes, ids = numpy.unique(labels, return_inverse=True)")
    xp = namespace(array)
    if xp.isdtype(array.dtype, "complex floating"):
        raise InputError(f"{label} holds complex numbers: portanet computes on real numbers; "
                         "give the real part (x.real) or both parts as features, explicitly")
    return array
