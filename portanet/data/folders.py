"""A folder of images, one sub-folder per class, read with Pillow as it is indexed."""

from __future__ import annotations

import numpy as np

from .._checks import file_path, is_integer, one_of, size_pair
from ..errors import DataError, InputError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")  # compared lower-cased
MODES = {"grayscale": "L", "rgb": "RGB"}  # color_mode: Pillow's mode


def _pillow():
    try:
        from PIL import Image
    except ImportError as error:
        raise DataError("reading image folders needs Pillow: pip install pillow (or "
                        "portanet[images])") from error
    return Image


class ImageFolder:
    """The images under ``path``, one sub-folder per class (``path/cat/1.png``, ...).

    Classes are the sub-folders sorted by name (names starting with "." are skipped), or
    ``class_names`` in its order (it must name every sub-folder); labels are their indices.
    Images are the files ending in .png, .jpg, .jpeg, .bmp or .gif (any case) anywhere in a
    class's folder, sorted by path; other files are ignored. Creating the folder only lists the
    files (and reads the first image's size); ``ds[i]`` and ``ds.rows(indices)`` read images.

    ``ds[i]`` is ``(x, y)``: ``x`` the image, float32 of shape ``image_shape`` = (C, H, W)
    (channels first, as portanet's CNNs take them; C is 1 for ``color_mode="grayscale"``, 3 for
    "rgb"), pixels scaled to [0, 1]; ``y`` its label (int64). ``image_size=(height, width)``
    resizes every image (bilinear); without it every image must have the first one's size.
    """

    def __init__(self, path, image_size=None, color_mode="grayscale", class_names=None):
        self.path = file_path("path", path)
        self.color_mode = one_of("color_mode", color_mode, tuple(MODES))
        if image_size is not None:
            image_size = size_pair("image_size", image_size)
        if not self.path.is_dir():
            raise DataError(f"no folder of images at {self.path}: "
                            + ("it is a file" if self.path.exists() else "it does not exist")
                            + " (give a folder holding one sub-folder of images per class)")
        self.class_names = self._classes(class_names)
        paths, labels = [], []
        for label, name in enumerate(self.class_names):
            found = sorted(file for file in (self.path / name).rglob("*")
                           if file.suffix.lower() in EXTENSIONS and file.is_file())
            if not found:
                raise DataError(f"the class folder {self.path / name} holds no images (files "
                                f"ending in {', '.join(EXTENSIONS)}); add some or remove it")
            paths += found
            labels += [label] * len(found)
        self.paths = tuple(paths)
        self.labels = np.array(labels, dtype=np.int64)
        self.labels.flags.writeable = False
        self._resizes = image_size is not None
        self.image_size = image_size or self._open(self.paths[0], lambda image: image.size[::-1])
        self.image_shape = (len(MODES[self.color_mode]), *self.image_size)

    def _classes(self, class_names):
        folders = sorted(entry.name for entry in self.path.iterdir()
                         if entry.is_dir() and not entry.name.startswith("."))
        if not folders:
            raise DataError(f"{self.path} has no sub-folders: put the images of each class in a "
                            f"sub-folder named after it ({self.path}/<class>/<image>.png)")
        if class_names is None:
            return tuple(folders)
        if not (isinstance(class_names, (list, tuple))
                and all(isinstance(name, str) for name in class_names)):
            raise InputError(f"class_names must be a list of the sub-folders' names, got "
                             f"{class_names!r}")
        if sorted(class_names) != folders:
            raise InputError(f"class_names must name every sub-folder of {self.path} once, in the "
                             f"order of the labels: the sub-folders are {folders}, got "
                             f"{list(class_names)}")
        return tuple(class_names)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        """``(x, y)``: image ``index`` (float32 (C, H, W) in [0, 1]) and its label (int64)."""
        if not is_integer(index):
            raise InputError(f"an ImageFolder is indexed by an integer, got {index!r}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"image index {index} is out of range: the folder holds {len(self)} "
                             "images")
        return self._read(self.paths[index]), self.labels[index]

    def rows(self, indices):
        """``(x, y)``: the images ``indices`` (a 1-D array of ints, in its order) stacked,
        float32 (N, C, H, W) in [0, 1], and their labels, int64 (N,)."""
        indices = np.asarray(indices)
        if indices.ndim != 1 or not (indices.dtype.kind in "iu" or indices.size == 0):
            raise InputError(f"indices must be a 1-D array of ints, got {indices!r:.80}")
        if indices.size and not (-len(self) <= indices.min() and indices.max() < len(self)):
            raise InputError(f"indices must lie in [{-len(self)}, {len(self)}) (the folder holds "
                             f"{len(self)} images), got {indices.min()} to {indices.max()}")
        x = np.empty((len(indices), *self.image_shape), dtype=np.float32)
        for row, index in enumerate(indices):
            x[row] = self._read(self.paths[index])
        return x, self.labels[indices.astype(np.intp)]

    def _read(self, path):
        """The image at ``path`` as float32 (C, H, W) in [0, 1]."""
        def pixels(image):
            image = image.convert(MODES[self.color_mode])
            if image.size != self.image_size[::-1]:
                if not self._resizes:
                    raise DataError(f"{path} has size {image.size[::-1]} (height, width), not "
                                    f"{self.image_size} as the first image {self.paths[0]}: "
                                    f"give ImageFolder(..., image_size={self.image_size}) "
                                    "(portanet train --image-size "
                                    f"{'x'.join(map(str, self.image_size))}) to resize every "
                                    "image to one size")
                image = image.resize(self.image_size[::-1], _pillow().Resampling.BILINEAR)
            return np.asarray(image, dtype=np.float32)

        x = self._open(path, pixels) / np.float32(255)
        return x[None] if x.ndim == 2 else np.moveaxis(x, -1, 0)

    def _open(self, path, use):
        """``use(image)`` with the image at ``path`` open; DataError naming the file where
        Pillow cannot read it."""
        try:
            with _pillow().open(path) as image:
                return use(image)
        except (OSError, ValueError, SyntaxError, EOFError,
                _pillow().DecompressionBombError) as error:  # what Pillow raises on bad files
            raise DataError(f"cannot read the image {path}: {error}; replace or remove the "
                            "file") from error

    def __repr__(self):
        return (f"ImageFolder({str(self.path)!r}: {len(self)} images of {self.image_shape}, "
                f"{len(self.class_names)} classes)")
