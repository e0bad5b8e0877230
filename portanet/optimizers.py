"""Optimizers: pure parameter updates (``new = old - step``), applied after each backward pass.

No array is changed in place, so the same code runs on JAX. ``step(slots)`` updates every
``(layer, name)`` slot from ``layer.grads[name]``; per-slot state (velocities, moments) lives in
the optimizer, keyed by the slot's position.
"""

from .errors import InputError


class Optimizer:
    """Base class: holds the learning rate and the step counter."""

    def __init__(self, learning_rate=0.01):
        if not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
            raise InputError(f"learning_rate must be a positive number, got {learning_rate!r}")
        self.learning_rate = float(learning_rate)
        self.iterations = 0
        self.state = {}

    def step(self, slots):
        """Apply one update to every ``(layer, name)`` in ``slots``."""
        for key, (layer, name) in enumerate(slots):
            setattr(layer, name, self.update(key, getattr(layer, name), layer.grads[name]))
        self.iterations += 1

    def update(self, key, param, grad):
        """The new value of one parameter."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(learning_rate={self.learning_rate:g})"


class SGD(Optimizer):
    """Plain stochastic gradient descent: ``param - learning_rate * grad`` (the tutorial's rule)."""

    def update(self, key, param, grad):
        return param - self.learning_rate * grad


OPTIMIZERS = {"sgd": SGD}


def get(optimizer, learning_rate=0.01):
    """An optimizer object from an object, a name ("sgd", ...) or None (SGD)."""
    if optimizer is None:
        return SGD(learning_rate)
    if isinstance(optimizer, str):
        key = optimizer.lower()
        if key not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {optimizer!r}: choose one of "
                             f"{', '.join(OPTIMIZERS)}")
        return OPTIMIZERS[key](learning_rate)
    if not isinstance(optimizer, Optimizer):
        raise InputError(f"optimizer must be a name or a portanet Optimizer, got {optimizer!r}")
    return optimizer
