"""The fully connected layer."""

from .. import initializers
from ..backend import get_backend, namespace
from ..errors import InputError, ShapeError
from .base import Layer


class FCLayer(Layer):
    """Fully connected layer: ``output = input @ weights + bias``.

    ``weights`` has shape ``(input_size, output_size)`` and ``bias`` ``(1, output_size)``, as in
    the tutorial. ``init`` names the weight initialiser (see :mod:`portanet.initializers`); the
    default, Glorot uniform, scales the draws to the layer's size so deep or wide networks start
    with activations that neither vanish nor saturate; ``init="uniform"`` is the tutorial's
    U(-0.5, 0.5) for weights and biases. Other initialisers start the bias at zero.
    """

    params = ("weights", "bias")

    def __init__(self, input_size, output_size, init="glorot_uniform", dtype="float32"):
        super().__init__()
        for label, size in (("input_size", input_size), ("output_size", output_size)):
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise InputError(f"FCLayer {label} must be a positive integer, got {size!r}")
        self.input_size, self.output_size, self.init = input_size, output_size, init
        self.input_shape = (input_size,)
        self.weights = initializers.initial_weights(init, (input_size, output_size), input_size,
                                                    output_size, dtype, self)
        if init == "uniform":
            self.bias = initializers.initial_weights(init, (1, output_size), input_size,
                                                     output_size, dtype, self)
        else:
            self.bias = get_backend().zeros((1, output_size), dtype)

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.input_size,):
            hint = " (add a Flatten layer before it)" if len(input_shape) > 1 else ""
            raise ShapeError(f"{self!r} expects {self.input_size} features per sample, "
                             f"got per-sample shape {tuple(input_shape)}{hint}")
        return (self.output_size,)

    def forward(self, x, training=False):
        if x.ndim != 2 or x.shape[-1] != self.input_size:
            self.output_shape(tuple(x.shape[1:]))
        self.input = x
        out = x @ self.weights
        out += self.bias  # in place on the new product: one temporary less
        self.output = out
        return self.output

    def backward(self, grad_output):
        self.backward_params(grad_output)
        return grad_output @ self.weights.T

    def backward_params(self, grad_output):
        self.grads = {"weights": self.input.T @ grad_output,
                      "bias": namespace(grad_output).sum(grad_output, axis=0, keepdims=True)}

    def config(self):
        return {"input_size": self.input_size, "output_size": self.output_size, "init": self.init}
