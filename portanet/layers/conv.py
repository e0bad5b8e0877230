"""The 2-D convolution layer (NCHW); the arithmetic is :func:`portanet.backend.kernels.conv2d`."""

import math

from .. import initializers
from .._checks import integer, is_integer, one_of
from ..backend import get_backend, kernels
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

    def apply(self, state, x, run):
        check_4d(self, x)
        self.output_shape(tuple(x.shape[1:]))
        padding = [self.geometry(size, kernel, stride, axis)[1] for size, kernel, stride, axis
                   in zip(x.shape[2:], self.kernel_size, self.stride, ("height", "width"))]
        out, backward = kernels.conv2d(x, state["weights"], state["bias"], self.stride, padding)

        def backprop(grad_output, need_input=True):
            grad_input, grad_weights, grad_bias = backward(grad_output, need_input)
            return grad_input, {"weights": grad_weights, "bias": grad_bias}
        return out, backprop

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": unpair(self.kernel_size), "stride": unpair(self.stride),
                "padding": self.padding, "init": self.init,
                "input_shape": None if self.input_shape is None else list(self.input_shape)}
