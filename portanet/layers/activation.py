"""The activation layer: an elementwise function (or softmax) between other layers."""

from .. import activations
from ..activations import ACTIVATIONS, GRADIENTS_FROM_OUTPUT, WITH_BACKWARD, call_user_function
from ..backend import namespace
from ..errors import InputError
from .base import EMPTY, Layer


class ActivationLayer(Layer):
    """Applies ``activation`` to its input; backward multiplies by ``activation_prime(input)``.

    Give the two functions, as in the tutorial, or a name from
    :data:`portanet.activations.ACTIVATIONS` (``ActivationLayer("relu")``). A derivative that
    returns a Jacobian (one more axis than its input, as ``softmax_prime`` does) is applied as a
    vector-Jacobian product, so softmax is exact for batches.

    For a built-in pair (given by name or as the two functions) other than GELU and SiLU,
    backward computes the gradient from the layer's output
    (:data:`portanet.activations.GRADIENTS_FROM_OUTPUT`) instead of evaluating the activation a
    second time; GELU and SiLU compute their derivative in the training forward, sharing its
    work (:data:`portanet.activations.WITH_BACKWARD`).
    """

    def __init__(self, activation, activation_prime=None):
        super().__init__()
        if isinstance(activation, str):
            if activation not in ACTIVATIONS:
                raise InputError(f"unknown activation {activation!r}: choose one of "
                                 f"{', '.join(ACTIVATIONS)}, or register your own with "
                                 "portanet.register_activation")
            activation, activation_prime = ACTIVATIONS[activation]
        if not callable(activation) or not callable(activation_prime):
            raise InputError("ActivationLayer needs an activation and its derivative "
                             "(two functions), or the name of a built-in activation")
        self.activation, self.activation_prime = activation, activation_prime
        name = getattr(activation, "__name__", None)
        self.builtin = (ACTIVATIONS.get(name) == (activation, activation_prime)
                        and activation.__module__ == activations.__name__)
        self.gradient_from_output = GRADIENTS_FROM_OUTPUT.get(name) if self.builtin else None
        self.with_backward = WITH_BACKWARD.get(name) if self.builtin else None

    def apply(self, state, x, run):
        backward = None
        if run.training and self.with_backward is not None:
            out, backward = self.with_backward(x)
        else:
            out = self.activation(x) if self.builtin else call_user_function(self.activation, x)

        def backprop(grad_output, need_input=True):
            if backward is not None:
                return backward(grad_output), EMPTY
            return self._input_gradient(x, out, grad_output), EMPTY
        return out, backprop

    def _input_gradient(self, x, out, grad_output):
        if self.gradient_from_output is not None:
            return self.gradient_from_output(out, grad_output)
        derivative = (self.activation_prime(x) if self.builtin
                      else call_user_function(self.activation_prime, x))
        if derivative.ndim == grad_output.ndim + 1:
            xp = namespace(derivative)
            row = xp.expand_dims(grad_output, axis=-2)
            return xp.squeeze(row @ derivative, axis=-2)
        return derivative * grad_output

    def config(self):
        return {"activation": getattr(self.activation, "__name__", repr(self.activation))}
