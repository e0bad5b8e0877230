"""The choice of a kernel's implementation: :data:`PORTABLE`, the array-API one of each
kernel (its module registers it with :func:`portable`), and :func:`kernel`, which picks the
native one of an array's library where it has one."""

from __future__ import annotations

from ..libraries import library_of

PORTABLE: dict = {}  # kernel name -> its array-API implementation
_chosen: dict = {}  # (kernel name, array type) -> function: this sits on hot paths


def portable(name):
    """Register the decorated function as kernel ``name``'s portable implementation."""
    def register(function):
        PORTABLE[name] = function
        return function
    return register


def kernel(name, x):
    """The implementation of kernel ``name`` used for arrays like ``x``: the native one of its
    library where it has one, else the portable one."""
    try:
        return _chosen[name, type(x)]
    except KeyError:
        library = library_of(x)
        native = library.kernels.get(name) if library is not None else None
        found = _chosen[name, type(x)] = native or PORTABLE[name]
        return found
