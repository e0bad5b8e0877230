"""The data sets a :class:`portanet.data.Loader` reads, by source: arrays and
memory-mapped ``.npy``/``.npz`` files (:class:`ArrayDataset`, :func:`open_npy`,
:func:`open_npz`), any sized data set indexable by sample (:class:`SampleDataset`), and
iterables of ready batches (:class:`BatchIterable`); :func:`as_dataset` picks."""

import zipfile

import numpy as np

from ..errors import DataError, InputError


def is_array_like(data) -> bool:
    """True for arrays and nested lists of numbers: what portanet reads whole, not a data set."""
    return isinstance(data, (list, tuple, np.ndarray, np.generic, int, float)) or any(
        hasattr(data, name) for name in ("__array_namespace__", "__array__", "__dlpack__"))


def describe(data) -> str:
    """A short name of a data set (or a Loader's) for messages."""
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
