"""Optimizers: parameter updates (``new = old - step``), applied after each backward pass.

An optimizer updates whole flat buffers (:class:`portanet.parameters.ParameterLayout`: one per
dtype, every parameter a piece of it), so an eager step costs a handful of array passes for the
whole network (compiled steps give it one array per parameter; the compiler fuses those).
:meth:`Optimizer.apply` takes parameters, gradients, state and the step's scalars (learning
rate, bias corrections) and returns the new parameters and state. It *consumes* the
parameters, gradients and state it is given: the updates are written with in-place operators, so
on backends whose arrays are mutable (NumPy, torch, CuPy, array-api-strict) they overwrite those
buffers (as a plain training loop does, and as ``jax.jit`` does with donated buffers), while on
JAX the same operators make new arrays. The same code runs eagerly and inside a compiled step.

An optimizer's state (velocities, moments, the step count) belongs to the parameters it was made
for: using one optimizer object for a second network raises :class:`InputError` (make one per
network, or call :meth:`Optimizer.reset`).

Every optimizer takes ``schedule``: a callable ``schedule(iteration) -> learning rate`` (the
iteration counts steps from 0), such as :func:`step_decay`, :func:`exponential_decay` or
:func:`cosine_decay`; and ``clip_norm``: when set, the gradients are scaled down, all together,
so that their global norm (over every parameter) is at most ``clip_norm``.
"""

import functools

from ..errors import InputError
from .algorithms import SGD, Adam, AdamW, RMSprop
from .base import Optimizer
from .schedules import cosine_decay, exponential_decay, step_decay

CLASSES = {kind.__name__: kind for kind in (SGD, RMSprop, Adam, AdamW)}  # saved by name
OPTIMIZERS = {
    "sgd": SGD,
    "momentum": functools.partial(SGD, momentum=0.9),
    "nesterov": functools.partial(SGD, momentum=0.9, nesterov=True),
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
}


def get(optimizer, learning_rate=None):
    """An optimizer object from an object, a name ("sgd", "adam", ...) or None (SGD).

    A name gets ``learning_rate``, or where it is None the optimizer's own default, as in Keras:
    0.01 for "sgd" (the tutorial's), "momentum" and "nesterov", 1e-3 for "rmsprop", "adam" and
    "adamw". An object keeps its own (InputError where ``learning_rate`` is given too).
    """
    rate = {} if learning_rate is None else {"learning_rate": learning_rate}
    if optimizer is None:
        return SGD(**rate)
    if isinstance(optimizer, str):
        key = optimizer.lower()
        if key not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {optimizer!r}: choose one of "
                             f"{', '.join(OPTIMIZERS)}")
        return OPTIMIZERS[key](**rate)
    if not isinstance(optimizer, Optimizer):
        raise InputError(f"optimizer must be a name or a portanet Optimizer, got {optimizer!r}")
    if learning_rate is not None:
        raise InputError(f"learning_rate={learning_rate!r} was given with the optimizer object "
                         f"{optimizer!r}, which has its own rate: give the rate to the object "
                         "(e.g. Adam(learning_rate=...)), or name the optimizer ('adam')")
    return optimizer


__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "step_decay", "exponential_decay",
           "cosine_decay", "get", "CLASSES", "OPTIMIZERS"]  # in the reference's order
