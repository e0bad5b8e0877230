"""Weight initialisers: each draws a host array of ``shape`` from portanet's seeded generator.

Drawing on the host, then copying to the backend, gives the same initial network on every
backend for one seed (:func:`portanet.set_seed`).
"""

import math

from .backend import rng
from .errors import InputError


def uniform(shape, fan_in, fan_out):
    """The tutorial's initialiser: uniform in [-0.5, 0.5), whatever the layer size."""
    return rng().uniform(-0.5, 0.5, size=shape)


def glorot_uniform(shape, fan_in, fan_out):
    """Glorot/Xavier uniform: keeps the variance of tanh/sigmoid activations steady."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng().uniform(-limit, limit, size=shape)


def glorot_normal(shape, fan_in, fan_out):
    return rng().normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def he_uniform(shape, fan_in, fan_out):
    """He/Kaiming uniform: suited to ReLU layers, which zero half their inputs."""
    limit = math.sqrt(6.0 / fan_in)
    return rng().uniform(-limit, limit, size=shape)


def he_normal(shape, fan_in, fan_out):
    return rng().normal(0.0, math.sqrt(2.0 / fan_in), size=shape)


INITIALIZERS = {f.__name__: f for f in
                (uniform, glorot_uniform, glorot_normal, he_uniform, he_normal)}


def get(name):
    """The initialiser called ``name`` (a callable is returned unchanged)."""
    if callable(name):
        return name
    if name not in INITIALIZERS:
        raise InputError(f"unknown initialiser {name!r}: choose one of {', '.join(INITIALIZERS)}")
    return INITIALIZERS[name]
