"""Registering the user's own layers, activations and losses, so networks using them can be
saved and loaded.

A saved network names its layer types, activations and loss; loading looks the names up here
(and among the built-in ones) and never runs code from the file. Register before saving and in
the program that loads::

    @portanet.register_layer
    class Scale(portanet.Layer):
        ...

    portanet.register_activation("swish", swish, swish_prime)
    portanet.register_loss("huber", huber, huber_prime)
"""

from .activations import ACTIVATIONS
from .errors import InputError
from .layers import LAYERS
from .layers.base import Layer
from .losses import LOSSES


def _add(registry, name, value, what):
    if not isinstance(name, str) or not name:
        raise InputError(f"a registered {what} needs a non-empty name, got {name!r}")
    if registry.get(name, value) != value:
        raise InputError(f"another {what} is registered as {name!r}: choose another name")
    registry[name] = value


def register_layer(cls=None, *, name=None):
    """Register a :class:`portanet.Layer` subclass (as a decorator, or called with the class)
    under ``name`` (default: the class name). Its ``config()`` must return the JSON-able
    constructor arguments that rebuild it: saving refuses a layer whose config() would not
    (Layer's own ``{}`` suits a constructor without arguments only)."""
    def register(kind):
        if not (isinstance(kind, type) and issubclass(kind, Layer)):
            raise InputError(f"register_layer takes a subclass of portanet.Layer, got {kind!r}")
        _add(LAYERS, name or kind.__name__, kind, "layer")
        return kind

    return register if cls is None else register(cls)


def register_activation(name, activation, activation_prime):
    """Register an activation and its derivative: ``ActivationLayer(name)`` then builds it."""
    if not callable(activation) or not callable(activation_prime):
        raise InputError("register_activation needs an activation and its derivative")
    _add(ACTIVATIONS, name, (activation, activation_prime), "activation")


def register_loss(name, loss, loss_prime):
    """Register a loss and its derivative: ``net.use(name)`` then sets them."""
    if not callable(loss) or not callable(loss_prime):
        raise InputError("register_loss needs a loss and its derivative")
    _add(LOSSES, name, (loss, loss_prime), "loss")
