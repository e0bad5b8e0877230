"""The layer protocol every portanet layer follows: a pure forward that returns its backward.

A layer's math is :meth:`Layer.apply` ``(state, x, run) -> (output, backprop)``: ``state`` holds
the layer's parameters and buffers for this call, ``run`` (a :class:`Pass`) the training flag,
the random draws and where gradients go; ``backprop(grad_output, need_input=True) ->
(grad_input, {name: grad})``. Nothing is written on the layer during a call, so one network
serves any number of threads, a layer used at two places gets the sum of both gradients, and a
compiler can trace a whole training step. The tutorial's stateful methods
(``forward``/``backward``, ``forward_propagation``/``backward_propagation``) are adapters on top.
"""

import functools
import inspect
import threading
import types

from .._checks import float_dtype
from ..backend import cast, dtype_name, get_backend, namespace, to_numpy
from ..errors import InputError, ShapeError

EMPTY = types.MappingProxyType({})
# Held while a network's weights are read for a pass or replaced by training: a pass sees the
# weights of one completed step, never a mix.
WEIGHTS_LOCK = threading.Lock()


class Pass:
    """One pass of a batch through layers, forward and (if asked) backward: what it needs
    besides the input, and what it collects. Made for each call (predict, a training step, the
    stateful adapter) and never kept on a layer.

    - ``states``: ``{id(layer): {name: array}}``, each layer's parameters and buffers for this
      pass; a layer with buffers writes their new values into its dict when training.
    - ``training``: training mode (dropout on, batch statistics).
    - ``draws``: the random draws of the pass's random layers, in the order they run (see
      :meth:`noise`); None lets such layers draw for themselves (eager only).
    - ``places``: ``{id(layer): {name: array}}``, where an eager step would like a layer's
      parameter gradients written (see :meth:`place`).
    - ``learning_rate``: the rate at which tutorial-style layers update themselves.
    - ``grads``: ``{id(layer): {name: gradient}}``, filled by backward; a layer used at several
      places gets the sum.
    - ``compute``: the dtype (by name) layers compute in under a precision policy (see
      :mod:`portanet.precision`), or None: each layer is then given its state and input as
      they are.
    """

    __slots__ = ("states", "training", "draws", "places", "learning_rate", "grads", "compute")

    def __init__(self, states, training=False, draws=None, places=EMPTY, learning_rate=None,
                 compute=None):
        self.states, self.training, self.places = states, training, places
        self.draws = None if draws is None else iter(draws)
        self.learning_rate = learning_rate
        self.grads = {}
        self.compute = compute

    @classmethod
    def of(cls, layers, training=False, compute=None):
        """A pass over ``layers`` with the arrays they hold now."""
        return cls({id(layer): {name: getattr(layer, name) for name in
                                getattr(layer, "params", ()) + getattr(layer, "buffers", ())}
                    for layer in with_references(layers)}, training, compute=compute)

    def noise(self):
        """The next random draw of this pass, or None where layers draw for themselves."""
        return None if self.draws is None else next(self.draws)

    def place(self, layer, name):
        """Where ``layer`` may write the gradient of parameter ``name`` (or None)."""
        return self.places.get(id(layer), EMPTY).get(name)

    def apply(self, layer, x):
        """``(output, backprop)`` of ``layer`` on ``x`` in this pass."""
        kind = _kind(type(layer))
        if kind is PURE:
            state = self.states.get(id(layer), EMPTY)
            if self.compute is not None:
                return self._in_precision(layer, state, x)
            return layer.apply(state, x, self)
        if kind is STATEFUL:
            return Layer.apply(layer, self.states.get(id(layer), EMPTY), x, self)
        out = layer.forward_propagation(x)  # the tutorial's style: it updates itself

        def backprop(grad_output, need_input=True):
            return layer.backward_propagation(grad_output, self.learning_rate), EMPTY
        return out, backprop

    def _in_precision(self, layer, state, x):
        """``layer.apply`` in the policy's dtype: ``layer``'s parameters, buffers (``state``)
        and input ``x`` cast to :attr:`compute` (to float32 for a ``full_precision`` layer), its
        output to :attr:`compute`; backward casts the gradients back, the input's to the
        input's dtype. New buffer values keep their own dtype. (Only layers written with
        ``apply``: the stateful forms would keep the 16-bit copies on themselves.)"""
        dtype = "float32" if layer.full_precision else self.compute
        given = {name: cast(value, dtype) for name, value in state.items()}
        out, backprop = layer.apply(given, cast(x, dtype), self)
        for name in layer.buffers:
            state[name] = cast(given[name], dtype_name(state[name]))

        def backprop_in_precision(grad_output, need_input=True):
            grad_input, grads = backprop(cast(grad_output, dtype), need_input)
            return (None if grad_input is None else cast(grad_input, dtype_name(x))), grads
        return cast(out, self.compute), backprop_in_precision

    def output(self, layers, x):
        """``x`` through ``layers`` (nothing kept for a backward pass)."""
        for layer in layers:
            x = self.apply(layer, x)[0]
        return x

    def chain(self, layers, x, first=None):
        """``(output, backprop)`` of ``layers`` run in order on ``x``. ``backprop(grad,
        need_input=True)`` runs them backwards, recording each one's parameter gradients in
        :attr:`grads`, and returns ``(grad_input, EMPTY)``; with ``need_input=False`` it stops
        at ``first`` (default: the first layer with something to learn), which computes only
        its parameter gradients, and returns ``(None, EMPTY)``."""
        backprops = []
        for layer in layers:
            x, backprop = self.apply(layer, x)
            backprops.append((layer, backprop))

        def backprop(grad, need_input=True):
            stop = 0 if need_input else (first_to_learn(layers) if first is None else first)
            for index in range(len(backprops) - 1, stop - 1, -1):
                layer, step = backprops[index]
                grad, grads = step(grad, need_input or index > stop)
                if grads:
                    self.record(layer, grads)
            return (grad if need_input else None), EMPTY
        return x, backprop

    def record(self, layer, grads):
        """Add ``grads`` (``{name: gradient}``) to ``layer``'s gradients of this pass."""
        mine = self.grads.get(id(layer))
        if mine is None:
            self.grads[id(layer)] = dict(grads)
            return
        for name, grad in grads.items():
            mine[name] = mine[name] + grad if name in mine else grad


class Layer:
    """Base class of all layers.

    A layer computes :meth:`apply`, a pure function of the arrays it is given (see the module
    docstring): parameters are array attributes named in ``params``, ``buffers`` names arrays
    that are state but not trained (running statistics); both are saved with the network. A
    container (:class:`portanet.Sequential`, :class:`portanet.Residual`) lists the layers it
    runs in ``sublayers``: training, saving and ``summary`` walk them. One layer object may be
    used at several places of a network: its weights are shared and its gradients summed.

    The stateful forms still work: ``forward(x, training)`` / ``backward(grad_output)`` (the
    parameter gradients left in ``self.grads``) and the tutorial's
    ``forward_propagation(input)`` / ``backward_propagation(output_error, learning_rate)``. A
    subclass may override those instead of :meth:`apply` (it then trains eagerly, keeping its
    per-call state on itself, and is not safe to share between threads).
    """

    params: tuple[str, ...] = ()
    buffers: tuple[str, ...] = ()
    references: tuple = ()  # other layers whose parameters this one uses (see TiedDense)
    input_shape: tuple[int, ...] | None = None  # per-sample input shape, where the layer fixes one
    random = False  # True for layers that use random draws in training (see ``draw``)
    full_precision = False  # True: a precision policy runs it in float32 (normalisations)

    def __init__(self):
        self.grads = {}

    def apply(self, state, x, run):
        """``(output, backprop)`` of this layer on the batch ``x`` (samples on the first axis),
        ``state`` holding its parameters and buffers by name, ``run`` the :class:`Pass`;
        ``backprop(grad_output, need_input=True) -> (grad_input, {name: gradient})`` (``None``
        for the input gradient when ``need_input`` is False: the first layer's, which nobody
        uses). Override it to write a layer (see ``docs/custom-layers.md``).

        This default adapts a layer written in the stateful form (``forward``/``backward``
        reading and writing its own attributes): the layer is given the state's arrays, runs,
        and its buffers and gradients are read back from it."""
        if type(self).forward is Layer.forward:
            raise NotImplementedError(f"{type(self).__name__} must define apply() (or forward() "
                                      "and backward())")
        for name, value in state.items():
            setattr(self, name, value)
        if self.random:
            self.noise = run.noise()
        out = self.forward(x, training=run.training)
        for name in self.buffers:
            state[name] = getattr(self, name)

        def backprop(grad_output, need_input=True):
            grad_input = (self.backward(grad_output) if need_input
                          else self.backward_params(grad_output))
            return grad_input, dict(self.grads)
        return out, backprop

    def forward(self, x, training=False):
        """Output of the layer for a batch ``x``, keeping on the layer what :meth:`backward`
        needs (the stateful form; ``fit`` and ``predict`` call :meth:`apply`)."""
        if type(self).apply is Layer.apply:
            raise NotImplementedError(f"{type(self).__name__} must define apply() (or forward() "
                                      "and backward())")
        run = Pass.of([self], training)
        out, backprop = self.apply(run.states[id(self)], x, run)
        for layer in walk([self]):  # the new running statistics, after training
            for name in layer.buffers:
                setattr(layer, name, run.states[id(layer)][name])
        self._last_pass = (run, backprop)
        return out

    def __getstate__(self):
        """What a copy (``copy.deepcopy``, pickle) of the layer holds: everything but the last
        :meth:`forward`'s pass, which belongs to that call."""
        state = dict(vars(self))
        state.pop("_last_pass", None)
        return state

    def backward(self, grad_output):
        """Gradient with respect to the input of the last :meth:`forward`; the parameter
        gradients go to ``self.grads`` (and a container's sublayers' to theirs)."""
        return self._backward(grad_output, True)

    def backward_params(self, grad_output):
        """Only the parameter gradients (into ``self.grads``), without the input gradient (a
        layer in the stateful form may override it to skip that work; by default it runs
        :meth:`backward` and drops its result)."""
        if _kind(type(self)) is STATEFUL:
            self.backward(grad_output)
        else:
            self._backward(grad_output, False)

    def _backward(self, grad_output, need_input):
        if "_last_pass" not in vars(self):
            raise InputError(f"{self!r}.backward needs a forward() first")
        run, backprop = self._last_pass
        run.grads = {}
        grad_input, grads = backprop(grad_output, need_input)
        if grads:
            run.record(self, grads)
        for layer in with_references([self]):
            if layer.params:
                layer.grads = run.grads.get(id(layer), {})
        return grad_input

    def draw(self, input_shape):
        """The host (NumPy) random draws this layer uses for a training batch of
        ``input_shape``, taken from portanet's seeded generator. A training step draws them
        ahead and hands them to the layer through :meth:`Pass.noise` (so a compiled step gets
        them as an argument); where that gives None the layer draws for itself."""
        return None

    def output_shape(self, input_shape):
        """Per-sample output shape for ``input_shape``; ShapeError if it does not fit."""
        return input_shape

    def forward_propagation(self, input_data):
        """The tutorial's name for :meth:`forward` (in training mode)."""
        return self.forward(input_data, training=True)

    def backward_propagation(self, output_error, learning_rate):
        """The tutorial's step: backward, then a plain SGD update of this layer's parameters
        (and of those it uses: a TiedDense's embedding)."""
        input_error = self.backward(output_error)
        for layer in with_references([self]):
            for name in layer.params:
                setattr(layer, name, getattr(layer, name) - learning_rate * layer.grads[name])
        return input_error

    def get_weights(self):
        """Copies of the parameters and buffers as NumPy arrays, in the order of
        ``params + buffers`` (training updates the layer's own arrays in place)."""
        return [to_numpy(getattr(self, name)).copy() for name in self.params + self.buffers]

    def set_weights(self, weights):
        """Set parameters and buffers from arrays (NumPy or backend), keeping shapes and dtype."""
        names = self.params + self.buffers
        if len(weights) != len(names):
            raise ShapeError(f"{self!r} has {len(names)} weight arrays {names}, got {len(weights)}")
        for name, value in zip(names, weights):
            old = getattr(self, name)
            if tuple(value.shape) != tuple(old.shape):
                raise ShapeError(f"{self!r}.{name} has shape {tuple(old.shape)}, "
                                 f"got {tuple(value.shape)}")
            setattr(self, name, get_backend().asarray(to_numpy(value), dtype_name(old)))

    def astype(self, dtype):
        """Cast parameters and buffers to ``dtype`` ("float32" or "float64")."""
        float_dtype("dtype", dtype)
        for name in self.params + self.buffers:
            value = getattr(self, name)
            xp = namespace(value)
            setattr(self, name, xp.astype(value, getattr(xp, dtype)))
        return self

    def config(self):
        """The constructor arguments that rebuild this layer (saved with the network)."""
        return {}

    def __repr__(self):
        """The class and the constructor arguments that differ from their defaults."""
        defaults = _defaults(type(self))
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items()
                         if k not in defaults or defaults[k] != v)
        return f"{type(self).__name__}({args})"


@functools.cache
def _defaults(layer_type):
    """The default values of ``layer_type``'s constructor arguments."""
    return {name: parameter.default
            for name, parameter in inspect.signature(layer_type).parameters.items()}


def is_builtin(layer) -> bool:
    """True for portanet's own layers with built-in activations: their type and settings say
    all they compute."""
    return type(layer).__module__.startswith("portanet.") and getattr(layer, "builtin", True)


PURE, STATEFUL, TUTORIAL = "pure", "stateful", "tutorial"


@functools.cache
def _kind(kind) -> str:
    """How layers of class ``kind`` run: PURE (:meth:`Layer.apply`), STATEFUL (``forward`` and
    ``backward`` on the layer, overridden below the class that defines ``apply``) or TUTORIAL
    (``forward_propagation``/``backward_propagation``, updating itself)."""
    if not (issubclass(kind, Layer) and kind.forward_propagation is Layer.forward_propagation
            and kind.backward_propagation is Layer.backward_propagation):
        return TUTORIAL
    owner = {name: next(k for k in kind.__mro__ if name in vars(k))
             for name in ("apply", "forward", "backward")}
    stateful = any(owner[name] is not owner["apply"] and issubclass(owner[name], owner["apply"])
                   for name in ("forward", "backward"))
    return STATEFUL if stateful else PURE


def is_native(layer) -> bool:
    """True for layers written with apply or forward/backward; False for the tutorial's
    self-updating style."""
    return _kind(type(layer)) is not TUTORIAL


def not_pure(layers) -> str | None:
    """Why ``layers`` cannot be compiled or shared between threads (the first layer that keeps
    per-call state on itself), or None."""
    for layer in walk(layers):
        kind = _kind(type(layer))
        if kind is TUTORIAL:
            return f"{layer!r} updates its own weights (the tutorial's backward_propagation)"
        if kind is STATEFUL:
            return (f"{layer!r} keeps its per-call state on itself (forward/backward on the "
                    "layer): write it with apply() to compile it")
    return None


def weight_names(layer) -> tuple[str, ...]:
    """The names of ``layer``'s parameters and buffers (none for tutorial-style layers)."""
    return (layer.params + layer.buffers) if is_native(layer) else ()


def unique(layers):
    """``layers`` without repeats (a layer used at several places), in first-use order."""
    seen = set()
    return [layer for layer in layers if not (id(layer) in seen or seen.add(id(layer)))]


def first_to_learn(layers) -> int:
    """Index of the first of ``layers`` that learns (has parameters, or updates itself in the
    tutorial's style): backward need not go further down."""
    return next((index for index, layer in enumerate(layers)
                 if not is_native(layer) or trainable(layer)), len(layers))


def walk(layers):
    """Every layer of ``layers`` and, after each container, its sublayers (depth first)."""
    for layer in layers:
        yield layer
        yield from walk(getattr(layer, "sublayers", ()))


def trainable(layer) -> bool:
    """True if ``layer`` or one of its sublayers has parameters, or uses another layer's."""
    return any(getattr(part, "params", ()) or getattr(part, "references", ())
               for part in walk([layer]))


def with_references(layers):
    """:func:`walk` of ``layers`` and the layers they use the parameters of, each once."""
    found = list(walk(layers))
    return unique(found + [other for layer in found for other in getattr(layer, "references",
                                                                          ())])


def check_references(layers):
    """InputError unless every layer that uses another layer's parameters (the embedding of a
    :class:`~portanet.layers.embedding.TiedDense`) comes after that layer in ``layers``."""
    seen = set()
    for layer in walk(layers):
        for other in getattr(layer, "references", ()):
            if id(other) not in seen:
                raise InputError(f"{layer!r} uses the weights of {other!r}, which is not before "
                                 "it in the network: add that layer first, and tie to a layer "
                                 "of this network")
        seen.add(id(layer))


def walk_shapes(layers, shape, depth=0):
    """``(layer, depth, per-sample input shape or None)`` for every layer as :func:`walk`
    orders them, from ``shape`` (or the first input shape a layer declares). A container's
    sublayers run one after another on the container's input, or each on it (``branches``)."""
    for layer in layers:
        if shape is None:
            shape = getattr(layer, "input_shape", None)
        yield layer, depth, shape
        sublayers = getattr(layer, "sublayers", ())
        for group in ([[sub] for sub in sublayers] if getattr(layer, "branches", False)
                      else [sublayers]):
            yield from walk_shapes(group, shape, depth + 1)
        shape = layer.output_shape(shape) if shape is not None and isinstance(layer, Layer) \
            else None
