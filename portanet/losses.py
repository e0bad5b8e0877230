"""Loss functions ``loss(y_true, y_pred)`` and their derivatives ``loss_prime(y_true, y_pred)``.

Losses are means over the batch, so a batch gradient is the mean of the per-sample gradients
and a batch of one reproduces the tutorial exactly. :func:`with_prime` gives a loss with its
derivative in one call, as training needs them. ``y_pred`` is the network's output; for
:func:`softmax_crossentropy` it is the raw scores (logits) of the last layer.
"""

import math

from .activations import call_user_function
from .backend import kernels, namespace
from .backend.kernels import (
    samples,
    softmax_crossentropy_gradient,
    softmax_crossentropy_value,
    softmax_parts,
)

EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1 - EPSILON] before a log


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
    return -xp.sum(y_true * xp.log(p)) / samples(y_pred)


def categorical_crossentropy_prime(y_true, y_pred):
    p = namespace(y_pred).clip(y_pred, EPSILON, 1.0)
    return -y_true / (p * samples(y_pred))


def softmax_crossentropy(y_true, logits):
    """Softmax followed by cross-entropy, fused: computed from log-softmax, finite for any logits.

    Use it with a network whose last layer outputs raw scores (no softmax layer).
    """
    xp, shifted, _, total = softmax_parts(logits)
    return softmax_crossentropy_value(xp, y_true, shifted, total)


def softmax_crossentropy_prime(y_true, logits):
    xp, _, exp, total = softmax_parts(logits)
    return softmax_crossentropy_gradient(xp, y_true, exp, total)


def softmax_crossentropy_with_prime(y_true, logits):
    """``(softmax_crossentropy, softmax_crossentropy_prime)`` from one softmax."""
    xp, shifted, exp, total = softmax_parts(logits)
    return (softmax_crossentropy_value(xp, y_true, shifted, total),
            softmax_crossentropy_gradient(xp, y_true, exp, total))


def sparse_softmax_crossentropy(y_true, logits):
    """:func:`softmax_crossentropy` for integer class targets ``y_true`` of any leading shape,
    e.g. logits ``(N, T, classes)`` and targets ``(N, T)``: the mean over every position of
    ``-log softmax(logits)[target]``, by the kernel
    :func:`portanet.backend.kernels.sparse_softmax_crossentropy` (native on NumPy)."""
    return kernels.sparse_softmax_crossentropy(y_true, logits)[0]


def sparse_softmax_crossentropy_prime(y_true, logits):
    return kernels.sparse_softmax_crossentropy(y_true, logits)[1]()


def sparse_softmax_crossentropy_with_prime(y_true, logits):
    loss, gradient = kernels.sparse_softmax_crossentropy(y_true, logits)
    return loss, gradient()


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
