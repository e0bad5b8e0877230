"""The registry of backends: one line per backend module."""

from __future__ import annotations

from . import array_api_strict, cupy, jax, numpy, torch

LIBRARIES = {library.name: library for library in (
    numpy.LIBRARY,
    array_api_strict.LIBRARY,
    torch.LIBRARY,
    jax.LIBRARY,
    cupy.LIBRARY,
)}
BACKENDS = tuple(LIBRARIES)


def library_of(x):
    """The :class:`~portanet.backend.library.Library` whose array ``x`` is, or None."""
    return next((library for library in LIBRARIES.values() if library.owns(x)), None)
