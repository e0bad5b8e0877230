"""One training step, and the inference forward pass, as pure functions of arrays.

Layers compute pure functions of the arrays they are given (:meth:`portanet.Layer.apply`), so
the step is too: the arrays it depends on (parameters, buffers such as running statistics,
optimizer state, the batch, the step's scalars, random draws) come in as arguments and the new
ones go out as results, and nothing is written on a layer. A compiler (``jax.jit``) traces it
once per batch shape; threads may run it at once. Run eagerly, the optimizer overwrites the
parameter and state buffers it is given where arrays are mutable (as ``jax.jit`` reuses donated
buffers), so callers always continue from the results.
"""

from __future__ import annotations

from .. import losses as losses_module
from ..backend import cast, dtype_name, get_backend, namespace, take_rows, writes_into
from ..errors import InputError
from ..layers.base import (
    EMPTY,
    WEIGHTS_LOCK,
    Pass,
    first_to_learn,
    is_native,
    unique,
    walk,
    walk_shapes,
    weight_names,
)
from ..layers.parameters import ParameterLayout
from ..metrics import accuracy
from ..precision import LossScale


def slots(layers, names=weight_names):
    """``(layer, name)`` for each of ``names(layer)`` of every layer (a layer used at several
    places once); by default every parameter and buffer."""
    return [(layer, name) for layer in unique(walk(layers)) if is_native(layer)
            for name in names(layer)]


def parameter_slots(layers):
    """``(layer, name)`` of every parameter the optimizer updates."""
    return slots(layers, lambda layer: layer.params)


def buffer_slots(layers):
    """``(layer, name)`` of every buffer (state that is not trained, e.g. running statistics)."""
    return slots(layers, lambda layer: layer.buffers)


def keyed(slots):
    """``slots`` as ``(id(layer), name)``: how a :class:`Pass` finds each layer's arrays."""
    return [(id(layer), name) for layer, name in slots]


def states(keys, *values):
    """``{id(layer): {name: array}}`` for :class:`Pass` from ``keys`` (see :func:`keyed`) and
    the arrays of each group of ``values``, in key order."""
    found = {}
    for group_keys, arrays in zip(keys, values):
        for (key, name), array in zip(group_keys, arrays):
            found.setdefault(key, {})[name] = array
    return found


class TrainStep:
    """The training step of ``network`` with ``optimizer``, as pure functions.

    - :meth:`gradients` ``(params, buffers, batch, share, noise) -> (grads, buffers,
      sums)``: forward, loss and backward on one batch (see :class:`Batches`); ``sums`` is the
      batch's summed loss, or ``[summed loss, correct samples]`` with ``accuracy``. ``share``
      (or None) scales the loss gradient: a part of the whole batch (an MPI rank's, a thread's).
      ``noise`` holds the random draws of the layers, in the order they run (dropout masks),
      made on the host by :meth:`draw`.
    - :meth:`update` ``(params, grads, optimizer_state, scalars) -> (params, optimizer_state)``.
    - :meth:`whole`: both in one call, for a single process.

    ``params``/``grads`` are laid out by :attr:`layout` (flat buffers, one per dtype, unless
    ``flat=False``: one array per parameter, for compiled steps; see :class:`ParameterLayout`). The
    update consumes the parameters, gradients and optimizer state it is given (compiled: donated
    buffers; eager: overwritten in place where arrays are mutable): callers use the results.
    ``eager=True`` (steps that are not compiled) lets layers write their gradients straight
    into a flat gradient buffer the step keeps from call to call (see :class:`EagerPlaces`).
    ``traces`` counts how many times the Python body ran: every step when eager, once per batch
    shape when compiled.

    Under the network's precision policy (:mod:`portanet.precision`) the layers compute in
    its dtype (:attr:`compute`), the loss in float32 and the gradients come out float32. With
    loss scaling, ``buffers`` ends with the :class:`LossScale` state: :meth:`whole` scales
    the loss by it, skips the update where the gradients overflowed and gives the new state.
    """

    def __init__(self, network, optimizer, accuracy=False, eager=False, flat=True):
        policy = network.policy
        self.compute = None if policy is None else policy.compute
        self.loss_scaling = policy is not None and policy.loss_scaling
        self.eager, self.flat = eager and policy is None, flat  # no gradient places in 16 bits
        self.optimizer = optimizer
        self.loss_with_prime = losses_module.with_prime(network.loss, network.loss_prime)
        self.accuracy = accuracy  # sums also count the batch's correctly classified samples
        self.traces = 0
        self.layers = list(network.layers)
        self.layout = ParameterLayout(parameter_slots(self.layers), self.flat)
        self.buffers = buffer_slots(self.layers)
        self._keys = (keyed(self.layout.slots), keyed(self.buffers))
        self._places = None  # EagerPlaces of the last eager call
        self.first = first_to_learn(self.layers)  # backward goes no further down
        # Random draws are made ahead of the step, from the layers' input shapes; with
        # tutorial-style layers (shapes unknown, eager only) layers draw during forward instead.
        self.draws_ahead = all(is_native(layer) for layer in self.layers)
        self.random_layers = [layer for layer in walk(self.layers)
                              if self.draws_ahead and layer.random]

    def draw(self, sample_shape, rows, dtype):
        """This step's random draws for a batch of ``rows`` samples of ``sample_shape``,
        drawn on the host in the order the layers run and moved to the backend (in ``dtype``,
        then in the dtype of a precision policy)."""
        if not self.random_layers:
            return []
        draws = [get_backend().asarray(layer.draw((rows, *shape)), dtype)
                 for layer, _, shape in walk_shapes(self.layers, tuple(sample_shape))
                 if layer.random]
        return draws if self.compute is None else [cast(d, self.compute) for d in draws]

    def gradients(self, params, buffers, batch, share, noise):
        self.traces += 1
        return self.part_gradients(params, buffers, batch, share, noise,
                                   self._eager_places(params) if self.eager else None)

    def part_gradients(self, params, buffers, batch, share, noise, places=None):
        """:meth:`gradients` without counting a trace, and without ``places`` (an
        :class:`EagerPlaces`) new gradient arrays: what threads computing parts of one batch
        run at once (see :mod:`portanet.training.threads`)."""
        x, y = select(batch)
        pieces = self.layout.split(params) if places is None else places.pieces
        run = Pass(states(self._keys, pieces, buffers), True,
                   noise if self.draws_ahead else None,
                   EMPTY if places is None else places.places, self.optimizer.learning_rate,
                   self.compute)
        out, backprop = run.chain(self.layers, x, self.first)
        if self.compute is not None:
            out = cast(out, "float32")  # the loss and its sums in float32
        loss, grad = self.loss_with_prime(y, out)
        if share is not None:
            grad = grad * share
        backprop(grad if self.compute is None else cast(grad, self.compute), need_input=False)
        grads = self._gradients_of(run, pieces)
        grads = (self.layout.flatten_gradients(grads) if places is None
                 else places.gathered(grads))
        new_buffers = [run.states[key][name] for key, name in self._keys[1]]
        new_buffers += buffers[len(new_buffers):]  # the loss scale's state, passed on
        sums = loss * x.shape[0]
        if self.accuracy:
            xp = namespace(out)
            sums = xp.stack([sums, xp.astype(accuracy(y, out), sums.dtype) * x.shape[0]])
        return grads, new_buffers, sums

    def _gradients_of(self, run, params):
        """Each slot's gradient from the pass ``run``, in the dtype of its parameter (one of
        ``params``, one per slot); InputError naming a parameter that its layer left no
        gradient for."""
        grads = []
        for (key, name), (layer, _), param in zip(self._keys[0], self.layout.slots, params):
            grad = run.grads.get(key, EMPTY).get(name)
            if grad is None:
                raise InputError(f"{layer!r} left no gradient for its parameter {name!r}: its "
                                 "backward must give one for every name in params")
            grads.append(grad if self.compute is None else cast(grad, dtype_name(param)))
        return grads

    def _eager_places(self, params):
        """The :class:`EagerPlaces` of ``params``, made again only when they are other buffers
        than the last call's (eager steps update them in place where arrays are mutable)."""
        places = self._places
        if places is None or len(places.params) != len(params) or any(
                a is not b for a, b in zip(places.params, params)):
            places = self._places = EagerPlaces(self.layout, params, self.layers)
        return places

    def update(self, params, grads, optimizer_state, scalars):
        self.traces += 1
        return self.optimizer.apply(params, grads, optimizer_state, scalars)

    def whole(self, params, buffers, optimizer_state, total, batch, scalars, noise,
              gradients=None):
        """``(params, buffers, optimizer_state, total + the batch's sums)`` after one step on
        ``batch``, its gradients from ``gradients`` (default :meth:`gradients`). With loss
        scaling the loss is scaled by the last buffer's scale, and an update whose gradients
        overflowed is skipped (see :class:`LossScale`)."""
        scale = buffers[-1] if self.loss_scaling else None
        grads, buffers, sums = (gradients or self.gradients)(
            params, buffers, batch, None if scale is None else scale[0], noise)
        self.traces -= 1  # one step, one trace
        if scale is not None:
            grads, finite = LossScale.unscaled(grads, scale)
            kept = copies(params), [copies(group) for group in optimizer_state]
        params, optimizer_state = self.update(params, grads, optimizer_state, scalars)
        if scale is not None:
            params, optimizer_state = LossScale.chosen(finite, (params, optimizer_state), kept)
            buffers = [*buffers[:-1], LossScale.next(scale, finite)]
        return params, buffers, optimizer_state, total + sums


class EagerPlaces:
    """Where an eager step's arrays live, for parameters ``params`` laid out by ``layout``:
    each parameter's piece of them (:attr:`pieces`) and, on backends whose layers can write
    into arrays (:func:`portanet.backend.writes_into`), a flat gradient buffer of the same
    layout whose pieces the layers are offered (:attr:`places`, for :meth:`Pass.place`), so
    the gradients need no gathering copy. A layer used at several places of ``layers`` is
    offered none: its gradients are summed."""

    def __init__(self, layout, params, layers):
        self.params = list(params)
        self.pieces = layout.split(params)
        self.layout = layout
        in_place = bool(layout.flat and params and writes_into(params[0]))
        self.grad_buffers = [namespace(p).zeros_like(p) for p in params] if in_place else []
        self.grad_pieces = layout.split(self.grad_buffers) if in_place else []
        uses = {}
        for layer in walk(layers):
            uses[id(layer)] = uses.get(id(layer), 0) + 1
        self.places = {}
        for (layer, name), piece in zip(layout.slots, self.grad_pieces):
            if uses[id(layer)] == 1:
                self.places.setdefault(id(layer), {})[name] = piece

    def gathered(self, grads):
        """The flat gradient buffers holding ``grads`` (one per slot): only the gradients that
        a layer did not write into its place are copied there."""
        if not self.grad_buffers:
            return self.layout.flatten_gradients(grads)
        for index, (grad, piece) in enumerate(zip(grads, self.grad_pieces)):
            if grad is not piece:
                self.layout.check_gradient(index, grad)
                piece[...] = grad
        return list(self.grad_buffers)


class Batches:
    """How the loop hands batches of rows of ``(x, y)`` to the step.

    Eager steps get the rows themselves (slices, or ``take`` in the epoch's order). Compiled
    steps (``indexed``) get the whole data set, the epoch's order, the offsets ``0..size-1`` and
    where the batch starts, and take the rows inside: nothing runs outside the compiled step
    per batch, and it is traced once per batch size. :func:`select` turns either into rows.
    """

    def __init__(self, x, y, indexed):
        self.x, self.y, self.indexed = x, y, indexed
        self.order = None
        self._offsets = {}

    def start_epoch(self, order):
        """Use ``order`` (a backend index array, or None for the data's own order)."""
        if order is None and self.indexed:
            order = self._arange(self.x.shape[0])
        self.order = order

    def __call__(self, lo, hi):
        """The batch of rows ``lo:hi`` of the epoch's order."""
        if self.indexed:
            return self.x, self.y, self.order, self._arange(hi - lo), lo
        if self.order is None:
            return self.x[lo:hi, ...], self.y[lo:hi, ...]
        rows = self.order[lo:hi]
        return take_rows(self.x, rows), take_rows(self.y, rows)

    def _arange(self, size):
        if size not in self._offsets:
            self._offsets[size] = get_backend().asarray(range(size), dtype=None)
        return self._offsets[size]


def select(batch):
    """``(x, y)`` rows of a batch made by :class:`Batches`."""
    if len(batch) == 2:
        return batch
    x, y, order, offsets, start = batch
    xp = namespace(x)
    rows = xp.take(order, offsets + start)
    return take_rows(x, rows), take_rows(y, rows)


def copies(arrays):
    """Copies of ``arrays`` (a list or tuple), of the same kind."""
    return type(arrays)(namespace(array).asarray(array, copy=True) for array in arrays)


def zeros_like_all(arrays):
    """Zeros shaped like each of ``arrays``."""
    return [namespace(array).zeros_like(array) for array in arrays]


class Inference:
    """The inference forward pass of ``layers`` as a pure function
    ``(weights, x) -> output``, ``weights`` being every parameter and buffer in layer order
    (:meth:`weights` reads them from the layers). Under a precision ``policy`` the layers
    compute in its dtype and the output is float32."""

    def __init__(self, layers, policy=None):
        self.layers = list(layers)
        self.compute = None if policy is None else policy.compute
        self.slots = slots(self.layers)
        self._keys = keyed(self.slots)
        self.traces = 0

    def weights(self):
        """The layers' weights now: those of one completed training step, never a mix (see
        :data:`portanet.layers.base.WEIGHTS_LOCK`)."""
        with WEIGHTS_LOCK:
            return [getattr(layer, name) for layer, name in self.slots]

    def __call__(self, weights, x):
        self.traces += 1
        out = Pass(states([self._keys], weights), compute=self.compute).output(self.layers, x)
        return out if self.compute is None else cast(out, "float32")
