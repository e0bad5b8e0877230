"""Max and average pooling over 2-D windows of NCHW batches and 1-D windows of NCL ones (valid
padding); the arithmetic is :mod:`portanet.backend.kernels` (the 1-D kernels are the 2-D ones on
images of one row)."""

from ..backend import kernels
from ..errors import ShapeError
from .base import EMPTY, Layer
from .conv import NCHW, NCL, config_sizes, sizes


class _Pool(Layer):
    """Shared geometry of the pooling layers: windows of ``pool_size``, moved by ``stride``,
    per spatial axis of their layout."""

    layout = NCHW
    kernel = None  # its function in portanet.backend.kernels: (out, backward)

    def __init__(self, pool_size=2, stride=None):
        super().__init__()
        label = type(self).__name__
        self.pool_size = sizes(pool_size, self.layout, f"{label} pool_size")
        self.stride = (self.pool_size if stride is None
                       else sizes(stride, self.layout, f"{label} stride"))

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        self.layout.check_sample(self, shape)
        if any(size < pool for size, pool in zip(shape[1:], self.pool_size)):
            raise ShapeError(f"{self!r}: input {' x '.join(self.layout.axes)} "
                             f"{'x'.join(map(str, shape[1:]))} is smaller than the pool "
                             f"{'x'.join(map(str, self.pool_size))}")
        return (shape[0], *((size - pool) // stride + 1 for size, pool, stride
                            in zip(shape[1:], self.pool_size, self.stride)))

    def apply(self, state, x, run):
        self.layout.check_batch(self, x)
        self.output_shape(tuple(x.shape[1:]))
        out, backward = self.kernel(x, self.pool_size, self.stride)

        def backprop(grad_output, need_input=True):
            return (backward(grad_output) if need_input else None), EMPTY
        return out, backprop

    def config(self):
        return {"pool_size": config_sizes(self.pool_size), "stride": config_sizes(self.stride)}


class MaxPool2D(_Pool):
    """Maximum of each window of NCHW batches; the gradient goes to the window's maximum (the
    first one in row-major order on ties). ``pool_size`` and ``stride`` are an int or a
    ``(height, width)`` pair; ``stride`` defaults to ``pool_size`` (windows that do not
    overlap)."""

    kernel = staticmethod(kernels.max_pool2d)


class AvgPool2D(_Pool):
    """Mean of each window of NCHW batches; ``stride`` defaults to ``pool_size``."""

    kernel = staticmethod(kernels.avg_pool2d)


class MaxPool1D(_Pool):
    """Maximum of each window of ``pool_size`` values along the length of NCL batches ``(batch,
    channels, length)``, as PyTorch's ``nn.MaxPool1d``; the gradient goes to the window's first
    maximum. ``stride`` defaults to ``pool_size``."""

    layout = NCL
    kernel = staticmethod(kernels.max_pool1d)


class AvgPool1D(_Pool):
    """Mean of each window of ``pool_size`` values along the length of NCL batches; ``stride``
    defaults to ``pool_size``."""

    layout = NCL
    kernel = staticmethod(kernels.avg_pool1d)
