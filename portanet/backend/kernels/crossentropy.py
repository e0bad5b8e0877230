"""Softmax cross-entropy from raw scores (logits), for one-hot or integer class targets (see
:mod:`portanet.backend.kernels`)."""

from __future__ import annotations

import math

from array_api_compat import device

from ..ops import namespace
from .registry import kernel, portable


def samples(y):
    """Number of samples in a batch of rows (all axes but the last)."""
    return math.prod(y.shape[:-1]) if y.ndim > 1 else 1


def softmax_parts(logits):
    """``(xp, logits - row max, exp of that, row sums of the exp)``: shared by loss and
    gradient."""
    xp = namespace(logits)
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)
    exp = xp.exp(shifted)
    return xp, shifted, exp, xp.sum(exp, axis=-1, keepdims=True)


def softmax_crossentropy_value(xp, y_true, shifted, total):
    """The mean over the rows of ``-sum(y_true * log softmax)``, from :func:`softmax_parts`."""
    return -xp.sum(y_true * (shifted - xp.log(total))) / samples(shifted)


def softmax_crossentropy_gradient(xp, y_true, exp, total):
    """The gradient of :func:`softmax_crossentropy_value` with respect to the logits."""
    weight = xp.sum(y_true, axis=-1, keepdims=True)
    return (exp / total * weight - y_true) / samples(exp)


def one_hot_targets(targets, logits):
    """Integer class targets (shape ``logits.shape[:-1]``) as one-hot rows of ``logits``'
    dtype; a target outside ``[0, classes)`` gets a row of zeros."""
    xp = namespace(logits)
    classes = xp.arange(logits.shape[-1], dtype=targets.dtype, device=device(logits))
    return xp.astype(xp.expand_dims(targets, axis=-1) == classes, logits.dtype)


@portable("sparse_softmax_crossentropy")
def portable_sparse_softmax_crossentropy(targets, logits):
    """The targets compared with the class indices (no gather: the same on every backend and
    under a compiler), then the one-hot loss; the gradient computed when asked for."""
    y_true = one_hot_targets(targets, logits)
    xp, shifted, exp, total = softmax_parts(logits)

    def gradient():
        return softmax_crossentropy_gradient(xp, y_true, exp, total)
    return softmax_crossentropy_value(xp, y_true, shifted, total), gradient


def sparse_softmax_crossentropy(targets, logits):
    """The mean over every row of ``logits`` of ``-log softmax(row)[target]``, integer
    ``targets`` of shape ``logits.shape[:-1]`` (one outside ``[0, classes)`` adds nothing, and
    still counts in the mean), and the gradient: ``(loss, gradient)``, ``gradient() ->`` the
    loss's gradient with respect to ``logits``."""
    return kernel("sparse_softmax_crossentropy", logits)(targets, logits)
