"""Regularisation layers: Dropout, batch normalisation and layer normalisation."""

from .._checks import fraction, integer, number, positive
from ..backend import dtype_name, get_backend, kernels, namespace, rng
from ..errors import ShapeError
from .base import EMPTY, Layer


class Dropout(Layer):
    """Inverted dropout: in training, zeroes each value with probability ``rate`` and scales the
    rest by ``1 / (1 - rate)``; in inference (``predict``) it passes its input through.

    Masks are drawn from portanet's seeded host generator, so one seed gives the same masks on
    every backend.
    """

    def __init__(self, rate):
        super().__init__()
        self.rate = fraction("Dropout rate", rate)

    @property
    def random(self):
        return self.rate > 0

    def draw(self, input_shape):
        """The scaled keep-mask: ``1 / (1 - rate)`` where kept, 0 where dropped."""
        keep = rng().random(tuple(input_shape)) >= self.rate
        return keep / (1.0 - self.rate)

    def apply(self, state, x, run):
        mask = None
        if run.training and self.random:
            mask = run.noise()
            if mask is None:
                mask = get_backend().asarray(self.draw(x.shape), dtype_name(x))

        def backprop(grad_output, need_input=True):
            return (grad_output if mask is None else grad_output * mask), EMPTY
        return (x if mask is None else x * mask), backprop

    def config(self):
        return {"rate": self.rate}


class BatchNorm(Layer):
    """Batch normalisation of ``num_features`` features: ``gamma * (x - mean) / std + beta``.

    For 2-D batches ``(N, F)`` the statistics are over the batch axis; for 4-D NCHW batches
    ``(N, C, H, W)`` over batch, height and width, per channel (``C == num_features``). Training
    uses the batch's mean and (biased) variance and updates the running statistics as
    ``running = momentum * running + (1 - momentum) * batch_stat``; inference uses the running
    statistics. ``epsilon`` is added to the variance.
    """

    params = ("gamma", "beta")
    buffers = ("running_mean", "running_var")
    full_precision = True  # its statistics are sums: float32 under a precision policy

    def __init__(self, num_features, momentum=0.9, epsilon=1e-5, dtype="float32"):
        super().__init__()
        integer("BatchNorm num_features", num_features)
        number("BatchNorm momentum", momentum, lambda v: 0 <= v <= 1, "a number in [0, 1]")
        positive("BatchNorm epsilon", epsilon)
        self.num_features, self.momentum, self.epsilon = num_features, momentum, epsilon
        backend = get_backend()
        self.gamma = backend.zeros((num_features,), dtype) + 1.0
        self.beta = backend.zeros((num_features,), dtype)
        self.running_mean = backend.zeros((num_features,), dtype)
        self.running_var = backend.zeros((num_features,), dtype) + 1.0

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) not in (1, 3) or shape[0] != self.num_features:
            raise ShapeError(f"{self!r} expects per-sample shape ({self.num_features},) or "
                             f"({self.num_features}, height, width) (NCHW), got {shape}")
        return shape

    def _axes(self, x):
        """The axes statistics are taken over, and the shape that broadcasts a (F,) array."""
        self.output_shape(tuple(x.shape[1:]))
        if x.ndim == 2:
            return (0,), (1, self.num_features)
        return (0, 2, 3), (1, self.num_features, 1, 1)

    def apply(self, state, x, run):
        xp = namespace(x)
        axes, shape = self._axes(x)
        training = run.training
        if training:
            mean = xp.mean(x, axis=axes, keepdims=True)
            var = xp.mean((x - mean) ** 2, axis=axes, keepdims=True)
            keep, dtype = self.momentum, state["running_mean"].dtype
            state["running_mean"] = (keep * state["running_mean"]
                                     + (1 - keep) * xp.astype(xp.reshape(mean, (-1,)), dtype))
            state["running_var"] = (keep * state["running_var"]
                                    + (1 - keep) * xp.astype(xp.reshape(var, (-1,)), dtype))
        else:
            mean = xp.reshape(state["running_mean"], shape)
            var = xp.reshape(state["running_var"], shape)
        inv_std = 1.0 / xp.sqrt(var + self.epsilon)
        normalized = (x - mean) * inv_std
        gamma = xp.reshape(state["gamma"], shape)

        def backprop(grad_output, need_input=True):
            grads = {"gamma": xp.sum(grad_output * normalized, axis=axes),
                     "beta": xp.sum(grad_output, axis=axes)}
            if not need_input:
                return None, grads
            grad_normalized = grad_output * gamma
            if not training:
                return grad_normalized * inv_std, grads
            return kernels.standardized_backward(grad_normalized, normalized, inv_std, axes), grads
        return normalized * gamma + xp.reshape(state["beta"], shape), backprop

    def config(self):
        return {"num_features": self.num_features, "momentum": self.momentum,
                "epsilon": self.epsilon}


class LayerNorm(Layer):
    """Layer normalisation over the last axis (size ``dim``), for inputs of any rank:
    ``gamma * (x - mean) / sqrt(var + epsilon) + beta``, with the mean and (biased) variance of
    each position's ``dim`` values, in training and inference alike."""

    params = ("gamma", "beta")
    full_precision = True  # its statistics are sums: float32 under a precision policy

    def __init__(self, dim, epsilon=1e-5, dtype="float32"):
        super().__init__()
        integer("LayerNorm dim", dim)
        positive("LayerNorm epsilon", epsilon)
        self.dim, self.epsilon = dim, epsilon
        backend = get_backend()
        self.gamma = backend.zeros((dim,), dtype) + 1.0
        self.beta = backend.zeros((dim,), dtype)

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if not shape or shape[-1] != self.dim:
            raise ShapeError(f"{self!r} expects {self.dim} features on the last axis, got "
                             f"per-sample shape {shape}")
        return shape

    def apply(self, state, x, run):
        if x.ndim < 2 or x.shape[-1] != self.dim:
            self.output_shape(tuple(x.shape[1:]))
        out, backward = kernels.layer_norm(x, state["gamma"], state["beta"], self.epsilon)

        def backprop(grad_output, need_input=True):
            grad_input, gamma, beta = backward(grad_output, need_input)
            return grad_input, {"gamma": gamma, "beta": beta}
        return out, backprop

    def config(self):
        return {"dim": self.dim, "epsilon": self.epsilon}
