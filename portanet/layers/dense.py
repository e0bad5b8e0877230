"""Dense (fully connected) layers: :class:`Dense` over the last axis, and the tutorial's
:class:`FCLayer`."""

from .. import initializers
from .._checks import integer
from ..backend import get_backend, matmul, namespace, sum_rows
from ..errors import ShapeError
from .base import Layer


def affine(x, weights, bias):
    """``x @ weights + bias`` over the last axis of ``x`` (any rank): of a sequence's positions
    as the rows of one matrix (NumPy multiplies a 3-D by a 2-D array matrix by matrix)."""
    if x.ndim > 2:
        xp = namespace(x)
        out = affine(xp.reshape(x, (-1, x.shape[-1])), weights, bias)
        return xp.reshape(out, (*x.shape[:-1], out.shape[-1]))
    out = x @ weights
    out += bias  # in place on the new product: one temporary less
    return out


def affine_grads(x, weights, bias_shape, grad_output, need_input=True, out=(None, None)):
    """``(grad input or None, grad weights, grad bias)`` of :func:`affine`; the batch and
    any other leading axes are summed over. ``out``: arrays to write the weights' and bias'
    gradients into where the backend can (see :meth:`portanet.layers.base.Pass.place`)."""
    xp = namespace(grad_output)
    flat_grad, rows = grad_output, x
    if x.ndim != 2:  # sequences: every position is a row
        flat_grad = xp.reshape(grad_output, (-1, grad_output.shape[-1]))
        rows = xp.reshape(x, (-1, x.shape[-1]))
    # one row (batch 1): an outer product, which BLAS does about twice as slowly as a matmul
    grad_weights = (rows.T * flat_grad if flat_grad.shape[0] == 1
                    else matmul(rows.T, flat_grad, out[0]))
    grad_bias = sum_rows(flat_grad, len(bias_shape) == 2, out[1])  # the tutorial's (1, n) bias
    if grad_bias.shape != bias_shape:
        grad_bias = xp.reshape(grad_bias, bias_shape)
    grad_input = None
    if need_input:
        grad_input = flat_grad @ weights.T
        if grad_output.ndim != 2:
            grad_input = xp.reshape(grad_input, (*grad_output.shape[:-1], weights.shape[0]))
    return grad_input, grad_weights, grad_bias


class Dense(Layer):
    """Dense layer over the last axis: ``output = input @ weights + bias``.

    Inputs of any rank work, ``(N, D)`` as well as sequences ``(N, T, D)``: every position gets
    the same weights, shape ``(input_size, output_size)``; ``bias`` has shape
    ``(output_size,)``. ``init`` names the weight initialiser (see :mod:`portanet.initializers`);
    the default, Glorot uniform, scales the draws to the layer's size so deep or wide networks
    start with activations that neither vanish nor saturate; ``init="uniform"`` is the
    tutorial's U(-0.5, 0.5) for weights and biases. Other initialisers start the bias at zero.
    """

    params = ("weights", "bias")

    def __init__(self, input_size, output_size, init="glorot_uniform", dtype="float32"):
        super().__init__()
        for label, size in (("input_size", input_size), ("output_size", output_size)):
            integer(f"{type(self).__name__} {label}", size)
        self.input_size, self.output_size, self.init = input_size, output_size, init
        self.weights = initializers.initial_weights(init, (input_size, output_size), input_size,
                                                    output_size, dtype, self)
        if init == "uniform":
            self.bias = initializers.initial_weights(init, self.bias_shape(), input_size,
                                                     output_size, dtype, self)
        else:
            self.bias = get_backend().zeros(self.bias_shape(), dtype)

    def bias_shape(self):
        return (self.output_size,)

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if not shape or shape[-1] != self.input_size:
            raise ShapeError(f"{self!r} expects {self.input_size} features on the last axis, "
                             f"got per-sample shape {shape}")
        return (*shape[:-1], self.output_size)

    def apply(self, state, x, run):
        if x.ndim < 2 or x.shape[-1] != self.input_size or (
                self.input_shape is not None and x.ndim != len(self.input_shape) + 1):
            self.output_shape(tuple(x.shape[1:]))
        weights = state["weights"]

        def backprop(grad_output, need_input=True):
            grad_input, grad_weights, grad_bias = affine_grads(
                x, weights, self.bias_shape(), grad_output, need_input,
                (run.place(self, "weights"), run.place(self, "bias")))
            return grad_input, {"weights": grad_weights, "bias": grad_bias}
        return affine(x, weights, state["bias"]), backprop

    def config(self):
        return {"input_size": self.input_size, "output_size": self.output_size, "init": self.init}


class FCLayer(Dense):
    """Fully connected layer of the tutorial: a :class:`Dense` layer for samples that are
    vectors, ``(N, input_size)``, with ``bias`` of shape ``(1, output_size)`` as in the
    tutorial. For sequences or other inputs of higher rank use :class:`Dense`."""

    def __init__(self, input_size, output_size, init="glorot_uniform", dtype="float32"):
        super().__init__(input_size, output_size, init, dtype)
        self.input_shape = (input_size,)

    def bias_shape(self):
        return (1, self.output_size)

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.input_size,):
            hint = " (add a Flatten layer before it)" if len(input_shape) > 1 else ""
            raise ShapeError(f"{self!r} expects {self.input_size} features per sample, "
                             f"got per-sample shape {tuple(input_shape)}{hint}")
        return (self.output_size,)
