"""Where a network's parameters live during training: flat buffers, or one array each.

Eager steps keep one flat buffer per dtype, each parameter a piece (a view) of it: optimizers
update whole buffers in place (a handful of array passes per step for the whole network, not a
handful per parameter; few kernel launches on a GPU) and MPI sums one gradient buffer. Compiled
steps keep one array per parameter: the compiler fuses the update of all of them into a few
loops anyway, while cutting each weight matrix out of a flat buffer costs XLA a copy per weight
and step (the modern MLP's compiled JAX step ran about 3x slower with flat buffers, its
buffers donated, on this project's CPU machine).
"""

from __future__ import annotations

import math

from ..backend import dtype_name, namespace
from ..errors import ShapeError


class ParameterLayout:
    """The places of parameters ``slots`` (``(layer, attribute name)`` pairs) in the arrays a
    step takes: with ``flat`` (the default) one buffer per dtype (in :attr:`dtypes` order), each
    parameter a contiguous piece of its group's buffer; without, one array (group) per parameter.
    """

    def __init__(self, slots, flat=True):
        self.slots = list(slots)
        self.flat = flat
        arrays = [getattr(layer, name) for layer, name in self.slots]
        names = [dtype_name(array) for array in arrays]
        self.dtypes = sorted(set(names)) if flat else names
        self.places = []  # per slot: (group, start, stop, shape)
        sizes = [0] * len(self.dtypes)
        for slot, (name, array) in enumerate(zip(names, arrays)):
            group = self.dtypes.index(name) if flat else slot
            start = sizes[group]
            sizes[group] += math.prod(array.shape)
            self.places.append((group, start, sizes[group], tuple(array.shape)))
        self.sizes = sizes

    def flatten(self, arrays):
        """The groups' arrays holding ``arrays`` (one per slot, in slot order): one flat buffer
        per dtype, or (not :attr:`flat`) copies of ``arrays``."""
        arrays = list(arrays)
        if not arrays:
            return []
        xp = namespace(arrays[0])
        if not self.flat:  # copies: a compiled step may reuse (donated) buffers it is given
            return [xp.asarray(array, copy=True) for array in arrays]
        if len(self.dtypes) == 1:
            return [xp.concat(arrays, axis=None)]  # axis=None: flattened
        groups = [[] for _ in self.dtypes]
        for (group, *_), array in zip(self.places, arrays):
            groups[group].append(array)
        return [xp.concat(parts, axis=None) for parts in groups]  # axis=None: flattened

    def flatten_gradients(self, grads):
        """:meth:`flatten` of the gradients the layers left for the slots (one each), each
        checked by :meth:`check_gradient`."""
        for index, grad in enumerate(grads):
            self.check_gradient(index, grad)
        return self.flatten(grads)

    def check_gradient(self, index, grad):
        """ShapeError unless ``grad``, the gradient a layer left for slot ``index``, has its
        parameter's shape."""
        shape = self.places[index][3]
        if tuple(grad.shape) != shape:
            layer, name = self.slots[index]
            raise ShapeError(f"{layer!r} left a gradient of shape {tuple(grad.shape)} for its "
                             f"parameter {name!r} of shape {shape}: its backward must give each "
                             "parameter's gradient the parameter's shape")

    def split(self, flats):
        """Each slot's array from the flat buffers (views where the backend has views)."""
        if not self.places or not self.flat:
            return list(flats)
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
        """True when ``other`` holds the same layers' parameters with the same shapes and dtypes
        (flat or not)."""
        return (self.shapes() == other.shapes()
                and [name for _, name in self.slots] == [name for _, name in other.slots]
                and all(mine is theirs for (mine, _), (theirs, _) in zip(self.slots,
                                                                          other.slots)))

    def shapes(self):
        """Each slot's ``(shape, dtype name)``."""
        return [(shape, self.dtypes[group]) for group, _, _, shape in self.places]

    def relaid(self, groups, other: ParameterLayout):
        """``groups`` (arrays laid out by ``other``, holding the same parameters) laid out by
        this layout."""
        return groups if other.flat == self.flat else self.flatten(other.split(groups))

    def __len__(self):
        return len(self.slots)
