"""Element-wise kernels: ReLU's backward pass and GELU (see :mod:`portanet.backend.kernels`)."""

from __future__ import annotations

from ..constants import GELU_C, GELU_K
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


@portable("gelu")
def portable_gelu(x):
    """``tanh(C (x + K x^3))`` by in-place steps on temporaries (fewer arrays made; a rebinding
    on JAX); the backward pass computes the slope ``h + 0.5 x (1 - t^2) C (1 + 3 K x^2)``
    (``t`` the tanh, ``h = (1 + t) / 2``) when it is called."""
    square = x * x
    inner = square * (GELU_C * GELU_K)
    inner += GELU_C
    inner *= x
    t = namespace(x).tanh(inner)
    half = 0.5 * (1.0 + t)

    def backward(grad):
        slope = t * t
        slope -= 1.0
        slope *= x
        cubic = square * (3.0 * GELU_K)
        cubic += 1.0
        slope *= cubic
        slope *= -0.5 * GELU_C
        slope += half
        return grad * slope
    return x * half, backward


def gelu(x):
    """GELU in its tanh approximation, ``x (1 + tanh(C (x + K x^3))) / 2``, and its backward
    pass: ``(y, backward)``, ``backward(grad) -> grad_x``."""
    return kernel("gelu", x)(x)
