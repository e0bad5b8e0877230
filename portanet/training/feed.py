"""Where the loop's batches come from: rows already on the backend (:class:`Held`), or a data
set read batch by batch, ahead of the step, in a background thread (:class:`Streamed`).

Both give each epoch's batches as ``(start, stop, lo, hi, batch)``: the batch is samples
``[start, stop)`` of the epoch's order, this process's share of it ``[lo, hi)``, and ``batch``
what the step takes (see :class:`~portanet.training.step.Batches`; None where the share is
empty). Shuffled orders come from portanet's seeded generator, drawn on the loop's thread at
the start of each epoch, so arrays and streams of the same data train alike.
"""

from __future__ import annotations

import contextlib
import math

from ..backend import get_backend, rng
from ..data.loaders import Loader, Prefetch, describe, is_stream
from ..errors import InputError
from ..layers.base import not_pure
from . import inputs
from .step import Batches


class Held:
    """Rows ``x``, ``y`` on the backend, cut into batches of ``batch_size``."""

    def __init__(self, x, y, batch_size, shuffle):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.samples = x.shape[0]
        self.batch_count = math.ceil(self.samples / batch_size)
        self._batches = {}

    def sample_sizes(self):
        return math.prod(self.x.shape[1:]), math.prod(self.y.shape[1:])

    @contextlib.contextmanager
    def epoch(self, number, world, indexed):
        n = self.samples
        order = rng().permutation(n) if self.shuffle else None
        if order is not None:  # rank 0's order, however the ranks were seeded
            order = get_backend().asarray(world.broadcast(order, "the epoch's sample order"),
                                          dtype=None)
        batches = self._batches.setdefault(indexed, Batches(self.x, self.y, indexed))
        batches.start_epoch(order)

        def each():
            for start in range(0, n, self.batch_size):
                stop = min(start + self.batch_size, n)
                lo, hi = world.shard(start, stop)
                yield start, stop, lo, hi, batches(lo, hi)

        yield each()


class Streamed:
    """The batches of ``loader`` (a :class:`portanet.data.Loader`), checked and moved to the
    backend as ``network``'s inputs and targets in the loader's background thread."""

    def __init__(self, network, loader, targets=True):
        self.network, self.loader, self.targets = network, loader, targets
        self.shapes = {}  # the network's output shape per input shape, learnt once
        self.samples = loader.samples
        try:
            self.batch_count = len(loader)
        except TypeError:  # an iterable of batches that does not know its length
            self.batch_count = None

    def sample_sizes(self):
        """Values per input and per target sample, from the first sample (-1: unknown)."""
        if not self.loader.sized:
            return -1, -1
        x, y = self._prepared((0, 1, 0, 1, self.loader.read([0])))[-1]
        return math.prod(x.shape[1:]), math.prod(y.shape[1:])

    def _prepared(self, item):
        start, stop, lo, hi, batch = item
        if batch is None:
            return item
        label = f"{describe(self.loader)} (the batch from sample {start})"
        if not self.targets:
            x = batch[0] if isinstance(batch, tuple) else batch
            rows, _, _ = inputs.as_rows(self.network, x, label, inputs=True)
            inputs.check_features(self.network, rows, label)
            return start, stop, lo, hi, rows
        if not isinstance(batch, tuple) or len(batch) != 2:
            raise InputError(f"{label} is not an (x, y) pair: a data set to train or evaluate "
                             "on must give inputs and targets")
        return start, stop, lo, hi, inputs.pair(self.network, *batch, label, self.shapes)

    @contextlib.contextmanager
    def epoch(self, number, world, indexed=False):
        order = self.loader.order(number)
        if order is not None and world.size > 1:
            order = world.broadcast(order, "the epoch's sample order")
        parts = world.shard if world.size > 1 else None
        items = ((start, stop, *(parts or _whole)(start, stop), batch)
                 for start, stop, batch in self.loader.batches(order, parts))
        # checking a batch may run the layers once (to learn an output shape): in the
        # background only where no layer keeps per-call state on itself
        ahead = not_pure(self.network.layers) is None
        with Prefetch(items, self.loader.prefetch, describe(self.loader),
                      self._prepared if ahead else None) as batches:
            yield batches if ahead else map(self._prepared, batches)


def _whole(start, stop):
    return start, stop


def loader_for(data, y, batch_size=None, shuffle=False, what="x"):
    """``data`` as a :class:`Loader`: itself, or one reading arrays or a data set in batches of
    ``batch_size`` (fit's; predict's and evaluate's default: 256)."""
    if isinstance(data, Loader):
        if y is not None:
            raise InputError(f"{what} is a Loader, which gives its own targets: leave y out")
        return data
    return Loader(data, y, batch_size=batch_size or 256, shuffle=shuffle)


def streams(*data) -> bool:
    """True if any of ``data`` is read batch by batch (see :func:`portanet.data.is_stream`)."""
    return any(is_stream(item) for item in data if item is not None)
