"""The optimization algorithms: :class:`SGD` (with momentum and Nesterov), :class:`RMSprop`,
:class:`Adam` and :class:`AdamW`, each an update of one flat buffer."""

import math

from .._checks import fraction, non_negative, positive
from ..backend import namespace
from ..errors import InputError
from .base import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum, Nesterov momentum and L2 decay.

    As in PyTorch: ``g = grad + weight_decay * param``, ``v = momentum * v + g`` and the step
    is ``g + momentum * v`` with Nesterov, ``v`` otherwise (``g`` without momentum).
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0,
                 schedule=None, clip_norm=None):
        self.momentum = fraction("momentum", momentum)
        if nesterov and self.momentum == 0:
            raise InputError("nesterov=True needs a momentum > 0")
        self.nesterov = bool(nesterov)
        self.weight_decay = non_negative("weight_decay", weight_decay)
        self.state_buffers = 1 if self.momentum else 0
        super().__init__(learning_rate, schedule, clip_norm)

    def update(self, param, grad, state, scalars):
        grad = self._with_l2(param, grad)
        if not self.momentum:
            grad *= scalars["learning_rate"]  # the gradient is consumed: no temporary
            param -= grad
            return param, state
        velocity = state[0]
        velocity *= self.momentum
        velocity += grad
        velocity = _without_subnormals(velocity)
        step = grad + self.momentum * velocity if self.nesterov else velocity
        param -= scalars["learning_rate"] * step
        return param, (velocity,)

    def config(self):
        return {**super().config(), "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}


class RMSprop(Optimizer):
    """RMSprop: ``s = rho * s + (1 - rho) * g**2``, step ``g / (sqrt(s) + epsilon)``; L2 decay."""

    state_buffers = 1

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-7, weight_decay=0.0,
                 schedule=None, clip_norm=None):
        super().__init__(learning_rate, schedule, clip_norm)
        self.rho = fraction("rho", rho)
        self.epsilon = positive("epsilon", epsilon)
        self.weight_decay = non_negative("weight_decay", weight_decay)

    def update(self, param, grad, state, scalars):
        grad = self._with_l2(param, grad)
        square = state[0]
        square *= self.rho
        square += (1 - self.rho) * grad * grad
        square = _without_subnormals(square)
        denominator = namespace(square).sqrt(square)
        denominator += self.epsilon
        step = grad / denominator
        step *= scalars["learning_rate"]
        param -= step
        return param, (square,)

    def config(self):
        return {**super().config(), "rho": self.rho, "epsilon": self.epsilon,
                "weight_decay": self.weight_decay}


def _without_subnormals(moment):
    """``moment`` (an optimizer's running average) with its subnormal values made 0 or normal,
    in place where arrays are mutable.

    A running average decays toward 0 where the gradient stays 0 (the weights of a dead ReLU
    unit: Adam's first moment shrinks by ``beta_1`` a step, momentum's velocity by
    ``momentum``) and turns subnormal, and arithmetic on subnormal numbers is many times slower
    on Intel CPUs: the modern MLP's epoch grew from 1.1 s to 2.6 s
    over four epochs as half its first moment went subnormal. Adding and taking away ``shift``
    (``2**-102`` in float32) rounds values of its order to multiples of the smallest normal
    number: subnormal ones to 0 or to plus or minus that number, and values above ``2**-78``
    (float32) not at all; nothing that matters to ``m / (sqrt(v) + eps)``."""
    info = namespace(moment).finfo(moment.dtype)
    shift = 2 * info.smallest_normal / info.eps
    moment += shift
    moment -= shift
    return moment


class Adam(Optimizer):
    """Adam with bias-corrected moments (Kingma & Ba); ``weight_decay`` is L2 in the gradient."""

    state_buffers = 2

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=0.0, schedule=None, clip_norm=None):
        super().__init__(learning_rate, schedule, clip_norm)
        self.beta_1 = fraction("beta_1", beta_1)
        self.beta_2 = fraction("beta_2", beta_2)
        self.epsilon = positive("epsilon", epsilon)
        self.weight_decay = non_negative("weight_decay", weight_decay)

    def scalars(self):
        """Adds the bias corrections of step ``t``: ``scale = sqrt(1 - beta_2**t) /
        (1 - beta_1**t)`` and ``epsilon_hat = epsilon * sqrt(1 - beta_2**t)``."""
        t = self.iterations + 1
        correction = math.sqrt(1 - self.beta_2 ** t)
        return {**super().scalars(), "scale": correction / (1 - self.beta_1 ** t),
                "epsilon_hat": self.epsilon * correction}

    def update(self, param, grad, state, scalars):
        grad = self._with_l2(param, grad)
        direction, state = self._moments(grad, state, scalars)
        direction *= scalars["learning_rate"] * scalars["scale"]
        param -= direction
        return param, state

    def _moments(self, grad, state, scalars):
        """New moments and the direction ``m / (sqrt(v) + epsilon_hat)``.

        ``scale * direction`` is ``m_hat / (sqrt(v_hat) + epsilon)`` with the bias corrections
        moved into the two scalars (fewer passes over the arrays).
        """
        first, second = state
        # moment += (1 - beta) * (new value - moment), in place where arrays are mutable
        change = grad - first
        change *= 1 - self.beta_1
        first += change
        first = _without_subnormals(first)
        change = grad * grad
        change -= second
        change *= 1 - self.beta_2
        second += change
        second = _without_subnormals(second)
        denominator = namespace(second).sqrt(second)
        denominator += scalars["epsilon_hat"]
        return first / denominator, (first, second)

    def config(self):
        return {**super().config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "weight_decay": self.weight_decay}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``param - lr * wd * param``."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=0.01, schedule=None, clip_norm=None):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, schedule,
                         clip_norm)

    def update(self, param, grad, state, scalars):
        direction, state = self._moments(grad, state, scalars)
        direction *= scalars["scale"]
        if self.weight_decay:
            direction += self.weight_decay * param
        direction *= scalars["learning_rate"]
        param -= direction
        return param, state
