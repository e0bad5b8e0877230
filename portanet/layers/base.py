"""The layer protocol every portanet layer follows."""

import functools
import inspect
import types

from ..backend import dtype_name, get_backend, namespace, to_numpy
from ..errors import ShapeError


class Layer:
    """Base class of all layers.

    A layer computes ``forward(x, training)`` and, from the gradient of the loss with respect
    to its output, ``backward(grad_output)`` returns the gradient with respect to its input and
    leaves the gradients of its parameters in ``self.grads`` (an optimizer applies them, and
    during ``fit`` may overwrite them in place: the training step owns them);
    ``backward_params(grad_output)`` does only the latter, for the first layer of a network.
    Parameters are array attributes named in ``params``; ``buffers`` names arrays that are
    state but not trained (running statistics). Both are saved with the network. A container
    (:class:`portanet.Sequential`, :class:`portanet.Residual`) lists the layers it runs, one
    after another on its input, in ``sublayers``: training, saving and ``summary`` walk them.

    The tutorial's ``forward_propagation(input)`` and ``backward_propagation(output_error,
    learning_rate)`` still work; a subclass written in the tutorial's style (overriding those
    two) plugs into :class:`portanet.Network` too, updating its own parameters as before.
    """

    params: tuple[str, ...] = ()
    buffers: tuple[str, ...] = ()
    input_shape: tuple[int, ...] | None = None  # per-sample input shape, where the layer fixes one
    random = False  # True for layers that use random draws in training (see ``draw``)
    # Where an eager training step would like the parameter gradients, ``{name: array}``
    # (pieces of its flat gradient buffer, on NumPy): a layer may compute them into those
    # arrays (``portanet.backend.matmul``/``sum_rows`` with ``out``) to save the step a copy.
    grad_places = types.MappingProxyType({})

    def __init__(self):
        self.input = None
        self.output = None
        self.grads = {}

    def forward(self, x, training=False):
        """Output of the layer for a batch ``x`` (samples on the first axis)."""
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def backward(self, grad_output):
        """Gradient with respect to the input; parameter gradients go to ``self.grads``."""
        raise NotImplementedError(f"{type(self).__name__} must define backward()")

    def backward_params(self, grad_output):
        """Only the parameter gradients (into ``self.grads``), without the input gradient.

        The network calls this on its first trainable layer, whose input gradient nobody uses.
        This default runs :meth:`backward` and drops its result; layers override it to skip
        that work.
        """
        self.backward(grad_output)

    def draw(self, input_shape):
        """The host (NumPy) random draws this layer uses for a training batch of
        ``input_shape``, taken from portanet's seeded generator. A training step draws them
        ahead and lends them to the layer as ``self.noise`` (so a compiled step gets them as an
        argument); a layer whose ``random`` is True draws for itself when ``noise`` is None."""
        return None

    def output_shape(self, input_shape):
        """Per-sample output shape for ``input_shape``; ShapeError if it does not fit."""
        return input_shape

    def forward_propagation(self, input_data):
        """The tutorial's name for :meth:`forward` (in training mode)."""
        return self.forward(input_data, training=True)

    def backward_propagation(self, output_error, learning_rate):
        """The tutorial's step: backward, then a plain SGD update of this layer's parameters."""
        input_error = self.backward(output_error)
        for name in self.params:
            setattr(self, name, getattr(self, name) - learning_rate * self.grads[name])
        return input_error

    def get_weights(self):
        """Copies of the parameters and buffers as NumPy arrays, in the order of
        ``params + buffers`` (training updates the layer's own arrays in place)."""
        return [to_numpy(getattr(self, name)).copy() for name in self.params + self.buffers]

    def set_weights(self, weights):
        """Set parameters and buffers from arrays (NumPy or backend), keeping shapes and dtype."""
        names = self.params + self.buffers
        if len(weights) != len(names):
            raise ShapeError(f"{self!r} has {len(names)} weight arrays {names}, got {len(weights)}")
        for name, value in zip(names, weights):
            old = getattr(self, name)
            if tuple(value.shape) != tuple(old.shape):
                raise ShapeError(f"{self!r}.{name} has shape {tuple(old.shape)}, "
                                 f"got {tuple(value.shape)}")
            setattr(self, name, get_backend().asarray(to_numpy(value), dtype_name(old)))

    def astype(self, dtype):
        """Cast parameters and buffers to ``dtype`` ("float32" or "float64")."""
        for name in self.params + self.buffers:
            value = getattr(self, name)
            xp = namespace(value)
            setattr(self, name, xp.astype(value, getattr(xp, dtype)))
        return self

    def config(self):
        """The constructor arguments that rebuild this layer (saved with the network)."""
        return {}

    def __repr__(self):
        """The class and the constructor arguments that differ from their defaults."""
        defaults = _defaults(type(self))
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items()
                         if k not in defaults or defaults[k] != v)
        return f"{type(self).__name__}({args})"


@functools.cache
def _defaults(layer_type):
    """The default values of ``layer_type``'s constructor arguments."""
    return {name: parameter.default
            for name, parameter in inspect.signature(layer_type).parameters.items()}


def is_builtin(layer) -> bool:
    """True for portanet's own layers with built-in activations: their type and settings say
    all they compute."""
    return type(layer).__module__.startswith("portanet.") and getattr(layer, "builtin", True)


def is_native(layer) -> bool:
    """True for layers using forward/backward; False for the tutorial's self-updating style."""
    return _is_native_type(type(layer))


@functools.cache
def _is_native_type(kind) -> bool:
    return (issubclass(kind, Layer)
            and kind.forward_propagation is Layer.forward_propagation
            and kind.backward_propagation is Layer.backward_propagation)


def walk(layers):
    """Every layer of ``layers`` and, after each container, its sublayers (depth first)."""
    for layer in layers:
        yield layer
        yield from walk(getattr(layer, "sublayers", ()))


def trainable(layer) -> bool:
    """True if ``layer`` or one of its sublayers has parameters."""
    return any(getattr(part, "params", ()) for part in walk([layer]))


def walk_shapes(layers, shape, depth=0):
    """``(layer, depth, per-sample input shape or None)`` for every layer as :func:`walk`
    orders them, from ``shape`` (or the first input shape a layer declares). A container's
    sublayers run one after another on the container's input."""
    for layer in layers:
        if shape is None:
            shape = getattr(layer, "input_shape", None)
        yield layer, depth, shape
        yield from walk_shapes(getattr(layer, "sublayers", ()), shape, depth + 1)
        shape = layer.output_shape(shape) if shape is not None and isinstance(layer, Layer) \
            else None
