"""Containers that are layers: a sequence of layers, and a residual connection around one.

A container's ``sublayers`` run one after another on its input; its ``apply`` composes theirs
(:meth:`portanet.layers.base.Pass.chain`). The training step, saving and ``Network.summary`` walk
them (:func:`portanet.layers.base.walk`), so parameters, buffers and random draws of nested
layers are found wherever they sit. Containers nest, and may be used at several places.
"""

from ..errors import InputError, ShapeError
from .base import EMPTY, Layer, first_to_learn, is_native


class Container(Layer):
    """Base class of layers made of other layers (``sublayers``), which must be portanet layers
    with ``forward``/``backward`` (not the tutorial's self-updating style)."""

    branches = False  # True: each sublayer reads the container's input (else one after another)

    def __init__(self, sublayers):
        super().__init__()
        for layer in sublayers:
            if not is_native(layer):
                raise InputError(f"{type(self).__name__} holds portanet layers with forward and "
                                 f"backward, got {layer!r}")
        self.sublayers = tuple(sublayers)

    @classmethod
    def from_sublayers(cls, sublayers, **config):
        """The container of ``sublayers`` with ``config`` (how a saved network rebuilds it)."""
        return cls(list(sublayers), **config)

    @property
    def input_shape(self):
        return self.sublayers[0].input_shape

    def astype(self, dtype):
        for layer in self.sublayers:
            layer.astype(dtype)
        return self

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(repr(layer) for layer in self.sublayers)})"


class Sequential(Container):
    """Layers applied in order, as one layer: ``Sequential([LayerNorm(64), Dense(64, 64)])``."""

    def __init__(self, layers):
        if isinstance(layers, Layer) or not layers:
            raise InputError(f"Sequential takes a non-empty list of layers, got {layers!r}")
        super().__init__(layers)
        self.first = first_to_learn(self.sublayers)  # backward goes no further down

    def output_shape(self, input_shape):
        for layer in self.sublayers:
            input_shape = layer.output_shape(input_shape)
        return input_shape

    def apply(self, state, x, run):
        return run.chain(self.sublayers, x, self.first)


class Residual(Container):
    """A skip connection around ``block`` (a layer or a container): ``x + block(x)``; the
    block's output must have its input's shape."""

    def __init__(self, block):
        super().__init__([block])
        self.block = block

    @classmethod
    def from_sublayers(cls, sublayers, **config):
        return cls(*sublayers, **config)

    def output_shape(self, input_shape):
        shape = self.block.output_shape(input_shape)
        if tuple(shape) != tuple(input_shape):
            raise ShapeError(f"the block of a Residual must keep the shape of its input: "
                             f"{self.block!r} turns {tuple(input_shape)} into {tuple(shape)}")
        return shape

    def apply(self, state, x, run):
        out, block_backprop = run.chain([self.block], x)
        if tuple(out.shape) != tuple(x.shape):
            self.output_shape(tuple(x.shape[1:]))

        def backprop(grad_output, need_input=True):
            grad_input, _ = block_backprop(grad_output, need_input)
            return (grad_output + grad_input if need_input else None), EMPTY
        return x + out, backprop
