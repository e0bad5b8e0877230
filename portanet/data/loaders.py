"""Data sets and loaders: training on data that need not fit in memory.

A *data set* is either

- **sized and indexable by sample**: ``len(ds)`` samples, ``ds[i] -> (x_i, y_i)`` (or ``x_i``
  alone, for ``predict``), with an optional fast path ``ds.rows(indices) -> (x, y)`` reading
  a batch at once. NumPy arrays and memory-mapped ``.npy``/``.npz`` files
  (:class:`ArrayDataset`, :func:`open_npy`, :func:`open_npz`), a torch ``Dataset`` and an
  image folder are such sets; or
- **an iterable of batches** ``(x, y)``: a function returning a fresh iterator each call (a
  generator function), a torch ``DataLoader``, any object whose ``iter()`` starts again; a
  generator object can be read once, so it serves one epoch.

A :class:`Loader` cuts a sized set into batches (seeded shuffling, drop-last, a map function)
and assembles them ahead in a background thread (:class:`Prefetch`): at most ``prefetch``
batches wait in memory besides the one being trained on. The data sets themselves, by source,
are in :mod:`portanet.data.sources` (and importable from here).
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from .._checks import boolean, function, integer
from ..backend import rng
from ..errors import DataError, InputError
from .sources import (
    ArrayDataset,
    BatchIterable,
    SampleDataset,
    as_dataset,
    describe,
    is_array_like,
    open_npy,
    open_npz,
)

__all__ = ["ArrayDataset", "SampleDataset", "BatchIterable", "Loader", "Prefetch",
           "is_array_like", "is_stream", "describe", "as_dataset", "open_npy", "open_npz",
           "subset", "split"]  # in the reference's order


def is_stream(data) -> bool:
    """True if ``data`` is read batch by batch: a :class:`Loader`, a data set (sized and
    indexable, or an iterable of batches), or a NumPy memory map (never copied whole)."""
    if isinstance(data, (Loader, np.memmap)):
        return True
    if is_array_like(data) or isinstance(data, (str, bytes, dict)):
        return False
    return (hasattr(data, "__len__") and hasattr(data, "__getitem__")) or hasattr(
        data, "__iter__") or callable(data)


class Loader:
    """Batches of a data set, read ahead in a background thread.

    ``data`` is arrays (``x``, with targets ``y``), a memory map, a sized indexable data set or
    an iterable of batches (see :mod:`portanet.data.loaders`). ``batch_size`` samples a batch
    (the last may be smaller unless ``drop_last``); ``shuffle`` reorders the samples every
    epoch: from portanet's seeded generator (:func:`portanet.set_seed`, the order arrays get in
    ``fit``), or, with ``seed``, from that seed and the epoch's number. ``map(x, y) -> (x, y)``
    transforms each batch (NumPy arrays) in the background thread; ``prefetch`` batches are
    assembled ahead. Iterating a loader gives NumPy batches; ``fit``, ``evaluate`` and
    ``predict`` take it as they take arrays.
    """

    def __init__(self, data, y=None, batch_size=32, shuffle=False, drop_last=False, map=None,
                 prefetch=2, seed=None):
        self.dataset = as_dataset(data, y)
        self.batch_size = integer("batch_size", batch_size)
        self.shuffle = boolean("shuffle", shuffle)
        self.drop_last = boolean("drop_last", drop_last)
        self.map = None if map is None else function("map", map)
        self.prefetch = integer("prefetch", prefetch)
        self.seed = None if seed is None else integer("seed", seed, low=0)
        self.sized = not isinstance(self.dataset, BatchIterable)
        if not self.sized and (shuffle or drop_last):
            raise InputError(f"{describe(self)} is an iterable of ready batches, which a Loader "
                             "cannot shuffle or cut: shuffle and batch in your generator, or "
                             "give a sized data set")
        if self.sized and len(self.dataset) == 0:
            raise InputError(f"{describe(self)} is empty: give at least one sample")
        self._epochs = 0  # epochs iterated outside fit (the seed's epoch number)

    @property
    def name(self):
        """The data set's name, for messages."""
        return describe(self.dataset)

    @property
    def class_names(self):
        """The names of the data set's classes where it has them (an ImageFolder), else None."""
        return getattr(self.dataset, "class_names", None)

    @property
    def samples(self):
        """The number of samples of the data set (None for an iterable of batches)."""
        return len(self.dataset) if self.sized else None

    def __len__(self):
        """Batches per epoch."""
        if not self.sized:
            return len(self.dataset)
        whole, rest = divmod(len(self.dataset), self.batch_size)
        return whole + (1 if rest and not self.drop_last else 0)

    def order(self, epoch):
        """The sample order of epoch ``epoch`` (from 1): an index array, or None for the data
        set's own order. Drawn where it is called: fit calls it on its own thread."""
        if not (self.shuffle and self.sized):
            return None
        n = len(self.dataset)
        if self.seed is None:
            return rng().permutation(n)
        return np.random.default_rng((self.seed, epoch)).permutation(n)

    def spans(self):
        """``(start, stop)`` of each batch of an epoch, in positions of the epoch's order."""
        n = len(self.dataset)
        stop = n - n % self.batch_size if self.drop_last else n
        return [(start, min(start + self.batch_size, n))
                for start in range(0, stop, self.batch_size)]

    def read(self, indices):
        """The batch of samples ``indices`` (NumPy), mapped."""
        return self.mapped(self.dataset.rows(indices))

    def mapped(self, batch):
        if self.map is None:
            return batch
        out = self.map(*batch) if isinstance(batch, tuple) else self.map(batch)
        if isinstance(batch, tuple) and not (isinstance(out, tuple) and len(out) == 2):
            raise DataError(f"the Loader's map function returned {type(out).__name__}: it must "
                            "return the batch's (x, y)")
        return out

    def batches(self, order=None, parts=None):
        """The epoch's batches in ``order``, read in this thread: ``(start, stop, batch)``.
        ``parts(start, stop) -> (lo, hi)`` picks the part of each batch to read (a rank's
        share under MPI)."""
        if not self.sized:
            start = 0
            for batch in self.dataset:
                batch = tuple(batch) if isinstance(batch, (tuple, list)) else batch
                rows = len(batch[0] if isinstance(batch, tuple) else batch)
                lo, hi = parts(start, start + rows) if parts else (start, start + rows)
                if lo - start or hi - start - rows:
                    batch = tuple(b[lo - start:hi - start] for b in batch) if isinstance(
                        batch, tuple) else batch[lo - start:hi - start]
                yield start, start + rows, self.mapped(batch)
                start += rows
            return
        indices = np.arange(len(self.dataset)) if order is None else np.asarray(order)
        for start, stop in self.spans():
            lo, hi = parts(start, stop) if parts else (start, stop)
            yield start, stop, self.read(indices[lo:hi]) if hi > lo else None

    def __iter__(self):
        self._epochs += 1
        batches = (batch for _, _, batch in self.batches(self.order(self._epochs)))
        with Prefetch(batches, self.prefetch, describe(self)) as ahead:
            yield from ahead


_END = object()


class Prefetch:
    """Iterates ``items`` in a background thread, at most ``depth`` items ahead; an error
    there reaches the caller as a DataError naming ``name``. Use it as a context manager (or
    call :meth:`close`): the thread is stopped and joined when the caller is done."""

    def __init__(self, items, depth, name, prepare=None):
        self.name, self._prepare = name, prepare
        self._queue = queue.Queue(maxsize=depth)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(items,), daemon=True,
                                        name="portanet-prefetch")
        self._thread.start()

    def _produce(self, items):
        try:
            for item in items:
                if self._prepare is not None:
                    item = self._prepare(item)
                if not self._put((item, None)):
                    return
            self._put((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((None, exc))

    def _put(self, entry) -> bool:
        while not self._stopping.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        return self

    def __next__(self):
        item, error = self._queue.get()
        if error is not None:
            self.close()
            if isinstance(error, (InputError, DataError)):
                raise error
            raise DataError(f"reading {self.name} failed: {type(error).__name__}: {error}"
                            ) from error
        if item is _END:
            self.close()
            raise StopIteration
        return item

    def close(self):
        """Stop the background thread and wait for it."""
        self._stopping.set()
        while True:  # free a producer blocked on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def subset(loader, start, stop):
    """A Loader over samples ``[start, stop)`` of ``loader``'s sized data set (a validation
    split), with the same settings and no shuffling."""
    return Loader(_Range(loader.dataset, start, stop), batch_size=loader.batch_size,
                  map=loader.map, prefetch=loader.prefetch)


class _Range:
    """Samples ``[start, stop)`` of a sized data set."""

    def __init__(self, dataset, start, stop):
        self.dataset, self.start, self.stop = dataset, start, stop
        self.name = describe(dataset)
        self.class_names = getattr(dataset, "class_names", None)

    def __len__(self):
        return self.stop - self.start

    def rows(self, indices):
        return self.dataset.rows(np.asarray(indices) + self.start)


def split(loader, fraction):
    """``(training, validation)`` loaders: the last ``fraction`` of the samples validate."""
    if not loader.sized:
        raise InputError(f"{describe(loader)} is an iterable of batches: validation_split needs "
                         "a sized data set; give validation_data instead")
    n = len(loader.dataset)
    keep = n - max(1, int(round(n * fraction)))
    if keep < 1:
        raise InputError("validation_split leaves no training samples")
    training = Loader(_Range(loader.dataset, 0, keep), batch_size=loader.batch_size,
                      shuffle=loader.shuffle, drop_last=loader.drop_last, map=loader.map,
                      prefetch=loader.prefetch, seed=loader.seed)
    return training, subset(loader, keep, n)
