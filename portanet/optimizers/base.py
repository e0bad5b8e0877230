"""The optimizers' shared machinery: :class:`Optimizer` (the learning rate and its schedule,
the step count, the state per parameter buffer, gradient clipping, saving and restoring)."""

from array_api_compat import device

from .._checks import integer, positive
from ..backend import namespace
from ..errors import InputError
from ..layers.parameters import ParameterLayout


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
