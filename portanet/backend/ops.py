"""Hot-path helpers the layers and the step call: the namespace of arrays, softmax (the
activation's and attention's), and the few operations done faster on one backend than the array
API's portable form."""

from __future__ import annotations

import sys
from typing import Any

import array_api_compat
import array_api_extra as xpx
import numpy as np

from .libraries import LIBRARIES

_namespaces: dict[type, Any] = {}


def namespace(*arrays):
    """The array-API namespace of ``arrays`` (cached per array type: this sits on hot paths)."""
    try:
        return _namespaces[type(arrays[0])]
    except KeyError:
        xp = _namespaces[type(arrays[0])] = array_api_compat.array_namespace(*arrays)
        return xp


def is_array(value) -> bool:
    """True for arrays of any library (anything with a shape and a dtype)."""
    return hasattr(value, "shape") and hasattr(value, "dtype")


FLOAT_NAMES = ("float64", "float32", "float16", "bfloat16")
HALF = ("float16", "bfloat16")  # the 16-bit dtypes, whose sums are taken in float32


def dtype_name(x) -> str:
    """The floating dtype of array ``x`` by name: "float64", "float16", "bfloat16", else
    "float32"."""
    xp = namespace(x)
    return next((name for name in FLOAT_NAMES if x.dtype == getattr(xp, name, None)),
                "float32")


def cast(x, name):
    """Floating array ``x`` in the dtype named ``name`` (``x`` itself where it is in it
    already); other arrays (integer ids) as they are."""
    xp = namespace(x)
    dtype = getattr(xp, name)
    if x.dtype == dtype or not xp.isdtype(x.dtype, "real floating"):
        return x
    return xp.astype(x, dtype)


def take_rows(x, rows):
    """Rows ``rows`` (non-negative indices) of ``x``: ``take`` along the first axis, on torch
    without the negative-index fix-up array-api-compat adds there (two operations a call)."""
    if type(x).__module__.startswith("torch"):
        return x.index_select(0, rows)
    return namespace(x).take(x, rows, axis=0)


def writable(out, shape, dtype) -> bool:
    """True when ``out`` is a NumPy array that can take a result of ``shape`` and ``dtype``."""
    return type(out) is np.ndarray and out.shape == shape and out.dtype == dtype


def matmul(a, b, out=None):
    """``a @ b``; of NumPy matrices, written into ``out`` when it is given and has the result's
    shape and dtype (a layer puts a gradient straight into its piece of the training step's flat
    gradient buffer, see :meth:`portanet.layers.base.Pass.place`). Otherwise a new array."""
    if (type(a) is np.ndarray and type(b) is np.ndarray and a.ndim == b.ndim == 2
            and a.dtype == b.dtype and writable(out, (a.shape[0], b.shape[1]), a.dtype)):
        return np.matmul(a, b, out=out)
    return a @ b


BLAS_SUM_ROWS = 64  # from this many rows of a float matrix, a product with ones sums faster


def sum_rows(x, keepdims=False, out=None):
    """The sum of ``x`` over its first axis, into ``out`` as :func:`matmul` does. On NumPy, a
    float32/float64 matrix of :data:`BLAS_SUM_ROWS` rows or more is a product with a row of
    ones (BLAS: 2 to 5 times as fast as ``add.reduce`` for (2048, 64) to (2048, 256) float32),
    else straight through the ``add`` ufunc, as ``np.sum`` itself ends up doing (its Python
    wrapper costs more than summing a small batch)."""
    if type(x) is np.ndarray:
        shape = (1, *x.shape[1:]) if keepdims else x.shape[1:]
        out = out if writable(out, shape, x.dtype) else None
        if x.ndim == 2 and len(x) >= BLAS_SUM_ROWS and x.dtype.char in "fd":
            return np.matmul(np.ones(shape[:-1] + (len(x),), x.dtype), x, out=out)
        return np.add.reduce(x, axis=0, keepdims=keepdims, out=out)
    return namespace(x).sum(x, axis=0, keepdims=keepdims)


def add_at(x, index, y):
    """``x`` with ``y`` added to ``x[index]`` (a basic index: slices, integers, ellipsis), for an
    ``x`` the caller made and may overwrite: on NumPy in place, one pass over the window
    (``array_api_extra.at(...).add`` writes the sum back over it a second time); elsewhere
    ``array_api_extra.at``, which copies where arrays are immutable (JAX)."""
    if type(x) is np.ndarray:
        window = x[index]
        window += y
        return x
    return xpx.at(x, index).add(y)


def writes_into(array) -> bool:
    """True when :func:`matmul` and :func:`sum_rows` can write results into arrays like
    ``array`` (NumPy's)."""
    return type(array) is np.ndarray


def is_traced(array) -> bool:
    """True while ``array`` is a placeholder a compiler traces (its values are unknown, so
    checks of values must wait for eager use)."""
    return any(library.is_traced(array) for library in LIBRARIES.values()
               if library.module in sys.modules)  # a library not imported has no tracers


def softmax(x):
    """Softmax over the last axis, shifted by the row maximum so large inputs stay finite;
    16-bit inputs are computed in float32 (their sums would round), the result in their
    dtype."""
    name = dtype_name(x)
    xp, x = namespace(x), cast(x, "float32") if name in HALF else x
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    e /= xp.sum(e, axis=-1, keepdims=True)
    return cast(e, name)


def softmax_vjp(s, g):
    """The Jacobian-vector product ``diag(s) g - s (s . g)`` of softmax output ``s``, without
    building the Jacobian (its row sums in float32 for 16-bit arrays)."""
    name = dtype_name(g)
    wide = (cast(s, "float32"), cast(g, "float32")) if name in HALF else (s, g)
    product = wide[1] - namespace(g).sum(wide[1] * wide[0], axis=-1, keepdims=True)
    product *= wide[0]
    return cast(product, name)


def row_major(matrix):
    """``matrix`` copied row by row (a transposed view is slower to multiply by per step)."""
    xp = namespace(matrix)
    return xp.reshape(xp.reshape(matrix, (-1,)), matrix.shape)
