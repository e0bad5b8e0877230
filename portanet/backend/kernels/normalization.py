"""Layer normalisation, and the backward pass of a standardisation that batch normalisation
shares (see :mod:`portanet.backend.kernels`)."""

from __future__ import annotations

from ..ops import namespace, sum_rows
from .registry import kernel, portable


def standardized_backward(grad_normalized, normalized, inv_std, axes):
    """Gradient with respect to ``x`` of ``normalized = (x - mean) * inv_std``, the mean and
    variance taken over ``axes`` of ``x``, from the gradient of ``normalized``: the statistics
    depend on every value they are taken over, so their share comes off the plain term."""
    xp = namespace(grad_normalized)
    grad = grad_normalized - xp.mean(grad_normalized, axis=axes, keepdims=True)
    grad -= normalized * xp.mean(grad_normalized * normalized, axis=axes, keepdims=True)
    grad *= inv_std  # in place on the new array: fewer temporaries (rebinding on JAX)
    return grad


@portable("layer_norm")
def portable_layer_norm(x, gamma, beta, epsilon):
    """The statistics by ``mean``, the centred values scaled in place (a rebinding on JAX)."""
    xp = namespace(x)
    mean = xp.mean(x, axis=-1, keepdims=True)
    normalized = x - mean
    inv_std = 1.0 / xp.sqrt(xp.mean(normalized * normalized, axis=-1, keepdims=True) + epsilon)
    normalized *= inv_std
    out = normalized * gamma
    out += beta

    def backward(grad, need_input=True):
        rows = (-1, x.shape[-1])
        grad_gamma = sum_rows(xp.reshape(grad * normalized, rows))
        grad_beta = sum_rows(xp.reshape(grad, rows))
        if not need_input:
            return None, grad_gamma, grad_beta
        return (standardized_backward(grad * gamma, normalized, inv_std, (-1,)), grad_gamma,
                grad_beta)
    return out, backward


def layer_norm(x, gamma, beta, epsilon):
    """``gamma * (x - mean) / sqrt(var + epsilon) + beta``, the mean and (biased) variance of
    the last axis, and its backward pass: ``(out, backward)``, ``backward(grad,
    need_input=True) -> (grad_x or None, grad_gamma, grad_beta)``."""
    return kernel("layer_norm", x)(x, gamma, beta, epsilon)
