"""Data augmentation layers for NCHW images: random flips, crops (shifts) and erased squares.

They act in training only and pass their input through in inference (``predict``,
``evaluate``, ONNX export), like Dropout. Their draws come from portanet's seeded host
generator through :meth:`portanet.layers.base.Pass.noise`, so one seed gives the same
augmented batches on every backend, eager or compiled. Each transform is linear given its
draw: backprop applies its transpose to the gradient.
"""

from array_api_compat import device

from .._checks import integer, one_of
from ..backend import dtype_name, get_backend, namespace, rng
from ..errors import ShapeError
from .base import EMPTY, Layer

FLIP_MODES = {"horizontal": (3,), "vertical": (2,), "horizontal_and_vertical": (2, 3)}


def _image_shape(layer, input_shape):
    """``input_shape`` (per sample), which must be ``(channels, height, width)``."""
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ShapeError(f"{layer!r} expects images (channels, height, width) per sample "
                         f"(NCHW batches), got per-sample shape {shape}")
    return shape


def _noise(layer, x, run):
    """The layer's draw for batch ``x`` in training (from the pass, else drawn here), or None
    in inference."""
    _image_shape(layer, tuple(x.shape[1:]))
    if not run.training:
        return None
    noise = run.noise()
    if noise is None:
        noise = get_backend().asarray(layer.draw(tuple(x.shape)), dtype_name(x))
    return noise


def _identity(x):
    def backprop(grad_output, need_input=True):
        return grad_output, EMPTY
    return x, backprop


def _linear(transform, transpose, x):
    """``(transform(x), backprop)`` of a transform that is linear in ``x``."""
    def backprop(grad_output, need_input=True):
        return (transpose(grad_output) if need_input else None), EMPTY
    return transform(x), backprop


class RandomFlip(Layer):
    """In training, flips each image with probability 0.5 along each axis of ``mode``:
    "horizontal" (width), "vertical" (height) or "horizontal_and_vertical"."""

    random = True

    def __init__(self, mode="horizontal"):
        super().__init__()
        self.mode = one_of("RandomFlip mode", mode, tuple(FLIP_MODES))

    def output_shape(self, input_shape):
        return _image_shape(self, input_shape)

    def draw(self, input_shape):
        """1 where a sample is flipped, per sample and axis: ``(N, len(axes))``."""
        return (rng().random((input_shape[0], len(FLIP_MODES[self.mode]))) < 0.5) * 1.0

    def apply(self, state, x, run):
        noise = _noise(self, x, run)
        if noise is None:
            return _identity(x)
        xp = namespace(x)
        flags = [xp.reshape(noise[:, k] > 0.5, (-1, 1, 1, 1))
                 for k in range(len(FLIP_MODES[self.mode]))]

        def flip(a):  # its own transpose: flips are symmetric and commute
            for axis, flag in zip(FLIP_MODES[self.mode], flags):
                a = xp.where(flag, xp.flip(a, axis=axis), a)
            return a
        return _linear(flip, flip, x)

    def config(self):
        return {"mode": self.mode}


def _shift(x, offsets, padding):
    """``x`` (NCHW) zero-padded by ``padding`` on each side and cropped back to its size, the
    crop of sample ``n`` starting at row ``offsets[n, 0]`` and column ``offsets[n, 1]`` of the
    padded image (integer arrays, in ``[0, 2 * padding]``)."""
    xp = namespace(x)
    n, c, h, w = x.shape
    rows, cols = h + 2 * padding, w + 2 * padding
    where = device(x)
    padded = xp.concat([xp.zeros((n, c, padding, w), dtype=x.dtype, device=where), x,
                        xp.zeros((n, c, padding, w), dtype=x.dtype, device=where)], axis=2)
    padded = xp.concat([xp.zeros((n, c, rows, padding), dtype=x.dtype, device=where), padded,
                        xp.zeros((n, c, rows, padding), dtype=x.dtype, device=where)], axis=3)
    samples = xp.arange(n, dtype=offsets.dtype, device=where)[:, None]

    def take(a, size, count, offset):  # a: (n, count, ...) -> (n, size, ...), per-sample start
        index = (samples * count + offset[:, None]
                 + xp.arange(size, dtype=offsets.dtype, device=where)[None, :])
        flat = xp.reshape(a, (n * count, -1))
        return xp.reshape(xp.take(flat, xp.reshape(index, (-1,)), axis=0),
                          (n, size, *a.shape[2:]))

    picked = take(xp.permute_dims(padded, (0, 2, 1, 3)), h, rows, offsets[:, 0])  # (n, h, c, W)
    picked = take(xp.permute_dims(picked, (0, 3, 2, 1)), w, cols, offsets[:, 1])  # (n, w, c, h)
    return xp.permute_dims(picked, (0, 2, 3, 1))


class RandomCrop(Layer):
    """In training, zero-pads each image by ``padding`` pixels on every side and crops it back
    to its size at a random offset (a random shift by up to ``padding`` pixels per axis)."""

    def __init__(self, padding=4):
        super().__init__()
        self.padding = integer("RandomCrop padding", padding, low=0)

    @property
    def random(self):
        return self.padding > 0

    def output_shape(self, input_shape):
        return _image_shape(self, input_shape)

    def draw(self, input_shape):
        """Where each crop starts in the padded image, ``(N, 2)``: row and column offsets in
        ``[0, 2 * padding]``."""
        return rng().integers(0, 2 * self.padding + 1, size=(input_shape[0], 2))

    def apply(self, state, x, run):
        noise = _noise(self, x, run) if self.random else None
        if noise is None:
            return _identity(x)
        xp = namespace(x)
        offsets = xp.astype(noise, xp.int64)
        back = 2 * self.padding - offsets  # the transpose shifts the other way
        return _linear(lambda a: _shift(a, offsets, self.padding),
                       lambda g: _shift(g, back, self.padding), x)

    def config(self):
        return {"padding": self.padding}


class RandomErasing(Layer):
    """In training, sets a random ``size`` x ``size`` square of each image (all channels) to
    0 (cutout); the square lies inside the image."""

    random = True

    def __init__(self, size=8):
        super().__init__()
        self.size = integer("RandomErasing size", size)

    def output_shape(self, input_shape):
        shape = _image_shape(self, input_shape)
        if min(shape[1:]) < self.size:
            raise ShapeError(f"{self!r} erases {self.size} x {self.size} squares: the images "
                             f"must be at least that large, got per-sample shape {shape}")
        return shape

    def draw(self, input_shape):
        """The top-left corner of each sample's square, ``(N, 2)``: row and column."""
        self.output_shape(input_shape[1:])
        return rng().integers(0, [input_shape[2] - self.size + 1, input_shape[3] - self.size + 1],
                              size=(input_shape[0], 2))

    def apply(self, state, x, run):
        noise = _noise(self, x, run)
        if noise is None:
            return _identity(x)
        self.output_shape(tuple(x.shape[1:]))
        xp = namespace(x)
        _, _, h, w = x.shape
        rows = xp.arange(h, dtype=noise.dtype, device=device(x))[None, :] - noise[:, 0:1]
        cols = xp.arange(w, dtype=noise.dtype, device=device(x))[None, :] - noise[:, 1:2]
        inside_rows = (rows >= 0) & (rows < self.size)  # (N, H)
        inside_cols = (cols >= 0) & (cols < self.size)  # (N, W)
        erased = inside_rows[:, None, :, None] & inside_cols[:, None, None, :]
        zero = xp.asarray(0.0, dtype=x.dtype, device=device(x))

        def erase(a):  # its own transpose
            return xp.where(erased, zero, a)
        return _linear(erase, erase, x)

    def config(self):
        return {"size": self.size}
