"""Element-wise kernels: ReLU's backward pass (see :mod:`portanet.backend.kernels`)."""

from __future__ import annotations

from ..ops import namespace
from .registry import kernel, portable


@portable("relu_backward")
def portable_relu_backward(y, grad):
    """``grad`` where ``y > 0``, else 0: a product with the mask (on NumPy several times faster
    than ``where``)."""
    return grad * namespace(grad).astype(y > 0, grad.dtype)


def relu_backward(y, grad):
    """The gradient of ReLU's input from its output ``y`` and the gradient ``grad`` of the
    output: ``grad`` where ``y > 0`` (where the input was), else 0."""
    return kernel("relu_backward", grad)(y, grad)
