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
batches wait in memory besides the one being trained on.
"""

from __future__ import annotations

import queue
import threading
import zipfile

import numpy as np

from .._checks import boolean, function, integer
from ..backend import rng
from ..errors import DataError, InputError


def is_array_like(data) -> bool:
    """True for arrays and nested lists of numbers: what portanet reads whole, not a data set."""
    return isinstance(data, (list, tuple, np.ndarray, np.generic, int, float)) or any(
        hasattr(data, name) for name in ("__array_namespace__", "__array__", "__dlpack__"))


def is_stream(data) -> bool:
    """True if ``data`` is read batch by batch: a :class:`Loader`, a data set (sized and
    indexable, or an iterable of batches), or a NumPy memory map (never copied whole)."""
    if isinstance(data, (Loader, np.memmap)):
        return True
    if is_array_like(data) or isinstance(data, (str, bytes, dict)):
        return False
    return (hasattr(data, "__len__") and hasattr(data, "__getitem__")) or hasattr(
        data, "__iter__") or callable(data)


def describe(data) -> str:
    """A short name of a data set for messages."""
    if isinstance(data, Loader):
        return describe(data.dataset)
    return getattr(data, "name", None) or f"the {type(data).__name__} data set"


class ArrayDataset:
    """The samples ``x[i]`` (and targets ``y[i]``) of arrays indexable along their first axis:
    NumPy arrays and memory maps. Reading a batch copies only its rows."""

    def __init__(self, x, y=None, name=None):
        self.x, self.y = x, y
        self.name = name or "the arrays"
        if y is not None and len(y) != len(x):
            raise InputError(f"{self.name}: x has {len(x)} samples but y has {len(y)}: they "
                             "must match")

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index] if self.y is None else (self.x[index], self.y[index])

    def rows(self, indices):
        """The batch of samples ``indices`` (a 1-D integer array), in that order."""
        x = self.x[indices]
        return x if self.y is None else (x, self.y[indices])


class SampleDataset:
    """Any sized, indexable data set read one sample at a time (a torch ``Dataset`` ...);
    its own ``rows(indices)`` is used where it has one."""

    def __init__(self, data):
        self.data, self.name = data, describe(data)
        self.class_names = getattr(data, "class_names", None)  # an ImageFolder's

    def __len__(self):
        return len(self.data)

    def rows(self, indices):
        if hasattr(self.data, "rows"):
            return self.data.rows(indices)
        items = [self.data[int(i)] for i in indices]
        if not isinstance(items[0], (tuple, list)):
            return _stack([items], self.name)[0]
        if any(len(item) != 2 for item in items):
            raise DataError(f"{self.name} gave an item of {len(items[0])} parts: a sample must "
                            "be (x, y) or x alone")
        return _stack([[item[0] for item in items], [item[1] for item in items]], self.name)


def _stack(columns, name):
    try:
        return tuple(np.stack([np.asarray(value) for value in column]) for column in columns)
    except ValueError as exc:
        raise DataError(f"{name} gave samples of different shapes ({exc}): every sample must "
                        "have the same shape; resize or pad them in the data set") from None


class BatchIterable:
    """An iterable of ready batches, read again each epoch (a generator object: once)."""

    def __init__(self, source):
        self.source, self.name = source, describe(source)
        self._used = False

    def __len__(self):
        return len(self.source)  # TypeError where the source does not know

    def __iter__(self):
        items = self.source() if callable(self.source) else iter(self.source)
        if iter(items) is self.source:  # a generator object: it cannot start again
            if self._used:
                raise InputError(f"{self.name} is a generator, which can be read once: give the "
                                 "function that makes it (fit(make_batches, ...), called each "
                                 "epoch) or a Loader over a sized data set")
            self._used = True
        return iter(items)


def as_dataset(data, y=None):
    """``data`` (and ``y``) as a sized data set with ``rows()``, or a :class:`BatchIterable`."""
    if isinstance(data, (list, tuple)) and y is None:  # a list of samples
        return SampleDataset(data)
    if is_array_like(data):
        return ArrayDataset(*(np.asarray(a) if isinstance(a, (list, tuple)) else a
                              for a in (data, y)))
    if y is not None:
        raise InputError(f"{describe(data)} is a data set giving its own targets: leave y out "
                         "(fit(dataset, epochs=...))")
    if hasattr(data, "__len__") and (hasattr(data, "__getitem__") or hasattr(data, "rows")):
        return SampleDataset(data)
    if hasattr(data, "__iter__") or callable(data):
        return BatchIterable(data)
    raise InputError(f"{type(data).__name__} is not a data set: give arrays, a sized indexable "
                     "data set, an iterable of (x, y) batches or a portanet.data.Loader")


def open_npy(x_path, y_path=None) -> ArrayDataset:
    """A data set of memory-mapped ``.npy`` files (inputs, and targets if given): nothing is
    read until a batch is."""
    return ArrayDataset(_mapped(x_path), None if y_path is None else _mapped(y_path),
                        name=f"the file {x_path}")


def _mapped(path):
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot memory-map {path}: {exc} (give a .npy file numpy.save wrote)"
                        ) from None


def open_npz(path, x="x", y="y") -> ArrayDataset:
    """A data set of the arrays named ``x`` (and ``y``, None for none) of an ``.npz`` file
    written by ``numpy.savez`` (not ``savez_compressed``: compressed members cannot be
    memory-mapped), memory-mapped in place."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path} as an .npz file: {exc}") from None
    infos = {}
    for name in (x, y):
        if name is not None and f"{name}.npy" not in members:
            arrays = sorted(member.removesuffix(".npy") for member in members)
            raise DataError(f"{path} has no array {name!r} (it has {arrays}): name the arrays "
                            "with open_npz(path, x=..., y=...)")
        if name is not None:
            infos[name] = members[f"{name}.npy"]
    arrays = {name: _mapped_member(path, name, info) for name, info in infos.items()}
    return ArrayDataset(arrays[x], arrays.get(y), name=f"the file {path}")


def _mapped_member(path, name, info):
    if info.compress_type != zipfile.ZIP_STORED:
        raise DataError(f"the array {name!r} of {path} is compressed and cannot be memory-mapped: "
                        "write the file with numpy.savez (not savez_compressed)")
    with open(path, "rb") as file:
        file.seek(info.header_offset + 26)  # the local header's name and extra-field lengths
        lengths = np.frombuffer(file.read(4), dtype="<u2")
        file.seek(info.header_offset + 30 + int(lengths[0]) + int(lengths[1]))
        version = np.lib.format.read_magic(file)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise DataError(f"the array {name!r} of {path} has .npy format {version}, which "
                            "portanet cannot memory-map")
        shape, fortran, dtype = read_header(file)
        offset = file.tell()
    if dtype.hasobject:
        raise DataError(f"the array {name!r} of {path} holds Python objects: give numbers")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")


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
