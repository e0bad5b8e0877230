"""Where a network's parameters live: one flat buffer per dtype, each parameter a piece of it.

Optimizers update whole buffers (a handful of array passes per step for the whole network, not a
handful per parameter), MPI sums one gradient buffer, and a compiled step takes a few arrays in
and out instead of one per parameter.
"""

from __future__ import annotations

import math
import weakref

from .backend import dtype_name, namespace


class ParameterLayout:
    """The places of parameters ``slots`` (``(layer, attribute name)`` pairs) in flat buffers.

    Parameters are grouped by dtype (one buffer per dtype, in :attr:`dtypes` order); each one
    takes a contiguous piece of its group's buffer.
    """

    def __init__(self, slots):
        self.slots = list(slots)
        arrays = [getattr(layer, name) for layer, name in self.slots]
        names = [dtype_name(array) for array in arrays]
        self.dtypes = sorted(set(names))
        sizes = dict.fromkeys(self.dtypes, 0)
        self.places = []  # per slot: (group, start, stop, shape)
        for name, array in zip(names, arrays):
            start = sizes[name]
            sizes[name] += math.prod(array.shape)
            self.places.append((self.dtypes.index(name), start, sizes[name], tuple(array.shape)))
        self.sizes = [sizes[name] for name in self.dtypes]
        self._layers = [weakref.ref(layer) for layer, _ in self.slots]

    def flatten(self, arrays):
        """One flat buffer per dtype group holding ``arrays`` (one per slot, in slot order)."""
        arrays = list(arrays)
        if not arrays:
            return []
        xp = namespace(arrays[0])
        if len(self.dtypes) == 1:
            return [xp.concat(arrays, axis=None)]  # axis=None: flattened
        groups = [[] for _ in self.dtypes]
        for (group, *_), array in zip(self.places, arrays):
            groups[group].append(array)
        return [xp.concat(parts, axis=None) for parts in groups]  # axis=None: flattened

    def split(self, flats):
        """Each slot's array from the flat buffers (views where the backend has views)."""
        if not self.places:
            return []
        xp = namespace(flats[0])
        return [xp.reshape(flats[group][start:stop], shape)
                for group, start, stop, shape in self.places]

    def gather(self):
        """The slots' current values, flattened."""
        return self.flatten([getattr(layer, name) for layer, name in self.slots])

    def assign(self, flats):
        """Set every slot's attribute to its piece of ``flats``."""
        for (layer, name), value in zip(self.slots, self.split(flats)):
            setattr(layer, name, value)

    def same_parameters(self, other: ParameterLayout) -> bool:
        """True when ``other`` lays out the same layers' parameters with the same shapes."""
        return (self.places == other.places and self.dtypes == other.dtypes
                and [name for _, name in self.slots] == [name for _, name in other.slots]
                and all(mine() is theirs for mine, (theirs, _) in zip(self._layers,
                                                                       other.slots)))

    def __len__(self):
        return len(self.slots)
