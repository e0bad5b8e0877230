"""Checks of arguments that every entry point shares: each rule written once, each failure an
InputError that names the argument, the rule and the value given."""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

from .errors import InputError


def is_integer(value) -> bool:
    """True for ints (and NumPy integers), never for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer(name: str, value, low: int = 1) -> int:
    """``value`` as an int; InputError unless it is an integer >= ``low`` (not a bool)."""
    if not is_integer(value) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _read(text: str, kind):
    """``text`` as ``kind`` (int or float), or ``text`` itself where it does not read as one
    (the check then refuses it, naming it)."""
    try:
        return kind(text)
    except ValueError:
        return text


def integer_text(name: str, text: str, low: int = 1) -> int:
    """``text`` (an environment variable's or a command-line option's) as an integer >=
    ``low``."""
    return integer(name, _read(text, int), low)


def number(name: str, value, valid=None, rule: str = "a finite number") -> float:
    """``value`` as a float; InputError unless it is a finite real number (not a bool) with
    ``valid(value)``; ``rule`` says what is valid."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or (valid is not None and not valid(float(value)))):
        raise InputError(f"{name} must be {rule}, got {value!r}")
    return float(value)


def number_text(name: str, text: str, check=number) -> float:
    """``text`` (a command-line option's) as a float passing ``check`` (:func:`positive`,
    :func:`fraction`, ...)."""
    return check(name, _read(text, float))


def positive(name: str, value) -> float:
    """``value`` as a float > 0."""
    return number(name, value, lambda v: v > 0, "a positive number")


def non_negative(name: str, value) -> float:
    """``value`` as a float >= 0."""
    return number(name, value, lambda v: v >= 0, "a number >= 0")


def fraction(name: str, value) -> float:
    """``value`` as a float in [0, 1)."""
    return number(name, value, lambda v: 0 <= v < 1, "a number in [0, 1)")


def one_of(name: str, value, choices):
    """``value``, which must be one of ``choices``."""
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def boolean(name: str, value) -> bool:
    """``value``, which must be True or False (NumPy's bools too)."""
    if type(value).__name__ not in ("bool", "bool_"):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def function(name: str, value):
    """``value``, which must be callable."""
    if not callable(value):
        raise InputError(f"{name} must be a function, got {value!r}")
    return value


def file_path(name: str, value) -> Path:
    """``value`` (a str or path-like) as a Path."""
    if not isinstance(value, (str, os.PathLike)):
        raise InputError(f"{name} must be a file name or path, got {type(value).__name__} "
                         f"{value!r}")
    return Path(value)


def sample_shape(name: str, value) -> tuple:
    """``value`` as a tuple of positive ints (one sample's shape)."""
    items = tuple(value) if isinstance(value, (list, tuple)) else None
    if not items or not all(is_integer(item) and item > 0 for item in items):
        raise InputError(f"{name} must be a tuple of positive ints (one sample's shape, e.g. "
                         f"(784,) or (1, 28, 28)), got {value!r}")
    return tuple(int(item) for item in items)


def size_pair(name: str, value) -> tuple:
    """``value`` as a (height, width) tuple of two positive ints."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(is_integer(item) and item > 0 for item in value)):
        raise InputError(f"{name} must be (height, width), two positive ints, got {value!r}")
    return tuple(int(item) for item in value)


def float_dtype(name: str, value) -> str:
    """``value``, the name of a dtype portanet computes in: "float32" or "float64"."""
    if not isinstance(value, str) or value not in ("float32", "float64"):
        raise InputError(f"{name} must be 'float32' or 'float64', got {value!r}: weights are "
                         "kept in one of them; for float16 or bfloat16 compute with float32 "
                         "weights, give the network a precision policy, "
                         "Network(..., precision='mixed_float16') or 'mixed_bfloat16'")
    return value
