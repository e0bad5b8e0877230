"""Max and average pooling over 2-D windows of NCHW batches (valid padding); the arithmetic is
:mod:`portanet.backend.kernels`."""

from ..backend import kernels
from ..errors import ShapeError
from .base import EMPTY, Layer
from .conv import NCHW, check_4d, pair, unpair


class _Pool2D(Layer):
    """Shared geometry of the pooling layers: windows of ``pool_size``, moved by ``stride``."""

    kernel = None  # its function in portanet.backend.kernels: (out, backward)

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

    def apply(self, state, x, run):
        check_4d(self, x)
        self.output_shape(tuple(x.shape[1:]))
        out, backward = self.kernel(x, self.pool_size, self.stride)

        def backprop(grad_output, need_input=True):
            return (backward(grad_output) if need_input else None), EMPTY
        return out, backprop

    def config(self):
        return {"pool_size": unpair(self.pool_size), "stride": unpair(self.stride)}


class MaxPool2D(_Pool2D):
    """Maximum of each window; the gradient goes to the window's maximum (the first one in
    row-major order on ties). ``stride`` defaults to ``pool_size`` (windows that do not
    overlap)."""

    kernel = staticmethod(kernels.max_pool2d)


class AvgPool2D(_Pool2D):
    """Mean of each window; ``stride`` defaults to ``pool_size``."""

    kernel = staticmethod(kernels.avg_pool2d)
