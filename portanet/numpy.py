"""NumPy-like functions that run on the backend of their arguments: the user's own code, portable.

Code written for NumPy, as the tutorial's ``activations.py`` and ``losses.py`` are, runs on every
backend after one changed import::

    import portanet.numpy as np      # instead of: import numpy as np

    def tanh_prime(x):
        return 1 - np.tanh(x) ** 2

    def mse(y_true, y_pred):
        return np.mean(np.power(y_true - y_pred, 2))

    def mse_prime(y_true, y_pred):
        return 2 * (y_pred - y_true) / np.size(y_true)   # not y_true.size: see below

Each function takes the array-API namespace of its array arguments (NumPy, CuPy, torch, JAX or
array-api-strict arrays; Python numbers alone go to the selected backend) and calls the same
operation there, so the result stays on the arguments' library and device. Two habits need a
function call instead: ``x.size`` (a method on torch tensors) is ``np.size(x)``, and ``x.T`` on
arrays of more than two axes is ``np.transpose(x)``.
"""

from __future__ import annotations

import math

from array_api_compat import device as _device

from .backend import get_backend, is_array
from .backend import namespace as _namespace

_UNARY = ("abs", "ceil", "cos", "cosh", "exp", "expm1", "floor", "isfinite", "isnan", "log",
          "log1p", "log2", "log10", "negative", "round", "sign", "sin", "sinh", "sqrt", "square",
          "tan", "tanh")
_BINARY = {"add": "add", "subtract": "subtract", "multiply": "multiply", "divide": "divide",
           "power": "pow", "maximum": "maximum", "minimum": "minimum", "equal": "equal",
           "greater": "greater", "less": "less", "arctan2": "atan2"}
_REDUCTIONS = ("sum", "mean", "max", "min", "prod", "std", "var", "all", "any")


def _xp(*values):
    """The namespace of the arrays among ``values`` (the selected backend's when none is)."""
    arrays = [value for value in values if is_array(value)]
    return _namespace(*arrays) if arrays else get_backend().xp


def _array(xp, value, like=None):
    """``value`` as an array of namespace ``xp`` (numbers take the dtype and device of
    ``like`` where given, else the selected backend's float32)."""
    if is_array(value):
        return value
    if like is not None:
        return xp.asarray(value, dtype=like.dtype, device=_device(like))
    backend = get_backend()
    return backend.xp.asarray(value, dtype=backend.dtype("float32"), device=backend.device)


def _unary(name):
    def function(x):
        xp = _xp(x)
        return getattr(xp, name)(_array(xp, x))

    function.__name__ = name
    function.__doc__ = f"Elementwise {name} of ``x``, on ``x``'s backend."
    return function


def _binary(name, standard_name):
    def function(x1, x2):
        xp = _xp(x1, x2)
        like = x1 if is_array(x1) else x2 if is_array(x2) else None
        return getattr(xp, standard_name)(_array(xp, x1, like), _array(xp, x2, like))

    function.__name__ = name
    function.__doc__ = f"Elementwise {name} of ``x1`` and ``x2``, on their backend."
    return function


def _reduction(name):
    def function(x, axis=None, keepdims=False):
        xp = _xp(x)
        axis = tuple(axis) if isinstance(axis, list) else axis
        return getattr(xp, name)(_array(xp, x), axis=axis, keepdims=keepdims)

    function.__name__ = name
    function.__doc__ = f"{name} of ``x`` over ``axis`` (all axes by default), on its backend."
    return function


for _name in _UNARY:
    globals()[_name] = _unary(_name)
for _name, _standard in _BINARY.items():
    globals()[_name] = _binary(_name, _standard)
for _name in _REDUCTIONS:
    globals()[_name] = _reduction(_name)


def size(x) -> int:
    """Number of elements of ``x`` (``x.size`` in NumPy; a method on torch tensors)."""
    return math.prod(x.shape)


def shape(x) -> tuple:
    return tuple(x.shape)


def dot(a, b):
    """Matrix product for 2-D operands (as ``np.dot``), inner product for two vectors."""
    xp = _xp(a, b)
    if a.ndim == 1 and b.ndim == 1:
        return xp.vecdot(a, b)
    return xp.matmul(a, b)


def matmul(a, b):
    return _xp(a, b).matmul(a, b)


def where(condition, x, y):
    """``x`` where ``condition`` holds, else ``y`` (numbers allowed for ``x`` and ``y``)."""
    xp = _xp(condition, x, y)
    like = x if is_array(x) else y if is_array(y) else None
    return xp.where(condition, _array(xp, x, like), _array(xp, y, like))


def clip(x, a_min=None, a_max=None):
    return _xp(x).clip(x, a_min, a_max)


def argmax(x, axis=None):
    return _xp(x).argmax(x, axis=axis)


def argmin(x, axis=None):
    return _xp(x).argmin(x, axis=axis)


def reshape(x, newshape):
    return _xp(x).reshape(x, tuple(newshape) if isinstance(newshape, list) else newshape)


def transpose(x, axes=None):
    """Axes reversed (or permuted as ``axes``), as ``np.transpose``."""
    return _xp(x).permute_dims(x, tuple(axes) if axes is not None else
                               tuple(range(x.ndim - 1, -1, -1)))


def zeros_like(x):
    return _xp(x).zeros_like(x)


def ones_like(x):
    return _xp(x).ones_like(x)


def full_like(x, fill_value):
    return _xp(x).full_like(x, fill_value)


def asarray(data, like=None):
    """``data`` on the backend of ``like`` (an array), else on the selected backend (float32
    for numbers)."""
    xp = _xp(like) if like is not None else get_backend().xp
    return _array(xp, data, like)


e, pi, inf, nan = math.e, math.pi, math.inf, math.nan
