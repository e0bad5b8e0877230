"""Loss functions ``loss(y_true, y_pred)`` and their derivatives ``loss_prime(y_true, y_pred)``.

Losses are means over the batch, so a batch gradient is the mean of the per-sample gradients
and a batch of one reproduces the tutorial exactly. :func:`with_prime` gives a loss with its
derivative in one call, as training needs them. ``y_pred`` is the network's output; for
:func:`softmax_crossentropy` it is the raw scores (logits) of the last layer.
"""

import math

from array_api_compat import device

from .activations import call_user_function
from .backend import namespace

EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1 - EPSILON] before a log


def _samples(y):
    """Number of samples in a batch of rows (all axes but the last)."""
    return math.prod(y.shape[:-1]) if y.ndim > 1 else 1


def mse(y_true, y_pred):
    """Mean squared error over every element (the tutorial's loss)."""
    return namespace(y_pred).mean((y_true - y_pred) ** 2)


def mse_prime(y_true, y_pred):
    return 2.0 * (y_pred - y_true) / math.prod(y_pred.shape)


def mse_with_prime(y_true, y_pred):
    """``(mse, mse_prime)`` sharing one difference."""
    diff = y_pred - y_true
    size = math.prod(diff.shape)
    return namespace(diff).sum(diff * diff) / size, diff * (2.0 / size)


def binary_crossentropy(y_true, y_pred):
    """Mean binary cross-entropy of probabilities ``y_pred`` (e.g. after a sigmoid)."""
    xp = namespace(y_pred)
    p = xp.clip(y_pred, EPSILON, 1.0 - EPSILON)
    return -xp.mean(y_true * xp.log(p) + (1.0 - y_true) * xp.log(1.0 - p))


def binary_crossentropy_prime(y_true, y_pred):
    p = namespace(y_pred).clip(y_pred, EPSILON, 1.0 - EPSILON)
    return (p - y_true) / (p * (1.0 - p) * math.prod(y_pred.shape))


def categorical_crossentropy(y_true, y_pred):
    """Cross-entropy of class probabilities ``y_pred`` (e.g. after a softmax), mean over samples."""
    xp = namespace(y_pred)
    p = xp.clip(y_pred, EPSILON, 1.0)
    return -xp.sum(y_true * xp.log(p)) / _samples(y_pred)


def categorical_crossentropy_prime(y_true, y_pred):
    p = namespace(y_pred).clip(y_pred, EPSILON, 1.0)
    return -y_true / (p * _samples(y_pred))


def _softmax_parts(logits):
    """``(xp, logits - row max, exp of that, row sums of the exp)``: shared by loss and prime."""
    xp = namespace(logits)
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)
    exp = xp.exp(shifted)
    return xp, shifted, exp, xp.sum(exp, axis=-1, keepdims=True)


def _softmax_ce_loss(xp, y_true, shifted, total):
    return -xp.sum(y_true * (shifted - xp.log(total))) / _samples(shifted)


def _softmax_ce_prime(xp, y_true, exp, total):
    weight = xp.sum(y_true, axis=-1, keepdims=True)
    return (exp / total * weight - y_true) / _samples(exp)


def softmax_crossentropy(y_true, logits):
    """Softmax followed by cross-entropy, fused: computed from log-softmax, finite for any logits.

    Use it with a network whose last layer outputs raw scores (no softmax layer).
    """
    xp, shifted, _, total = _softmax_parts(logits)
    return _softmax_ce_loss(xp, y_true, shifted, total)


def softmax_crossentropy_prime(y_true, logits):
    xp, _, exp, total = _softmax_parts(logits)
    return _softmax_ce_prime(xp, y_true, exp, total)


def softmax_crossentropy_with_prime(y_true, logits):
    """``(softmax_crossentropy, softmax_crossentropy_prime)`` from one softmax."""
    xp, shifted, exp, total = _softmax_parts(logits)
    return (_softmax_ce_loss(xp, y_true, shifted, total),
            _softmax_ce_prime(xp, y_true, exp, total))


def one_hot_targets(y_true, logits):
    """Integer class targets (shape ``logits.shape[:-1]``) as one-hot rows of ``logits``'
    dtype; a target outside ``[0, classes)`` gets a row of zeros."""
    xp = namespace(logits)
    classes = xp.arange(logits.shape[-1], dtype=y_true.dtype, device=device(logits))
    return xp.astype(xp.expand_dims(y_true, axis=-1) == classes, logits.dtype)


def sparse_softmax_crossentropy(y_true, logits):
    """:func:`softmax_crossentropy` for integer class targets ``y_true`` of any leading shape,
    e.g. logits ``(N, T, classes)`` and targets ``(N, T)``: the mean over every position of
    ``-log softmax(logits)[target]``. The targets are compared with the class indices (no
    gather: the same on every backend and under a compiler)."""
    return softmax_crossentropy(one_hot_targets(y_true, logits), logits)


def sparse_softmax_crossentropy_prime(y_true, logits):
    return softmax_crossentropy_prime(one_hot_targets(y_true, logits), logits)


def sparse_softmax_crossentropy_with_prime(y_true, logits):
    return softmax_crossentropy_with_prime(one_hot_targets(y_true, logits), logits)


LOSSES = {
    "mse": (mse, mse_prime),
    "binary_crossentropy": (binary_crossentropy, binary_crossentropy_prime),
    "categorical_crossentropy": (categorical_crossentropy, categorical_crossentropy_prime),
    "softmax_crossentropy": (softmax_crossentropy, softmax_crossentropy_prime),
    "sparse_softmax_crossentropy": (sparse_softmax_crossentropy,
                                    sparse_softmax_crossentropy_prime),
}

# Losses whose targets are integer class indices (kept as integers, one per row of scores)
INTEGER_TARGET_LOSSES = (sparse_softmax_crossentropy,)

# Losses that need probabilities, and the activations that make them (the first one suggested)
PROBABILITY_LOSSES = {categorical_crossentropy: ("softmax",),
                      binary_crossentropy: ("sigmoid", "softmax")}

# Built-in pairs computed together, sharing their common work (one call per training batch).
WITH_PRIME = {"mse": mse_with_prime, "softmax_crossentropy": softmax_crossentropy_with_prime,
              "sparse_softmax_crossentropy": sparse_softmax_crossentropy_with_prime}


def with_prime(loss, loss_prime):
    """A function ``(y_true, y_pred) -> (loss, loss_prime)`` for the pair: fused if built in."""
    for name, fused in WITH_PRIME.items():
        if LOSSES[name][0] is loss and LOSSES[name][1] is loss_prime:
            return fused
    return lambda y_true, y_pred: (call_user_function(loss, y_true, y_pred),
                                   call_user_function(loss_prime, y_true, y_pred))
