"""Activation functions and their derivatives, written once against the array API.

Each ``f`` has ``f_prime(x)``, the derivative with respect to its input, as in the tutorial.
``softmax_prime`` returns the full Jacobian (one more axis than ``x``), because the softmax
derivative is not elementwise; :class:`portanet.ActivationLayer` applies such a derivative as a
vector-Jacobian product.

For most built-in pairs, :data:`GRADIENTS_FROM_OUTPUT` gives the backward pass written in terms
of the output ``y = f(x)``: ``(y, grad_output) -> grad_input``, so a layer that kept its output
need not evaluate ``f`` again (nor build softmax's Jacobian).
"""

from array_api_compat import device

from .backend import is_array, kernels, namespace, softmax, softmax_vjp
from .errors import InputError


def identity(x):
    return x


def identity_prime(x):
    return namespace(x).ones_like(x)


def tanh(x):
    return namespace(x).tanh(x)


def tanh_prime(x):
    return tanh_prime_from_output(namespace(x).tanh(x))


def tanh_prime_from_output(y):
    return 1.0 - y * y


def sigmoid(x):
    """Logistic function, computed as 0.5 * (1 + tanh(x / 2)) so it never overflows."""
    return 0.5 * (1.0 + namespace(x).tanh(0.5 * x))


def sigmoid_prime(x):
    return sigmoid_prime_from_output(sigmoid(x))


def sigmoid_prime_from_output(y):
    return y * (1.0 - y)


def relu(x):
    return namespace(x).clip(x, 0.0, None)  # one operation on every backend


def relu_prime(x):
    xp = namespace(x)
    return xp.astype(x > 0, x.dtype)


LEAKY_SLOPE = 0.01  # leaky ReLU's slope for negative inputs


def leaky_relu(x, alpha=LEAKY_SLOPE):
    return namespace(x).where(x > 0, x, alpha * x)


def leaky_relu_prime(x, alpha=LEAKY_SLOPE):
    xp = namespace(x)
    return xp.where(x > 0, xp.ones_like(x), xp.full_like(x, alpha))


def gelu(x):
    """GELU in its tanh approximation, ``0.5 x (1 + tanh(C (x + K x^3)))`` (as GPT-2 and
    PyTorch's ``nn.GELU(approximate="tanh")``): the exact form needs erf, which the array API
    does not have. The two differ by less than 1e-3. The value alone, by the portable GELU
    kernel, which makes the slope only when its backward pass is called (NumPy's native one
    makes it with the value, for training)."""
    return kernels.portable_gelu(x)[0]


def gelu_prime(x):
    return gelu_with_backward(x)[1](namespace(x).ones_like(x))


def gelu_with_backward(x):
    """``(gelu(x), backward)``, ``backward(grad) -> grad * gelu_prime(x)`` (the backend's GELU
    kernel)."""
    return kernels.gelu(x)


def silu(x):
    """SiLU (swish): ``x * sigmoid(x)``."""
    return x * sigmoid(x)


def silu_prime(x):
    return silu_with_prime(x)[1]


def silu_with_prime(x):
    """``(silu(x), silu_prime(x))`` from one sigmoid: ``s (1 + x (1 - s))`` is the slope."""
    s = sigmoid(x)
    y = x * s
    slope = x - y
    slope += 1.0
    slope *= s
    return y, slope


def silu_with_backward(x):
    """``(silu(x), backward)``, ``backward(grad) -> grad * silu_prime(x)``."""
    y, slope = silu_with_prime(x)
    return y, lambda grad: grad * slope


def softmax_prime(x):
    """Jacobian of :func:`softmax`, shape ``x.shape + (n,)``: diag(s) - s s^T per row."""
    return softmax_prime_from_output(softmax(x))


def softmax_prime_from_output(s):
    xp = namespace(s)
    eye = xp.eye(s.shape[-1], dtype=s.dtype, device=device(s))
    return xp.expand_dims(s, axis=-1) * (eye - xp.expand_dims(s, axis=-2))


ACTIVATIONS = {
    "identity": (identity, identity_prime),
    "tanh": (tanh, tanh_prime),
    "sigmoid": (sigmoid, sigmoid_prime),
    "relu": (relu, relu_prime),
    "leaky_relu": (leaky_relu, leaky_relu_prime),
    "softmax": (softmax, softmax_prime),
    "gelu": (gelu, gelu_prime),
    "silu": (silu, silu_prime),
}

# Built-in activations whose derivative shares work with their value: a training forward
# returns the value and the backward pass, ``(value, backward)``, ``backward(grad) -> grad_x``.
WITH_BACKWARD = {"gelu": gelu_with_backward, "silu": silu_with_backward}

# The backward pass of each built-in activation from its output y = f(x) and the gradient g of
# its output, for those whose derivative the output determines (not GELU and SiLU, which are
# not monotonic). ReLU and leaky ReLU are positive exactly where their input is.
GRADIENTS_FROM_OUTPUT = {
    "identity": lambda y, g: g,
    "tanh": lambda y, g: g * tanh_prime_from_output(y),
    "sigmoid": lambda y, g: g * sigmoid_prime_from_output(y),
    "relu": kernels.relu_backward,  # one pass on torch (ATen's threshold_backward)
    "leaky_relu": lambda y, g: namespace(g).where(y > 0, g, LEAKY_SLOPE * g),
    "softmax": softmax_vjp,
}


def call_user_function(function, *arrays):
    """``function(*arrays)`` for a function the user wrote (an activation, a loss): a portanet
    error naming it when it fails on these arrays' library, or returns another library's arrays
    (NumPy calls on torch or JAX arrays), instead of a deep TypeError or a silent copy."""
    xp = namespace(arrays[-1])
    library = type(arrays[-1]).__module__.split(".")[0]
    name = getattr(function, "__name__", repr(function))
    advice = ("write it with portanet.numpy (import portanet.numpy as np) or with the namespace "
              "of its arguments, so it runs on every backend")
    try:
        result = function(*arrays)
    except (TypeError, AttributeError, RuntimeError) as exc:  # what foreign arrays raise
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise InputError(f"your function {name} failed on {library} arrays "
                         f"({type(exc).__name__}: {detail}): {advice}") from exc
    for value in result if isinstance(result, tuple) else (result,):
        if is_array(value) and namespace(value) is not xp:
            raise InputError(f"your function {name} returned a {type(value).__name__} for "
                             f"{library} arrays: {advice}")
    return result
