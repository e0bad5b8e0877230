"""The convolution layers: 2-D on NCHW batches, 1-D on NCL batches (PyTorch's layouts); the
arithmetic is :func:`portanet.backend.kernels.conv2d` (and ``conv1d``, the same kernel on images
of one row)."""

import math
from typing import NamedTuple

from .. import initializers
from .._checks import integer, is_integer, one_of
from ..backend import get_backend, kernels
from ..errors import InputError, ShapeError
from .base import Layer


class Layout(NamedTuple):
    """How batches of a kind of layer are laid out: ``name``, the spatial ``axes`` after the
    channels, and how to move channels-last batches there."""

    name: str
    axes: tuple
    from_channels_last: str

    def __str__(self):
        return f"{self.name} layout (batch, channels, {', '.join(self.axes)})"

    def check_batch(self, layer, x):
        """ShapeError unless ``x`` is a batch of this layout."""
        if x.ndim != len(self.axes) + 2:
            hint = ("; samples of one channel need that axis: x[:, None]"
                    if x.ndim == len(self.axes) + 1 else "")
            raise ShapeError(f"{layer!r} expects {len(self.axes) + 2}-D batches in "
                             f"{self}, got an array of shape {tuple(x.shape)}{hint}")

    def check_sample(self, layer, shape):
        """ShapeError unless ``shape`` is a per-sample shape of this layout."""
        if len(shape) != len(self.axes) + 1:
            raise ShapeError(f"{layer!r} expects per-sample shape (channels, "
                             f"{', '.join(self.axes)}) (batches in {self}), got {shape}")

    def channels_hint(self, shape, channels):
        """A hint for a per-sample ``shape`` whose last axis has the ``channels`` expected."""
        if shape[-1] != channels:
            return ""
        return (f"; the last axis matches in_channels, so the data looks channels-last: "
                f"portanet uses {self.name}, transpose batches with {self.from_channels_last}")


NCHW = Layout("NCHW", ("height", "width"), "x.transpose(0, 3, 1, 2)")
NCL = Layout("NCL", ("length",), "x.transpose(0, 2, 1)")


def sizes(value, layout, label):
    """``value`` as positive ints, one per axis of ``layout`` (an int means the same for
    each)."""
    count = len(layout.axes)
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * count
    if len(values) != count or not all(is_integer(v) and v > 0 for v in values):
        kind = " or a pair of them" if count == 2 else ""
        raise InputError(f"{label} must be a positive int{kind}, got {value!r}")
    return tuple(int(v) for v in values)


def config_sizes(values):
    """The JSON-able form of sizes for ``config()``: one int when all are equal."""
    return values[0] if len(set(values)) == 1 else list(values)


class _Conv(Layer):
    """What Conv1D and Conv2D share: the arguments, initialisation, padding and errors, all per
    spatial axis of their :class:`Layout`."""

    params = ("weights", "bias")
    layout = NCHW
    kernel = None  # its function in portanet.backend.kernels: (out, backward)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding="valid",
                 dilation=1, init="he_uniform", dtype="float32", input_shape=None):
        super().__init__()
        name = type(self).__name__
        for label, size in (("in_channels", in_channels), ("out_channels", out_channels)):
            integer(f"{name} {label}", size)
        one_of(f"{name} padding", padding, ("valid", "same"))
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = sizes(kernel_size, self.layout, f"{name} kernel_size")
        self.stride = sizes(stride, self.layout, f"{name} stride")
        self.dilation = sizes(dilation, self.layout, f"{name} dilation")
        self.padding, self.init = padding, init
        window = math.prod(self.kernel_size)
        self.weights = initializers.initial_weights(
            init, (out_channels, in_channels, *self.kernel_size), in_channels * window,
            out_channels * window, dtype, self)
        self.bias = get_backend().zeros((out_channels,), dtype)
        if input_shape is not None:
            self.input_shape = tuple(input_shape)
            self.output_shape(self.input_shape)

    def geometry(self, shape):
        """For each spatial axis of the per-sample ``shape``: the output size and the (before,
        after) zero padding."""
        self.layout.check_sample(self, shape)
        if shape[0] != self.in_channels:
            raise ShapeError(f"{self!r} expects {self.in_channels} input channels (axis 1 of "
                             f"{self.layout.name} batches), got {shape[0]} in per-sample shape "
                             f"{shape}{self.layout.channels_hint(shape, self.in_channels)}")
        found = []
        for size, kernel, stride, dilation, axis in zip(shape[1:], self.kernel_size, self.stride,
                                                        self.dilation, self.layout.axes):
            reach = (kernel - 1) * dilation + 1  # the input a window covers
            if self.padding == "same":
                out = math.ceil(size / stride)
                total = max((out - 1) * stride + reach - size, 0)
                found.append((out, (total // 2, total - total // 2)))
            elif size < reach:
                spread = f" dilated by {dilation}: {reach}" if dilation > 1 else ""
                raise ShapeError(f"{self!r}: input {axis} {size} is smaller than the kernel "
                                 f"({kernel}{spread}) with padding='valid'; use "
                                 "padding='same' or a smaller kernel")
            else:
                found.append(((size - reach) // stride + 1, (0, 0)))
        return found

    def output_shape(self, input_shape):
        return (self.out_channels, *(out for out, _ in self.geometry(tuple(input_shape))))

    def apply(self, state, x, run):
        self.layout.check_batch(self, x)
        padding = [pad for _, pad in self.geometry(tuple(x.shape[1:]))]
        out, backward = self.kernel(x, state["weights"], state["bias"], self.stride, padding,
                                    self.dilation)

        def backprop(grad_output, need_input=True):
            grad_input, grad_weights, grad_bias = backward(grad_output, need_input)
            return grad_input, {"weights": grad_weights, "bias": grad_bias}
        return out, backprop

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": config_sizes(self.kernel_size), "stride": config_sizes(self.stride),
                "padding": self.padding, "dilation": config_sizes(self.dilation), "init": self.init,
                "input_shape": None if self.input_shape is None else list(self.input_shape)}


class Conv2D(_Conv):
    """2-D convolution (cross-correlation, as in Keras and PyTorch) on NCHW data.

    Batches have shape ``(batch, channels, height, width)``; ``weights`` has shape
    ``(out_channels, in_channels, kh, kw)`` and ``bias`` ``(out_channels,)``: one bias per
    output channel. ``kernel_size``, ``stride`` and ``dilation`` are an int or a ``(height,
    width)`` pair; ``dilation`` spaces the kernel's weights that many pixels apart (a 3-wide
    kernel dilated by 2 covers 5 pixels). ``padding="valid"`` uses only full windows;
    ``"same"`` zero-pads so the output is ``ceil(size / stride)`` (the input size at stride 1),
    with the odd pixel of padding at the bottom/right (TensorFlow's convention). The default
    initialiser is He uniform, because convolutions are usually followed by ReLU; the bias
    starts at zero. ``input_shape`` (per sample, ``(channels, height, width)``) lets a network
    check its input.
    """

    layout = NCHW
    kernel = staticmethod(kernels.conv2d)


class Conv1D(_Conv):
    """1-D convolution (cross-correlation) along the length of NCL data, as PyTorch's
    ``nn.Conv1d``: the 2-D convolution kernel on images of one row.

    Batches have shape ``(batch, channels, length)``; ``weights`` has shape ``(out_channels,
    in_channels, kernel_size)`` and ``bias`` ``(out_channels,)``. ``kernel_size``, ``stride`` and
    ``dilation`` are ints; padding, initialisation and ``input_shape`` (per sample,
    ``(channels, length)``) follow :class:`Conv2D`: ``"same"`` puts the odd value of padding at
    the end.
    """

    layout = NCL
    kernel = staticmethod(kernels.conv1d)
