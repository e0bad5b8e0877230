"""Where the steps and compiled functions made for networks are kept.

A network's own ones live in its ``cache`` dict (cleared by ``Network.to_backend``). Compiled
functions of networks made of built-in layers are shared by every network alike: their types,
settings and shapes say all they compute, so one compilation serves them all.
"""

from __future__ import annotations

import copy
import threading

from ..backend import compilers, dtype_name
from ..layers.base import is_builtin, walk

SHARED: dict = {}  # compiled functions of networks alike, by (key, structure)
ARCHITECTURES: dict = {}  # what they are made from, by structure
MAKING = threading.RLock()  # threads that first predict at once make each function once


def structure(network):
    """A key naming what a compiled step of ``network`` computes, or None unless every layer is
    a built-in one (with built-in activations), whose type, settings, shapes and places (a
    layer used again names its first place) say it all, with the precision policy."""
    parts, places = [], {}
    for index, layer in enumerate(walk(network.layers)):
        if not is_builtin(layer):
            return None
        shapes = tuple((tuple(getattr(layer, name).shape), dtype_name(getattr(layer, name)))
                       for name in layer.params + layer.buffers)
        parts.append((type(layer), repr(layer), shapes, places.setdefault(id(layer), index)))
    return (network.policy, *parts)


def own(network, key, make):
    """``make()``, made once per ``key`` and per layers of ``network`` (their identity and
    settings), kept in the network's cache."""
    key = (key, tuple((id(layer), repr(layer)) for layer in network.layers))
    with MAKING:
        if key not in network.cache:
            network.cache[key] = make()
        return network.cache[key]


def cache_for(network, compiler):
    """``cached(key, make)``, which returns ``make(net)`` made once: shared by every network of
    the same built-in layers when ``compiler`` compiles, else in ``network``'s own cache.
    ``net`` is ``network`` itself for its own cache, and for the shared one an architecture
    that is none of the networks sharing it (copies of the first one's layers)."""
    found = None if compiler is compilers.EAGER else structure(network)
    if found is None:
        return lambda key, make: own(network, key, lambda: make(network))

    def cached(key, make):
        key = (key, found)
        with MAKING:
            if key not in SHARED:
                if found not in ARCHITECTURES:
                    architecture = copy.copy(network)
                    architecture.layers = copy.deepcopy(network.layers)
                    architecture.cache = {}
                    ARCHITECTURES[found] = architecture
                SHARED[key] = make(ARCHITECTURES[found])
            return SHARED[key]

    return cached


def clear_shared():
    """Forget every shared compiled function (tests count compilations afresh with it)."""
    SHARED.clear()
    ARCHITECTURES.clear()
