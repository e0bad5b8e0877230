"""Optimizers: pure parameter updates (``new = old - step``), applied after each backward pass.

No array is changed in place, so the same code runs on JAX. ``step(slots)`` updates every
``(layer, name)`` slot from ``layer.grads[name]``; per-slot state (velocities, moments) lives in
the optimizer, keyed by the slot's position, and is replaced, never mutated.

Every optimizer takes ``schedule``: a callable ``schedule(iteration) -> learning rate`` (the
iteration counts steps from 0), such as :func:`step_decay`, :func:`exponential_decay` or
:func:`cosine_decay`.
"""

import functools
import math
import numbers

from .backend import namespace
from .errors import InputError


def _number(name, value, valid, rule):
    """``value`` as a float; InputError unless it is a finite real number with ``valid(value)``."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or not valid(float(value))):
        raise InputError(f"{name} must be {rule}, got {value!r}")
    return float(value)


def _positive(name, value):
    return _number(name, value, lambda v: v > 0, "a positive number")


def _fraction(name, value):
    return _number(name, value, lambda v: 0 <= v < 1, "a number in [0, 1)")


def _non_negative(name, value):
    return _number(name, value, lambda v: v >= 0, "a number >= 0")


def _count(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


# -- learning-rate schedules ------------------------------------------------------------------
def step_decay(initial, drop, every):
    """``initial * drop ** (iteration // every)``: the rate times ``drop`` every ``every`` steps."""
    initial = _positive("initial", initial)
    drop = _number("drop", drop, lambda v: 0 < v <= 1, "a number in (0, 1]")
    every = _count("every", every)
    return lambda iteration: initial * drop ** (iteration // every)


def exponential_decay(initial, rate, steps):
    """``initial * rate ** (iteration / steps)``: the rate times ``rate`` per ``steps`` steps."""
    initial = _positive("initial", initial)
    rate = _number("rate", rate, lambda v: 0 < v <= 1, "a number in (0, 1]")
    steps = _positive("steps", steps)
    return lambda iteration: initial * rate ** (iteration / steps)


def cosine_decay(initial, total_steps, final=0.0):
    """Half a cosine from ``initial`` to ``final`` over ``total_steps``, then ``final``."""
    initial = _positive("initial", initial)
    total_steps = _count("total_steps", total_steps)
    final = _number("final", final, lambda v: 0 <= v <= initial, f"a number in [0, {initial:g}]")

    def schedule(iteration):
        progress = min(iteration, total_steps) / total_steps
        return final + (initial - final) * 0.5 * (1 + math.cos(math.pi * progress))

    return schedule


# -- optimizers -------------------------------------------------------------------------------
class Optimizer:
    """Base class: the base learning rate, an optional schedule, the step counter and state."""

    def __init__(self, learning_rate=0.01, schedule=None):
        self.learning_rate = _positive("learning_rate", learning_rate)
        if schedule is not None and not callable(schedule):
            raise InputError(f"schedule must be a function of the iteration, got {schedule!r}")
        self.schedule = schedule
        self.iterations = 0
        self.state = {}

    @property
    def current_learning_rate(self):
        """The rate of the coming step: ``schedule(iterations)``, or the base learning rate."""
        if self.schedule is None:
            return self.learning_rate
        return float(self.schedule(self.iterations))

    def step(self, slots):
        """Apply one update to every ``(layer, name)`` in ``slots``."""
        for key, (layer, name) in enumerate(slots):
            setattr(layer, name, self.update(key, getattr(layer, name), layer.grads[name]))
        self.iterations += 1

    def update(self, key, param, grad):
        """The new value of one parameter (slot ``key``)."""
        raise NotImplementedError

    def _state(self, key, param, count):
        """Slot ``key``'s ``count`` state arrays: zeros like ``param`` before its first update."""
        if key not in self.state:
            self.state[key] = (namespace(param).zeros_like(param),) * count
        return self.state[key]

    def _with_l2(self, param, grad):
        """``grad`` plus the L2 term ``weight_decay * param`` (weight decay in the gradient)."""
        return grad + self.weight_decay * param if self.weight_decay else grad

    def _config(self):
        return {"learning_rate": self.learning_rate}

    def __repr__(self):
        args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in self._config().items())
        schedule = ", schedule=..." if self.schedule is not None else ""
        return f"{type(self).__name__}({args}{schedule})"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum, Nesterov momentum and L2 decay.

    As in PyTorch: ``g = grad + weight_decay * param``, ``v = momentum * v + g`` and the step
    is ``g + momentum * v`` with Nesterov, ``v`` otherwise (``g`` without momentum).
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0,
                 schedule=None):
        super().__init__(learning_rate, schedule)
        self.momentum = _fraction("momentum", momentum)
        if nesterov and self.momentum == 0:
            raise InputError("nesterov=True needs a momentum > 0")
        self.nesterov = bool(nesterov)
        self.weight_decay = _non_negative("weight_decay", weight_decay)

    def update(self, key, param, grad):
        grad = self._with_l2(param, grad)
        step = grad
        if self.momentum:
            (velocity,) = self._state(key, param, 1)
            velocity = self.momentum * velocity + grad
            self.state[key] = (velocity,)
            step = grad + self.momentum * velocity if self.nesterov else velocity
        return param - self.current_learning_rate * step

    def _config(self):
        return {**super()._config(), "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}


class RMSprop(Optimizer):
    """RMSprop: ``s = rho * s + (1 - rho) * g**2``, step ``g / (sqrt(s) + epsilon)``; L2 decay."""

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-7, weight_decay=0.0,
                 schedule=None):
        super().__init__(learning_rate, schedule)
        self.rho = _fraction("rho", rho)
        self.epsilon = _positive("epsilon", epsilon)
        self.weight_decay = _non_negative("weight_decay", weight_decay)

    def update(self, key, param, grad):
        grad = self._with_l2(param, grad)
        (square,) = self._state(key, param, 1)
        square = self.rho * square + (1 - self.rho) * grad * grad
        self.state[key] = (square,)
        step = grad / (namespace(square).sqrt(square) + self.epsilon)
        return param - self.current_learning_rate * step

    def _config(self):
        return {**super()._config(), "rho": self.rho, "epsilon": self.epsilon,
                "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam with bias-corrected moments (Kingma & Ba); ``weight_decay`` is L2 in the gradient."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=0.0, schedule=None):
        super().__init__(learning_rate, schedule)
        self.beta_1 = _fraction("beta_1", beta_1)
        self.beta_2 = _fraction("beta_2", beta_2)
        self.epsilon = _positive("epsilon", epsilon)
        self.weight_decay = _non_negative("weight_decay", weight_decay)

    def update(self, key, param, grad):
        grad = self._with_l2(param, grad)
        direction, scale = self._adam_step(key, param, grad)
        return param - (self.current_learning_rate * scale) * direction

    def _adam_step(self, key, param, grad):
        """Update slot ``key``'s moments with ``grad``; return ``(direction, scale)``.

        ``scale * direction`` is ``m_hat / (sqrt(v_hat) + eps)``, rearranged so that the bias
        corrections are Python numbers: ``m / (sqrt(v) + eps * c2)`` times ``c2 / c1``, with
        ``c1 = 1 - beta_1**t`` and ``c2 = sqrt(1 - beta_2**t)`` (fewer passes over the arrays).
        """
        t = self.iterations + 1
        old_first, old_second = self._state(key, param, 2)
        # moment + (1 - beta) * (new value - moment); the in-place operators only change arrays
        # made here, saving temporaries (JAX makes new arrays for them instead)
        first = grad - old_first
        first *= 1 - self.beta_1
        first += old_first
        second = grad * grad
        second -= old_second
        second *= 1 - self.beta_2
        second += old_second
        self.state[key] = (first, second)
        correction = math.sqrt(1 - self.beta_2 ** t)
        denominator = namespace(second).sqrt(second)
        denominator += self.epsilon * correction
        return first / denominator, correction / (1 - self.beta_1 ** t)

    def _config(self):
        return {**super()._config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "weight_decay": self.weight_decay}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``param - lr * wd * param``."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=0.01, schedule=None):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, schedule)

    def update(self, key, param, grad):
        direction, scale = self._adam_step(key, param, grad)
        step = scale * direction
        if self.weight_decay:
            step = step + self.weight_decay * param
        return param - self.current_learning_rate * step


OPTIMIZERS = {
    "sgd": SGD,
    "momentum": functools.partial(SGD, momentum=0.9),
    "nesterov": functools.partial(SGD, momentum=0.9, nesterov=True),
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
}


def get(optimizer, learning_rate=0.01):
    """An optimizer object from an object, a name ("sgd", "adam", ...) or None (SGD).

    A name gets ``learning_rate``; an object keeps its own.
    """
    if optimizer is None:
        return SGD(learning_rate)
    if isinstance(optimizer, str):
        key = optimizer.lower()
        if key not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {optimizer!r}: choose one of "
                             f"{', '.join(OPTIMIZERS)}")
        return OPTIMIZERS[key](learning_rate)
    if not isinstance(optimizer, Optimizer):
        raise InputError(f"optimizer must be a name or a portanet Optimizer, got {optimizer!r}")
    return optimizer
