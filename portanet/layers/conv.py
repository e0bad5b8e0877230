"""The 2-D convolution layer (NCHW), by patch extraction and one matrix product."""

import math

import array_api_extra as xpx
from array_api_compat import device

from .. import initializers
from .._checks import integer, is_integer, one_of
from ..backend import get_backend, namespace
from ..errors import InputError, ShapeError
from .base import Layer

NCHW = "(batch, channels, height, width)"


def pair(value, label):
    """``value`` as a pair of positive ints (an int means the same for height and width)."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value, value)
    if len(values) != 2 or not all(is_integer(v) and v > 0 for v in values):
        raise InputError(f"{label} must be a positive int or a pair of them, got {value!r}")
    return values


def unpair(values):
    """The JSON-able form of a pair for ``config()``: one int when both are equal."""
    return values[0] if values[0] == values[1] else list(values)


def check_4d(layer, x):
    if x.ndim != 4:
        raise ShapeError(f"{layer!r} expects 4-D batches in NCHW layout {NCHW}, "
                         f"got an array of shape {tuple(x.shape)}")


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in Keras and PyTorch) on NCHW data.

    Batches have shape ``(batch, channels, height, width)``; ``weights`` has shape
    ``(out_channels, in_channels, kh, kw)`` and ``bias`` ``(out_channels,)``: one bias per
    output channel. ``kernel_size`` and ``stride`` are an int or a ``(height, width)`` pair.
    ``padding="valid"`` uses only full windows; ``"same"`` zero-pads so the output is
    ``ceil(size / stride)`` (the input size at stride 1), with the odd pixel of padding at the
    bottom/right (TensorFlow's convention). The default initialiser is He uniform, because
    convolutions are usually followed by ReLU; the bias starts at zero. ``input_shape`` (per
    sample, ``(channels, height, width)``) lets a network check its input.
    """

    params = ("weights", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding="valid",
                 init="he_uniform", dtype="float32", input_shape=None):
        super().__init__()
        for label, size in (("in_channels", in_channels), ("out_channels", out_channels)):
            integer(f"Conv2D {label}", size)
        one_of("Conv2D padding", padding, ("valid", "same"))
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "Conv2D kernel_size")
        self.stride = pair(stride, "Conv2D stride")
        self.padding, self.init = padding, init
        kh, kw = self.kernel_size
        shape = (out_channels, in_channels, kh, kw)
        self.weights = initializers.initial_weights(init, shape, in_channels * kh * kw,
                                                    out_channels * kh * kw, dtype, self)
        self.bias = get_backend().zeros((out_channels,), dtype)
        if input_shape is not None:
            self.input_shape = tuple(input_shape)
            self.output_shape(self.input_shape)

    def geometry(self, size, kernel, stride, axis):
        """Output size and (before, after) zero padding along one spatial axis."""
        if self.padding == "same":
            out = math.ceil(size / stride)
            total = max((out - 1) * stride + kernel - size, 0)
            return out, (total // 2, total - total // 2)
        if size < kernel:
            raise ShapeError(f"{self!r}: input {axis} {size} is smaller than the kernel "
                             f"({kernel}) with padding='valid'; use padding='same' or a "
                             "smaller kernel")
        return (size - kernel) // stride + 1, (0, 0)

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise ShapeError(f"{self!r} expects per-sample shape (channels, height, width) "
                             f"(batches in NCHW layout {NCHW}), got {shape}")
        if shape[0] != self.in_channels:
            hint = ""
            if shape[-1] == self.in_channels:
                hint = ("; the last axis matches in_channels, so the data looks channels-last "
                        "(NHWC): portanet uses NCHW, transpose batches with "
                        "x.transpose(0, 3, 1, 2)")
            raise ShapeError(f"{self!r} expects {self.in_channels} input channels (axis 1 of "
                             f"NCHW batches), got {shape[0]} in per-sample shape {shape}{hint}")
        out_h, _ = self.geometry(shape[1], self.kernel_size[0], self.stride[0], "height")
        out_w, _ = self.geometry(shape[2], self.kernel_size[1], self.stride[1], "width")
        return (self.out_channels, out_h, out_w)

    def _layout(self, x):
        """How the batch ``x`` is laid out for the patches: each channel's padded image in
        planes of ``rows x width`` values, with ``width`` a multiple of the column stride and
        enough rows that every kernel offset's values for the whole batch are one strided slice
        of a plane (one plane per row stride residue). A window that runs past the end of a row
        reads the next row's left padding, so the right padding need not be stored when the left
        is as wide. Outputs are computed on a grid ``out_h x grid_w`` whose ``grid_w - out_w``
        extra columns are dropped."""
        _, _, h, w = x.shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        out_h, (top, _) = self.geometry(h, kh, sh, "height")
        out_w, (left, _) = self.geometry(w, kw, sw, "width")
        reach = (out_w - 1) * sw + kw  # padded columns the windows read
        keep_w = min(w, reach - left)
        grid_w = -(-max(left + keep_w, reach - left) // sw)
        rows = out_h + (kh - 1) // sh + 1
        return {"out": (out_h, out_w), "grid_w": grid_w, "rows": rows, "width": grid_w * sw,
                "top": top, "left": left, "keep": (min(h, rows * sh - top), keep_w)}

    def _offsets(self, geometry):
        """``(plane, slice)`` of each kernel offset ``(i, j)``, in row-major order."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        count = geometry["out"][0] * geometry["grid_w"]
        return [(i % sh, slice(start, start + sw * (count - 1) + 1, sw))
                for i in range(kh) for j in range(kw)
                for start in [(i // sh) * geometry["width"] + j]]

    def apply(self, state, x, run):
        check_4d(self, x)
        self.output_shape(tuple(x.shape[1:]))
        xp = namespace(x)
        n, c = x.shape[:2]
        kh, kw = self.kernel_size
        sh = self.stride[0]
        g = self._layout(x)
        rows, width, (keep_h, keep_w) = g["rows"], g["width"], g["keep"]
        # Channels first, so the stacked patches reshape to (C*kh*kw, N*positions) for free.
        image = xp.permute_dims(x, (1, 0, 2, 3))[:, :, :keep_h, :keep_w]
        padded = xpx.pad(image, ((0, 0), (0, 0), (g["top"], rows * sh - g["top"] - keep_h),
                                 (g["left"], width - g["left"] - keep_w)), xp=xp)
        planes = xp.reshape(padded, (c, n, rows, sh, width))
        planes = [xp.reshape(planes[:, :, :, r, :], (c, n, rows * width)) for r in range(sh)]
        patches = xp.stack([planes[plane][..., index] for plane, index in self._offsets(g)],
                           axis=1)
        patches = xp.reshape(patches, (c * kh * kw, math.prod(patches.shape[2:])))
        weights = state["weights"]
        kernel = xp.reshape(weights, (self.out_channels, c * kh * kw))
        out = kernel @ patches
        out += xp.reshape(state["bias"], (self.out_channels, 1))
        out_h, out_w = g["out"]
        out = xp.reshape(out, (self.out_channels, n, out_h, g["grid_w"]))[..., :out_w]

        def backprop(grad_output, need_input=True):
            if not need_input:
                return None, self._params_only_grads(patches, g, weights, grad_output)
            grad = self._on_grid(grad_output, g, patches)
            grads = self._weight_grads(patches, grad, weights)
            return self._input_grad(x, g, kernel, grad), grads
        return xp.permute_dims(out, (1, 0, 2, 3)), backprop

    def _on_grid(self, grad_output, g, patches):
        """``grad_output`` as (out_channels, N*grid positions), zeros in the extra columns."""
        xp = namespace(grad_output)
        grid_w, out_w = g["grid_w"], g["out"][1]
        grad = xp.permute_dims(grad_output, (1, 0, 2, 3))
        if grid_w > out_w:
            grad = xpx.pad(grad, ((0, 0), (0, 0), (0, 0), (0, grid_w - out_w)), xp=xp)
        return xp.reshape(grad, (self.out_channels, patches.shape[1]))

    def _weight_grads(self, patches, grad, weights):
        """Weight and bias gradients from the patches and the output gradient, both with one
        column per output position."""
        xp = namespace(grad)
        # (patches @ grad^T)^T rather than grad @ patches^T: the same on NumPy and torch, about
        # three times faster on JAX's CPU backend.
        grad_kernel = xp.matrix_transpose(patches @ xp.matrix_transpose(grad))
        return {"weights": xp.reshape(grad_kernel, tuple(weights.shape)),
                "bias": xp.sum(grad, axis=1)}

    def _params_only_grads(self, patches, g, weights, grad_output):
        """Weight and bias gradients only. When the patches have fewer rows than the output has
        channels (a first layer), the patches drop the grid's extra columns rather than the
        gradient gaining them: the smaller copy."""
        xp = namespace(grad_output)
        (out_h, out_w), grid_w = g["out"], g["grid_w"]
        rows = patches.shape[0]
        if grid_w == out_w or rows >= self.out_channels:
            return self._weight_grads(patches, self._on_grid(grad_output, g, patches), weights)
        patches = xp.reshape(patches, (rows, -1, out_h, grid_w))[..., :out_w]
        grad = xp.permute_dims(grad_output, (1, 0, 2, 3))
        return self._weight_grads(xp.reshape(patches, (rows, -1)),
                                  xp.reshape(grad, (self.out_channels, -1)), weights)

    def _input_grad(self, x, g, kernel, grad):
        """The input gradient from the output gradient on the grid: each kernel offset's share
        goes back to the strided slice it was read from."""
        xp = namespace(grad)
        n, c, h, w = x.shape
        kh, kw = self.kernel_size
        sh = self.stride[0]
        rows, width, (keep_h, keep_w) = g["rows"], g["width"], g["keep"]
        grad_patches = xp.reshape(xp.matrix_transpose(kernel) @ grad, (c, kh * kw, n, -1))
        planes = [xp.zeros((c, n, rows * width), dtype=grad.dtype, device=device(grad))
                  for _ in range(sh)]
        for k, (plane, index) in enumerate(self._offsets(g)):
            planes[plane] = xpx.at(planes[plane], (..., index)).add(grad_patches[:, k, ...])
        planes = [xp.reshape(plane, (c, n, rows, width)) for plane in planes]
        grad_padded = planes[0] if sh == 1 else xp.reshape(xp.stack(planes, axis=3),
                                                           (c, n, rows * sh, width))
        grad_input = grad_padded[:, :, g["top"]:g["top"] + keep_h, g["left"]:g["left"] + keep_w]
        if (keep_h, keep_w) != (h, w):  # rows or columns no window reached
            grad_input = xpx.pad(grad_input, ((0, 0), (0, 0), (0, h - keep_h), (0, w - keep_w)),
                                 xp=xp)
        return xp.permute_dims(grad_input, (1, 0, 2, 3))

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": unpair(self.kernel_size), "stride": unpair(self.stride),
                "padding": self.padding, "init": self.init,
                "input_shape": None if self.input_shape is None else list(self.input_shape)}
