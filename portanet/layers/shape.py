"""Layers that only change the per-sample shape: Flatten and Reshape."""

import math

from .._checks import is_integer
from ..backend import namespace
from ..errors import InputError, ShapeError
from .base import EMPTY, Layer


class Flatten(Layer):
    """Flattens each sample: ``(N, d1, d2, ...)`` becomes ``(N, d1 * d2 * ...)``."""

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def apply(self, state, x, run):
        return namespace(x).reshape(x, (x.shape[0], math.prod(x.shape[1:]))), _unshaper(x)


def _unshaper(x):
    """The backprop of a reshape of ``x``: the output gradient in ``x``'s shape."""
    shape = tuple(x.shape)

    def backprop(grad_output, need_input=True):
        return namespace(grad_output).reshape(grad_output, shape), EMPTY
    return backprop


class Reshape(Layer):
    """Gives each sample the shape ``target_shape`` (the batch axis is kept).

    One entry may be -1: it is inferred from the sample's size.
    """

    def __init__(self, target_shape):
        super().__init__()
        target = tuple(target_shape) if isinstance(target_shape, (list, tuple)) else None
        if (not target or list(target).count(-1) > 1
                or any(not is_integer(d) or (d <= 0 and d != -1)
                       for d in target)):
            raise InputError("Reshape target_shape must be a non-empty tuple of positive ints "
                             f"with at most one -1, got {target_shape!r}")
        self.target_shape = target

    def output_shape(self, input_shape):
        size = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ShapeError(f"{self!r} cannot reshape per-sample shape "
                                 f"{tuple(input_shape)} ({size} values): {size} is not a "
                                 f"multiple of {known}")
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if size != known:
            raise ShapeError(f"{self!r} cannot reshape per-sample shape {tuple(input_shape)} "
                             f"({size} values) to {self.target_shape} ({known} values)")
        return self.target_shape

    def apply(self, state, x, run):
        shape = self.output_shape(tuple(x.shape[1:]))
        return namespace(x).reshape(x, (x.shape[0], *shape)), _unshaper(x)

    def config(self):
        return {"target_shape": list(self.target_shape)}
