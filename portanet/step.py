"""One training step, and the inference forward pass, as pure functions of arrays.

Layers keep their one ``forward``/``backward``, which read parameters from the layer and leave
gradients on it. :class:`TrainStep` turns them into pure functions: the arrays a step depends on
(flat parameter buffers, buffers such as running statistics, optimizer state, the batch, the
step's scalars, random draws) come in as arguments and the new ones go out as results. Inside,
the arrays are given to the layers for the duration of the call and every layer's attributes are
put back afterwards, so no call leaves anything behind on a layer, and a compiler (``jax.jit``)
can trace the function once per batch shape. The same functions run eagerly on every backend;
there the optimizer overwrites the parameter and state buffers it is given where arrays are
mutable (as ``jax.jit`` reuses donated buffers), so callers always continue from the results.
"""

from __future__ import annotations

import contextlib
import copy
import functools

from . import losses as losses_module
from .backend import get_backend, namespace, take_rows, writes_into
from .layers.base import is_native, trainable, walk, walk_shapes
from .metrics import accuracy
from .parameters import ParameterLayout


def forward(layers, x, training):
    """Run ``x`` through ``layers`` (tutorial-style layers through forward_propagation)."""
    for layer in layers:
        x = layer.forward(x, training) if is_native(layer) else layer.forward_propagation(x)
    return x


def backward_chain(layers, learning_rate):
    """Backpropagation as calls ``grad -> grad``, from the last layer down to the first one
    with something to learn.

    Layers before that one have no parameters, so nothing needs their gradients, and it computes
    only its parameter gradients. Layers in the tutorial's style update themselves at
    ``learning_rate``.
    """
    first = next((index for index, layer in enumerate(layers)
                  if not is_native(layer) or trainable(layer)), len(layers))
    steps = []
    for index in range(len(layers) - 1, first - 1, -1):
        layer = layers[index]
        if not is_native(layer):
            steps.append(functools.partial(layer.backward_propagation,
                                           learning_rate=learning_rate))
        else:
            steps.append(layer.backward_params if index == first else layer.backward)
    return steps


PLAIN = (bool, int, float, str)  # attribute values a step may leave on a layer


@contextlib.contextmanager
def lent(layers, values):
    """Set ``(layer, name) -> value`` on the layers for the block; afterwards every native layer
    of ``layers`` has the arrays (and other objects) it had before: nothing the call computed
    stays behind on a layer (under a compiler those would be tracers). Plain Python values
    (numbers, strings: counters, flags) that the layers set are kept."""
    saved = [(layer, dict(vars(layer))) for layer in walk(layers) if is_native(layer)]
    try:
        for (layer, name), value in values:
            setattr(layer, name, value)
        yield
    finally:
        for layer, attributes in saved:
            kept = {name: value for name, value in vars(layer).items()
                    if isinstance(value, PLAIN)}
            vars(layer).clear()
            vars(layer).update(attributes)
            vars(layer).update(kept)


def given(values):
    """Set ``(layer, name) -> value`` on the layers, and leave them (and whatever the block
    stores on the layers) there: the cheap form of :func:`lent` for eager steps."""
    for (layer, name), value in values:
        setattr(layer, name, value)
    return contextlib.nullcontext()


def parameter_slots(layers):
    """``(layer, name)`` of every parameter the optimizer updates."""
    return [(layer, name) for layer in walk(layers) if is_native(layer) for name in layer.params]


def buffer_slots(layers):
    """``(layer, name)`` of every buffer (state that is not trained, e.g. running statistics)."""
    return [(layer, name) for layer in walk(layers) if is_native(layer)
            for name in layer.buffers]


class TrainStep:
    """The training step of ``network`` with ``optimizer``, as pure functions.

    - :meth:`gradients` ``(params, buffers, batch, share, noise) -> (grads, buffers,
      sums)``: forward, loss and backward on one batch (see :class:`Batches`); ``sums`` is the
      batch's summed loss, or ``[summed loss, correct samples]`` with ``accuracy``. ``share``
      (or None) scales the loss gradient: an MPI rank's part of the global batch. ``noise``
      holds the random draws of the layers in :attr:`random_layers` (dropout masks), made on
      the host by :meth:`draw`.
    - :meth:`update` ``(params, grads, optimizer_state, scalars) -> (params, optimizer_state)``.
    - :meth:`whole`: both in one call, for a single process.

    ``params``/``grads`` are laid out by :attr:`layout` (flat buffers, one per dtype, unless
    ``flat=False``: one array per parameter, for compiled steps; see :class:`ParameterLayout`). The
    update consumes the parameters, gradients and optimizer state it is given (compiled: donated
    buffers; eager: overwritten in place where arrays are mutable): callers use the results.
    ``pure=False`` (for eager runs) leaves the arrays of the last call on the layers instead of
    restoring the layers after each call, which costs time on small batches; there the layers
    may write their gradients straight into the step's own flat gradient buffer (see
    :class:`EagerPlaces`), which the next call reuses.
    ``traces`` counts how many times the Python body ran: every step when eager, once per batch
    shape when compiled.
    """

    def __init__(self, network, optimizer, accuracy=False, pure=True, flat=True):
        self.pure = pure  # restore the layers after each call (needed under a compiler)
        self.flat = flat  # parameters in flat buffers (else one array each, see ParameterLayout)
        self.optimizer = optimizer
        self.loss_with_prime = losses_module.with_prime(network.loss, network.loss_prime)
        self.accuracy = accuracy  # sums also count the batch's correctly classified samples
        self.traces = 0
        self._use(list(network.layers))

    def _use(self, layers):
        self.layers = layers
        self.layout = ParameterLayout(parameter_slots(layers), self.flat)
        self._places = None  # EagerPlaces of the last eager call
        self.buffers = buffer_slots(layers)
        self.backward = backward_chain(layers, self.optimizer.learning_rate)
        # Random draws are made ahead of the step, from the layers' input shapes; with
        # tutorial-style layers (shapes unknown, eager only) layers draw during forward instead.
        native = all(is_native(layer) for layer in layers)
        self.random_layers = [layer for layer in walk(layers) if native and layer.random]

    def twin(self):
        """This step over its own copy of the layers, restoring them after each call: for
        another thread to run at the same time."""
        twin = copy.copy(self)
        twin.pure = True
        twin._use(copy.deepcopy(self.layers))
        return twin

    def draw(self, sample_shape, rows, dtype):
        """This step's random draws for a batch of ``rows`` samples of ``sample_shape``,
        drawn on the host in layer order and moved to the backend."""
        if not self.random_layers:
            return []
        return [get_backend().asarray(layer.draw((rows, *shape)), dtype)
                for layer, _, shape in walk_shapes(self.layers, tuple(sample_shape))
                if layer in self.random_layers]

    def gradients(self, params, buffers, batch, share, noise):
        self.traces += 1
        x, y = select(batch)
        eager = None if self.pure else self._eager_places(params)
        pieces = self.layout.split(params) if eager is None else eager.pieces
        assignments = [*zip(self.layout.slots, pieces), *zip(self.buffers, buffers),
                       *zip(((layer, "noise") for layer in self.random_layers), noise)]
        if eager is not None:
            assignments += eager.grad_places
        with lent(self.layers, assignments) if self.pure else given(assignments):
            out = forward(self.layers, x, training=True)
            loss, grad = self.loss_with_prime(y, out)
            if share is not None:
                grad = grad * share
            for step in self.backward:
                grad = step(grad)
            grads = [layer.grads[name] for layer, name in self.layout.slots]
            grads = (self.layout.flatten_gradients(grads) if eager is None
                     else eager.gathered(grads))
            new_buffers = [getattr(layer, name) for layer, name in self.buffers]
        sums = loss * x.shape[0]
        if self.accuracy:
            xp = namespace(out)
            sums = xp.stack([sums, xp.astype(accuracy(y, out), sums.dtype) * x.shape[0]])
        return grads, new_buffers, sums

    def _eager_places(self, params):
        """The :class:`EagerPlaces` of ``params``, made again only when they are other buffers
        than the last call's (eager steps update them in place where arrays are mutable)."""
        places = self._places
        if places is None or len(places.params) != len(params) or any(
                a is not b for a, b in zip(places.params, params)):
            places = self._places = EagerPlaces(self.layout, params)
        return places

    def update(self, params, grads, optimizer_state, scalars):
        self.traces += 1
        return self.optimizer.apply(params, grads, optimizer_state, scalars)

    def whole(self, params, buffers, optimizer_state, total, batch, scalars, noise,
              gradients=None):
        """``(params, buffers, optimizer_state, total + the batch's sums)`` after one step on
        ``batch``, its gradients from ``gradients`` (default :meth:`gradients`)."""
        grads, buffers, sums = (gradients or self.gradients)(params, buffers, batch, None, noise)
        self.traces -= 1  # one step, one trace
        params, optimizer_state = self.update(params, grads, optimizer_state, scalars)
        return params, buffers, optimizer_state, total + sums


class EagerPlaces:
    """Where an eager step's arrays live, for parameters ``params`` laid out by ``layout``:
    each parameter's piece of them (:attr:`pieces`) and, on backends whose layers can write
    into arrays (:func:`portanet.backend.writes_into`), a flat gradient buffer of the same
    layout whose pieces the layers are pointed at (:attr:`grad_places`, assignments of
    ``Layer.grad_places``), so the gradients need no gathering copy."""

    def __init__(self, layout, params):
        self.params = list(params)
        self.pieces = layout.split(params)
        self.layout = layout
        in_place = bool(layout.flat and params and writes_into(params[0]))
        self.grad_buffers = [namespace(p).zeros_like(p) for p in params] if in_place else []
        self.grad_pieces = layout.split(self.grad_buffers) if in_place else []
        per_layer = {}  # by id: a user's layer need not be hashable
        for (layer, name), piece in zip(layout.slots, self.grad_pieces):
            per_layer.setdefault(id(layer), (layer, {}))[1][name] = piece
        self.grad_places = [((layer, "grad_places"), places)
                            for layer, places in per_layer.values()]

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


def zeros_like_all(arrays):
    """Zeros shaped like each of ``arrays``."""
    return [namespace(array).zeros_like(array) for array in arrays]


class Inference:
    """The inference forward pass of ``layers`` as a pure function
    ``(weights, x) -> output``, ``weights`` being every parameter and buffer in layer order."""

    def __init__(self, layers):
        self.layers = list(layers)
        self.slots = [(layer, name) for layer in walk(self.layers) if is_native(layer)
                      for name in layer.params + layer.buffers]
        self.traces = 0

    def weights(self):
        return [getattr(layer, name) for layer, name in self.slots]

    def __call__(self, weights, x):
        self.traces += 1
        with lent(self.layers, zip(self.slots, weights)):
            return forward(self.layers, x, training=False)
