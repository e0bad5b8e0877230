"""Weight initialisers: each draws a host array of ``shape`` and ``dtype`` from portanet's seeded
generator; :func:`initial_weights` checks that the layer fits in memory and copies the draws to
the backend.

Drawing on the host, then copying to the backend, gives the same initial network on every
backend for one seed (:func:`portanet.set_seed`). Draws are made in the layer's own dtype (a
float32 layer never holds a float64 copy of its weights).
"""

import math
import os

from .backend import get_backend, rng
from .errors import InputError


def _uniform(limit, shape, dtype):
    """U(-limit, limit): the same values as ``Generator.uniform`` for float64."""
    draws = rng().random(shape, dtype=dtype)
    draws *= 2 * limit
    draws -= limit
    return draws


def _normal(std, shape, dtype):
    draws = rng().standard_normal(shape, dtype=dtype)
    draws *= std
    return draws


def uniform(shape, fan_in, fan_out, dtype="float64"):
    """The tutorial's initialiser: uniform in [-0.5, 0.5), whatever the layer size."""
    return _uniform(0.5, shape, dtype)


def glorot_uniform(shape, fan_in, fan_out, dtype="float64"):
    """Glorot/Xavier uniform: keeps the variance of tanh/sigmoid activations steady."""
    return _uniform(math.sqrt(6.0 / (fan_in + fan_out)), shape, dtype)


def glorot_normal(shape, fan_in, fan_out, dtype="float64"):
    return _normal(math.sqrt(2.0 / (fan_in + fan_out)), shape, dtype)


def he_uniform(shape, fan_in, fan_out, dtype="float64"):
    """He/Kaiming uniform: suited to ReLU layers, which zero half their inputs."""
    return _uniform(math.sqrt(6.0 / fan_in), shape, dtype)


def he_normal(shape, fan_in, fan_out, dtype="float64"):
    return _normal(math.sqrt(2.0 / fan_in), shape, dtype)


INITIALIZERS = {f.__name__: f for f in
                (uniform, glorot_uniform, glorot_normal, he_uniform, he_normal)}


def get(name):
    """The initialiser called ``name`` (a callable is returned unchanged)."""
    if callable(name):
        return name
    if name not in INITIALIZERS:
        raise InputError(f"unknown initialiser {name!r}: choose one of {', '.join(INITIALIZERS)}")
    return INITIALIZERS[name]


def host_memory():
    """Bytes of physical memory of this machine, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(count):
    """``count`` bytes for people: "512 B", "3.64 TiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.2f} {unit}"
        count /= 1024


def initial_weights(init, shape, fan_in, fan_out, dtype, owner):
    """Initial weights of layer ``owner`` drawn by ``init`` (a name or a callable) in ``dtype``
    on the backend. InputError naming the layer, the shape and the bytes needed, before any
    allocation when they exceed the machine's memory, or when the allocation fails."""
    get_backend().dtype(dtype)  # an unsupported dtype fails here
    need = math.prod(shape) * (4 if dtype == "float32" else 8)

    def too_big(reason):
        return InputError(f"{owner}: its weights of shape {tuple(shape)} in {dtype} would need "
                          f"{format_bytes(need)}, {reason}; use a smaller layer")

    memory = host_memory()
    if memory is not None and need > memory:
        raise too_big(f"more than this machine's {format_bytes(memory)} of memory")
    draw = get(init)
    try:
        if draw in INITIALIZERS.values():
            return get_backend().asarray(draw(shape, fan_in, fan_out, dtype), dtype)
        return get_backend().asarray(draw(shape, fan_in, fan_out), dtype)
    except MemoryError:
        raise too_big("and there is not enough free memory for them") from None
