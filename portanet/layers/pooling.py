"""Max and average pooling over 2-D windows of NCHW batches (valid padding)."""

import array_api_extra as xpx

from ..backend import namespace
from ..errors import ShapeError
from .base import EMPTY, Layer
from .conv import NCHW, check_4d, pair, unpair


def window(i, j, out_h, out_w, stride):
    """Index of the last two axes that picks, for every output pixel, the input at offset (i, j)."""
    sh, sw = stride
    return (..., slice(i, i + sh * (out_h - 1) + 1, sh), slice(j, j + sw * (out_w - 1) + 1, sw))


class _Pool2D(Layer):
    """Shared geometry of the pooling layers: windows of ``pool_size``, moved by ``stride``."""

    def __init__(self, pool_size=2, stride=None):
        super().__init__()
        label = type(self).__name__
        self.pool_size = pair(pool_size, f"{label} pool_size")
        self.stride = self.pool_size if stride is None else pair(stride, f"{label} stride")

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise ShapeError(f"{self!r} expects per-sample shape (channels, height, width) "
                             f"(batches in NCHW layout {NCHW}), got {shape}")
        (ph, pw), (sh, sw) = self.pool_size, self.stride
        if shape[1] < ph or shape[2] < pw:
            raise ShapeError(f"{self!r}: input height x width {shape[1]}x{shape[2]} is smaller "
                             f"than the pool {ph}x{pw}")
        return (shape[0], (shape[1] - ph) // sh + 1, (shape[2] - pw) // sw + 1)

    def _windows(self, x):
        """Index of each pool offset's strided window, for batch ``x``."""
        check_4d(self, x)
        _, out_h, out_w = self.output_shape(tuple(x.shape[1:]))
        ph, pw = self.pool_size
        return [window(i, j, out_h, out_w, self.stride) for i in range(ph) for j in range(pw)]

    def _blank(self, x):
        """The array the windows' gradients are put into: uninitialised when the windows tile
        ``x`` exactly (every value is then written), else zeros."""
        xp = namespace(x)
        tiles = self.stride == self.pool_size and all(
            size % pool == 0 for size, pool in zip(x.shape[2:], self.pool_size))
        return xp.empty_like(x) if tiles else xp.zeros_like(x)

    def _put(self, grad, index, share):
        """``grad`` with ``share`` added to window ``index``; windows that do not overlap are
        written rather than added to (one pass less)."""
        at = xpx.at(grad, index)
        disjoint = all(s >= p for s, p in zip(self.stride, self.pool_size))
        return at.set(share) if disjoint else at.add(share)

    def config(self):
        return {"pool_size": unpair(self.pool_size), "stride": unpair(self.stride)}


class MaxPool2D(_Pool2D):
    """Maximum of each window; the gradient goes to the window's maximum (the first one in
    row-major order on ties).

    ``stride`` defaults to ``pool_size`` (windows that do not overlap). The forward copies the
    windows' values into one array, an offset per row, and keeps it for the backward: its
    comparisons then read contiguous memory instead of strided windows.
    """

    def apply(self, state, x, run):
        xp = namespace(x)
        windows = xp.stack([x[index] for index in self._windows(x)])
        out = xp.max(windows, axis=0)

        def backprop(grad_output, need_input=True):
            grad = self._blank(x)
            free = None  # windows whose maximum has not had the gradient yet
            for k, index in enumerate(self._windows(x)):
                hit = windows[k, ...] == out
                if free is not None:
                    hit = hit & free
                if k < windows.shape[0] - 1:
                    free = ~hit if free is None else free ^ hit  # hit is within free
                grad = self._put(grad, index, grad_output * xp.astype(hit, grad_output.dtype))
            return grad, EMPTY
        return out, backprop


class AvgPool2D(_Pool2D):
    """Mean of each window; ``stride`` defaults to ``pool_size``."""

    def apply(self, state, x, run):
        windows = self._windows(x)
        out = x[windows[0]]
        for index in windows[1:]:
            out = out + x[index]

        def backprop(grad_output, need_input=True):
            share = grad_output / len(windows)
            grad = self._blank(x)
            for index in windows:
                grad = self._put(grad, index, share)
            return grad, EMPTY
        return out / len(windows), backprop
