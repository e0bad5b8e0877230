"""Optimizers: parameter updates (``new = old - step``), applied after each backward pass.

An optimizer updates whole flat buffers (:class:`portanet.parameters.ParameterLayout`: one per
dtype, every parameter a piece of it), so an eager step costs a handful of array passes for the
whole network (compiled steps give it one array per parameter; the compiler fuses those).
:meth:`Optimizer.apply` takes parameters, gradients, state and the step's scalars (learning
rate, bias corrections) and returns the new parameters and state. It *consumes* the
parameters, gradients and state it is given: the updates are written with in-place operators, so
on backends whose arrays are mutable (NumPy, torch, CuPy, array-api-strict) they overwrite those
buffers (as a plain training loop does, and as ``jax.jit`` does with donated buffers), while on
JAX the same operators make new arrays. The same code runs eagerly and inside a compiled step.

An optimizer's state (velocities, moments, the step count) belongs to the parameters it was made
for: using one optimizer object for a second network raises :class:`InputError` (make one per
network, or call :meth:`Optimizer.reset`).

Every optimizer takes ``schedule``: a callable ``schedule(iteration) -> learning rate`` (the
iteration counts steps from 0), such as :func:`step_decay`, :func:`exponential_decay` or
:func:`cosine_decay`; and ``clip_norm``: when set, the gradients are scaled down, all together,
so that their global norm (over every parameter) is at most ``clip_norm``.
"""

import functools
import math

from array_api_compat import device

from ._checks import fraction, integer, non_negative, number, positive
from .backend import namespace
from .errors import InputError
from .layers.parameters import ParameterLayout


# -- learning-rate schedules ------------------------------------------------------------------
def step_decay(initial, drop, every):
    """``initial * drop ** (iteration // every)``: the rate times ``drop`` every ``every`` steps."""
    initial = positive("initial", initial)
    drop = number("drop", drop, lambda v: 0 < v <= 1, "a number in (0, 1]")
    every = integer("every", every)
    return functools.partial(_step_decay, initial, drop, every)


def _step_decay(initial, drop, every, iteration):
    return initial * drop ** (iteration // every)


def exponential_decay(initial, rate, steps):
    """``initial * rate ** (iteration / steps)``: the rate times ``rate`` per ``steps`` steps."""
    initial = positive("initial", initial)
    rate = number("rate", rate, lambda v: 0 < v <= 1, "a number in (0, 1]")
    steps = positive("steps", steps)
    return functools.partial(_exponential_decay, initial, rate, steps)


def _exponential_decay(initial, rate, steps, iteration):
    return initial * rate ** (iteration / steps)


def cosine_decay(initial, total_steps, final=0.0):
    """Half a cosine from ``initial`` to ``final`` over ``total_steps``, then ``final``."""
    initial = positive("initial", initial)
    total_steps = integer("total_steps", total_steps)
    final = number("final", final, lambda v: 0 <= v <= initial, f"a number in [0, {initial:g}]")

    return functools.partial(_cosine_decay, initial, total_steps, final)


def _cosine_decay(initial, total_steps, final, iteration):
    progress = min(iteration, total_steps) / total_steps
    return final + (initial - final) * 0.5 * (1 + math.cos(math.pi * progress))


# -- optimizers -------------------------------------------------------------------------------
class Optimizer:
    """Base class: the base learning rate, an optional schedule, the step counter and state.

    Subclasses say how many state buffers they keep per parameter buffer (``state_buffers``)
    and write :meth:`update` for one flat buffer.
    """

    state_buffers = 0

    def __init__(self, learning_rate=0.01, schedule=None, clip_norm=None):
        self.learning_rate = positive("learning_rate", learning_rate)
        self.clip_norm = None if clip_norm is None else positive("clip_norm", clip_norm)
        if schedule is not None and not callable(schedule):
            raise InputError(f"schedule must be a function of the iteration, got {schedule!r}")
        self.schedule = schedule
        self.reset()

    def reset(self):
        """Forget the state and the step count: the next step starts afresh."""
        self.iterations = 0
        self.state = None  # per dtype group: a tuple of ``state_buffers`` flat arrays
        self.layout = None  # the parameters the state was made for
        self.restored = None  # {(id(layer), name): (layer, arrays)}, until the next step
        # mixed_float16's dynamic loss scale, [scale, good steps, skipped steps], kept from
        # one fit to the next (see portanet.precision.LossScale); None: not used yet
        self.loss_scale = None

    def parameter_states(self):
        """``[((layer, name), arrays)]``: the state arrays (``state_buffers`` of them) of each
        parameter, however the parameters are laid out; empty before the first step."""
        if self.restored is not None:
            return list(self.restored.values())
        if self.layout is None:
            return []
        per_buffer = [self.layout.split([group[k] for group in self.state])
                      for k in range(self.state_buffers)]
        return [(slot, tuple(arrays[index] for arrays in per_buffer))
                for index, slot in enumerate(self.layout.slots)]

    def restore(self, iterations, learning_rate, states):
        """Continue from a saved point: ``iterations`` steps made, the base ``learning_rate``,
        and ``states`` as :meth:`parameter_states` gives them; the next step lays them out."""
        self.iterations = integer("iterations", iterations, low=0)
        self.learning_rate = positive("learning_rate", learning_rate)
        self.state = self.layout = None
        self.restored = {(id(layer), name): ((layer, name), tuple(arrays))
                         for (layer, name), arrays in states}

    @property
    def current_learning_rate(self):
        """The rate of the coming step: ``schedule(iterations)``, or the base learning rate;
        InputError when the schedule gives anything but a positive finite number."""
        if self.schedule is None:
            return self.learning_rate
        return positive(f"the learning rate from the schedule (iteration {self.iterations})",
                        self.schedule(self.iterations))

    def scalars(self):
        """The numbers the coming step needs, computed on the host (compiled steps take them
        as arguments, so they are traced once, not once per value)."""
        return {"learning_rate": self.current_learning_rate}

    def state_for(self, layout: ParameterLayout, flats):
        """The state for ``layout``'s parameters (zeros on first use); InputError if this
        optimizer already holds state for other parameters."""
        if self.restored is not None:
            self._lay_out_restored(layout)
        elif self.layout is None:
            self.layout = layout
            self.state = [tuple(namespace(flat).zeros_like(flat)
                                for _ in range(self.state_buffers)) for flat in flats]
        elif not self.layout.same_parameters(layout):
            raise InputError(
                f"this {type(self).__name__} optimizer holds state (step count, moments) for "
                "another network's parameters: give each network its own optimizer (a name "
                "such as 'adam', or a new object), or call optimizer.reset() to start afresh")
        elif self.layout.flat != layout.flat:  # the same parameters, eager then compiled or back
            self._set_state(layout, [layout.relaid([group[k] for group in self.state],
                                                   self.layout)
                                     for k in range(self.state_buffers)])
        return self.state

    def _lay_out_restored(self, layout):
        """The restored state (:meth:`restore`) laid out as ``layout``; InputError unless it
        holds the state of exactly ``layout``'s parameters."""
        restored, self.restored = self.restored, None
        keys = [(id(layer), name) for layer, name in layout.slots]
        if set(keys) != set(restored):
            raise InputError(f"the restored state of this {type(self).__name__} optimizer is "
                             "for other parameters than the network being trained: restore it "
                             "with the network it was saved with")
        self._set_state(layout, [layout.flatten([restored[key][1][k] for key in keys])
                                 for k in range(self.state_buffers)])

    def _set_state(self, layout, buffers):
        """Hold ``buffers`` (per state buffer, the groups of ``layout``) as the state."""
        self.state = [tuple(buffers[k][g] for k in range(self.state_buffers))
                      for g in range(len(layout.sizes))]
        self.layout = layout

    def apply(self, params, grads, state, scalars):
        """Update every group: ``(new params, new state)`` as lists per dtype group. The
        arguments are consumed (overwritten where the arrays are mutable): use the results."""
        if self.clip_norm is not None:
            grads = self._clipped(grads)
        results = [self.update(p, g, s, scalars) for p, g, s in zip(params, grads, state)]
        return [r[0] for r in results], [r[1] for r in results]

    def update(self, param, grad, state, scalars):
        """``(new param, new state tuple)`` for one flat buffer, overwriting ``param``, ``grad``
        and ``state`` where the backend's arrays are mutable."""
        raise NotImplementedError

    def _clipped(self, grads):
        """``grads`` times ``clip_norm / max(norm, clip_norm)``, ``norm`` being their global
        norm over every group: arithmetic only, no branch on values (it runs compiled)."""
        if not grads:
            return grads
        xp = namespace(grads[0])
        total = xp.sum(grads[0] * grads[0])
        for grad in grads[1:]:
            total = total + xp.astype(xp.sum(grad * grad), total.dtype)
        norm = xp.sqrt(total)
        scale = self.clip_norm / xp.maximum(norm, xp.asarray(self.clip_norm, dtype=norm.dtype,
                                                             device=device(norm)))
        return [grad * xp.astype(scale, grad.dtype) for grad in grads]

    def step(self, slots):
        """Apply one update to every ``(layer, name)`` in ``slots`` from ``layer.grads[name]``.

        The eager, one-call form of what the training loop does through :meth:`apply`.
        """
        layout = ParameterLayout(slots)
        params = layout.gather()
        grads = layout.flatten_gradients([layer.grads[name] for layer, name in slots])
        state = self.state_for(layout, params)
        params, self.state = self.apply(params, grads, state, self.scalars())
        self.iterations += 1
        layout.assign(params)

    def _with_l2(self, param, grad):
        """``grad`` plus the L2 term ``weight_decay * param`` (weight decay in the gradient)."""
        return grad + self.weight_decay * param if self.weight_decay else grad

    def config(self):
        """The constructor's arguments (but ``schedule``: a function is not saved)."""
        clip = {} if self.clip_norm is None else {"clip_norm": self.clip_norm}
        return {"learning_rate": self.learning_rate, **clip}

    def config_key(self):
        """What the update computes depends on: the type and hyperparameters (a compiled step
        made for one optimizer serves every optimizer with the same key)."""
        return (type(self), tuple(self.config().items()))

    def __repr__(self):
        args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in self.config().items())
        schedule = ", schedule=..." if self.schedule is not None else ""
        return f"{type(self).__name__}({args}{schedule})"


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


CLASSES = {kind.__name__: kind for kind in (SGD, RMSprop, Adam, AdamW)}  # saved by name
OPTIMIZERS = {
    "sgd": SGD,
    "momentum": functools.partial(SGD, momentum=0.9),
    "nesterov": functools.partial(SGD, momentum=0.9, nesterov=True),
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
}


def get(optimizer, learning_rate=None):
    """An optimizer object from an object, a name ("sgd", "adam", ...) or None (SGD).

    A name gets ``learning_rate``, or where it is None the optimizer's own default, as in Keras:
    0.01 for "sgd" (the tutorial's), "momentum" and "nesterov", 1e-3 for "rmsprop", "adam" and
    "adamw". An object keeps its own (InputError where ``learning_rate`` is given too).
    """
    rate = {} if learning_rate is None else {"learning_rate": learning_rate}
    if optimizer is None:
        return SGD(**rate)
    if isinstance(optimizer, str):
        key = optimizer.lower()
        if key not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {optimizer!r}: choose one of "
                             f"{', '.join(OPTIMIZERS)}")
        return OPTIMIZERS[key](**rate)
    if not isinstance(optimizer, Optimizer):
        raise InputError(f"optimizer must be a name or a portanet Optimizer, got {optimizer!r}")
    if learning_rate is not None:
        raise InputError(f"learning_rate={learning_rate!r} was given with the optimizer object "
                         f"{optimizer!r}, which has its own rate: give the rate to the object "
                         "(e.g. Adam(learning_rate=...)), or name the optimizer ('adam')")
    return optimizer
