"""The training loop: epochs, batches, shuffling, progress, interruption, validation, callbacks,
history.

The network builds and runs (:mod:`portanet.network`); one training step is a pure function of
arrays (:mod:`portanet.training.step`), compiled where the backend can
(:mod:`portanet.backend.compilers`) and run as :mod:`portanet.training.runner` composes it;
this module drives it. It talks to the other processes through a *world*
(:mod:`portanet.training.world`): a single process is a world of one, so the loop has no
separate path for MPI.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading

from .. import optimizers
from .._checks import boolean, fraction, integer, one_of
from ..backend import (
    compilers,
    get_backend,
    namespace,
    to_numpy,
)
from ..callbacks import CallbackList
from ..data.loaders import Loader, split
from ..errors import InputError, TrainingError
from ..layers.base import WEIGHTS_LOCK, not_pure
from ..layers.parameters import ParameterLayout
from ..precision import LossScale
from . import feed, inputs
from . import world as distributed_module
from .cache import cache_for
from .evaluation import score, score_stream
from .history import History
from .progress import Progress
from .runner import compose
from .step import TrainStep, buffer_slots, parameter_slots

_FITTING: set = set()  # id() of the networks being trained: one fit at a time each
_FITTING_LOCK = threading.Lock()


def fit(network, x_train, y_train=None, epochs=1, learning_rate=None, batch_size=1,
        shuffle=False, optimizer=None, validation_data=None, validation_split=0.0, verbose=1,
        distributed=False, compile="auto", metrics=(), callbacks=None, initial_epoch=0):
    """:meth:`portanet.Network.fit` (see there)."""
    with _FITTING_LOCK:
        if id(network) in _FITTING:
            raise TrainingError("fit is already running on this network (in another thread, or "
                                "a callback called fit): wait for it to end, or train a copy")
        _FITTING.add(id(network))
    try:
        return _fit(network, x_train, y_train, epochs, learning_rate, batch_size, shuffle,
                    optimizer, validation_data, validation_split, verbose, distributed, compile,
                    metrics, callbacks, initial_epoch)
    finally:
        with _FITTING_LOCK:
            _FITTING.discard(id(network))


def _fit(network, x_train, y_train, epochs, learning_rate, batch_size, shuffle, optimizer,
         validation_data, validation_split, verbose, distributed, compile, metrics, callbacks,
         initial_epoch):
    world = distributed_module.resolve(distributed)
    with world.together():
        inputs.check_ready(network, need_loss=True)
        inputs.check_loss_fits_output(network)
        integer("epochs", epochs, low=0)
        if integer("initial_epoch", initial_epoch, low=0) > epochs:
            raise InputError(f"initial_epoch ({initial_epoch}) must not be above epochs "
                             f"({epochs}), the number of the last epoch: epochs "
                             "initial_epoch + 1 to epochs are trained")
        integer("batch_size", batch_size)
        fraction("validation_split", validation_split)
        shuffle = boolean("shuffle", shuffle)
        one_of("verbose", verbose, (0, 1, 2))
        optimizer = optimizers.get(optimizer, learning_rate)
        callbacks = CallbackList(callbacks)
        metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
        if any(metric != "accuracy" for metric in metrics):
            raise InputError(f"metrics may name 'accuracy' only, got {metrics!r}")
        source, validation = _sources(network, x_train, y_train, batch_size, shuffle,
                                      validation_data, validation_split)
        world.join(network, source.samples, *source.sample_sizes(), batch_size)
        loop = Loop(network, optimizer, world, compile, accuracy="accuracy" in metrics)
        return loop.run(source, epochs, validation, verbose and world.is_root, callbacks,
                        initial_epoch)


def _sources(network, x_train, y_train, batch_size, shuffle, validation_data,
             validation_split):
    """The training batches (a :class:`feed.Held` or :class:`feed.Streamed`) and the
    validation data (backend rows ``(x, y)``, a Loader, or None)."""
    if feed.streams(x_train, y_train):
        if isinstance(x_train, Loader) and (batch_size != 1 or shuffle):
            raise InputError("x_train is a Loader, which sets its own batches: give batch_size "
                             "and shuffle to the Loader, not to fit")
        loader = feed.loader_for(x_train, y_train, batch_size, shuffle, "x_train")
        if loader.class_names:  # kept with the network, and saved with it
            network.metadata["class_names"] = list(loader.class_names)
        validation = None
        if validation_split:
            loader, validation = split(loader, validation_split)
        source = feed.Streamed(network, loader)
    else:
        if y_train is None:
            raise InputError("y_train is missing: give the targets (fit(x_train, y_train, ...)), "
                             "or a data set or Loader that gives (x, y) batches")
        x, y = inputs.pair(network, x_train, y_train, "x_train")
        validation = None
        if validation_split:  # the last samples, already read (and scaled) with the rest
            keep = x.shape[0] - max(1, int(round(x.shape[0] * validation_split)))
            if keep < 1:
                raise InputError("validation_split leaves no training samples")
            validation = (x[keep:, ...], y[keep:, ...])
            x, y = x[:keep, ...], y[:keep, ...]
        source = feed.Held(x, y, batch_size, shuffle)
    if validation_data is not None:
        if validation_split:
            raise InputError("give validation_data or validation_split, not both")
        validation = _validation(network, validation_data)
    return source, validation


def _validation(network, data):
    if feed.streams(data) and not isinstance(data, (tuple, list)):
        return feed.loader_for(data, None, what="validation_data")
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise InputError("validation_data must be a pair (x_val, y_val) or a data set, got "
                         f"{type(data).__name__}")
    if feed.streams(*data):  # a memory map: read in batches, never whole
        return feed.loader_for(*data, what="validation_data")
    return inputs.pair(network, *data, "x_val")


def with_loss_of(network, architecture):
    """``architecture`` (the network a shared step is made from: a copy of the first network
    alike, whatever its loss) with ``network``'s loss, which the step's key names."""
    if architecture is network:
        return network
    found = copy.copy(architecture)
    found.loss, found.loss_prime = network.loss, network.loss_prime
    return found


class Loop:
    """Trains ``network`` with ``optimizer`` in ``world``, the step compiled as ``compile`` says.

    During a fit the loop holds the training state (flat parameters, buffers, optimizer state)
    and hands it to the step; nothing is written on the layers meanwhile. The network's layers
    and the optimizer get copies of it when fit ends (Ctrl-C and errors included), after every
    epoch, and after every batch where a callback has batch hooks: one step's weights at a time
    (see :meth:`_give_back`).
    """

    def __init__(self, network, optimizer, world, compile="auto", accuracy=False):
        self.network, self.optimizer, self.world = network, optimizer, world
        self.compiler = compilers.choose(get_backend(), compile, not_pure(network.layers))
        self.accuracy = accuracy
        eager = self.compiler is compilers.EAGER
        # flat parameter buffers for eager steps and for MPI (one gradient buffer to sum);
        # compiled steps of one process: one array per parameter (see ParameterLayout)
        flat = eager or world.size > 1
        self.layout = ParameterLayout(parameter_slots(network.layers), flat)
        self.buffers = buffer_slots(network.layers)
        cached = cache_for(network, self.compiler)
        policy = network.policy
        self.loss_scaling = policy is not None and policy.loss_scaling
        if self.loss_scaling and world.size > 1:
            raise InputError(f"precision={policy.name!r} (loss scaling) does not train "
                             "distributed yet: train it in one process, or use "
                             "precision='mixed_bfloat16'")
        key = (self.compiler.name, optimizer.config_key(), network.loss, network.loss_prime,
               accuracy, flat, policy)
        self.step = cached(("train", *key), lambda net: TrainStep(
            with_loss_of(network, net), optimizer, accuracy, eager=eager, flat=flat))
        self.run_step = cached(("train-run", *key, world),
                               lambda net: compose(self.step, self.compiler, world))
        layout = self.step.layout  # gathering and splitting it: compiled too on JAX
        helpers = self.compiler if self.compiler.small_programs else compilers.EAGER
        self.flatten = cached(("flatten", helpers.name, flat), lambda net: compilers.compiled(
            helpers, layout.flatten, "gathering the parameters"))
        self.split = cached(("split", helpers.name, flat), lambda net: compilers.compiled(
            helpers, layout.split, "splitting the parameters"))
        self.stop_requested = False
        self.sample_shape = ()  # the last batch's, for a rank with no share of a batch

    def run(self, source, epochs, validation, verbose, callbacks=None, initial_epoch=0):
        """Train on the batches of ``source`` (see :mod:`portanet.training.feed`), epochs
        ``initial_epoch + 1`` to ``epochs`` (or after the epoch a callback restored, see
        :meth:`CallbackList.initial_epoch`); return the :class:`History`."""
        network, optimizer, step = self.network, self.optimizer, self.step
        progress = Progress(epochs, source.batch_count, verbose)
        progress.live = progress.live and self.world.size == 1  # MPI ranks print to a pipe
        history = History()
        callbacks = callbacks or CallbackList()
        metrics = ["loss", *(["accuracy"] if self.accuracy else []),
                   *(["val_loss", "val_accuracy"] if validation is not None else [])]
        callbacks.bind(network, optimizer, history, self.world,
                       {"epochs": epochs, "steps": progress.batches, "metrics": metrics})
        network.stop_training = False
        callbacks.on_train_begin({})
        initial_epoch = callbacks.initial_epoch(initial_epoch)  # after a restore: its epoch
        values = {}  # the last epoch's
        traces = step.traces
        params = self.flatten([getattr(layer, name) for layer, name in self.layout.slots])
        scaling = ([LossScale.initial() if optimizer.loss_scale is None
                    else optimizer.loss_scale] if self.loss_scaling else [])
        state = [params, [getattr(layer, name) for layer, name in self.buffers] + scaling,
                 optimizer.state_for(self.layout, params)]
        self.skipped = int(to_numpy(scaling[0])[2]) if scaling else 0  # steps skipped before
        with self._interruptible():
            try:
                for epoch in range(initial_epoch + 1, epochs + 1):
                    callbacks.on_epoch_begin(epoch)
                    progress.start_epoch(epoch)
                    total, seen, interrupted = self._epoch(epoch, state, source, callbacks,
                                                           progress)
                    values = self._epoch_values(epoch, total, seen, validation)
                    if self.loss_scaling:
                        values.update(self._scaling_values(state))
                    history.record(epoch, values)
                    # "error=": the tutorial's line, which its readers compare against; the
                    # history calls it "loss", as Keras does
                    progress.message(f"epoch {epoch}/{epochs}   error={values['loss']:f}" + "".join(
                        f"   {k}={v:f}" if isinstance(v, float) else f"   {k}={v}"
                        for k, v in values.items() if k != "loss"))
                    history.stopped_epoch = epoch
                    callbacks.on_epoch_end(epoch, dict(values))
                    if self._ends_after(epoch, interrupted, seen, source.samples, history,
                                        progress):
                        break
            finally:
                self._give_back(state)
                history.step_traces = step.traces - traces
                fell_back = any(getattr(part, "failed", False) for part in self.run_step.parts)
                history.compiled = "eager" if fell_back else self.compiler.name
        history.stop_reason = history.stop_reason or "completed"
        callbacks.on_train_end(dict(values))
        return history

    def _epoch(self, epoch, state, source, callbacks, progress):
        """Train one epoch's batches, ``state`` (params, buffers, optimizer state) updated in
        place; return the sums of their losses, the samples seen and whether Ctrl-C asked to
        stop. The layers get the epoch's weights at its end (every batch's, where a callback
        has batch hooks)."""
        network, optimizer, world, step = self.network, self.optimizer, self.world, self.step
        dtype = network.working_dtype()
        # the sums of the epoch's batches (the step makes new ones)
        total = get_backend().asarray([0.0, 0.0] if self.accuracy else 0.0, dtype)
        seen, interrupted = 0, False
        every_batch = callbacks.has_batch_hooks()  # they may look at the layers' weights
        with source.epoch(epoch, world, indexed=self.compiler.name != "eager") as batches:
            for batch, (start, stop, lo, hi, rows) in enumerate(batches, 1):
                callbacks.on_batch_begin(batch)
                if rows is not None:
                    self.sample_shape = rows[0].shape[1:]
                *new_state, total, interrupted = self.run_step(
                    *state, total, rows, hi - lo, optimizer.scalars(),
                    step.draw(self.sample_shape, hi - lo, dtype), (hi - lo) / (stop - start),
                    lambda: self.stop_requested)
                state[:] = new_state
                optimizer.iterations += 1
                seen = stop
                progress.batch_done(batch)
                if every_batch:
                    self._give_back(state, f"in epoch {epoch}, batch {batch}")
                callbacks.on_batch_end(batch)
                if interrupted or network.stop_training:
                    break
        self._give_back(state, f"in epoch {epoch}")  # the layers hold each epoch's weights
        if world.size > 1:  # the ranks' running statistics, averaged on the layers
            world.average_buffers(network.layers)
            state[1] = [namespace(b).asarray(getattr(layer, name), copy=True)
                        for b, (layer, name) in zip(state[1], self.buffers)]
        return total, seen, interrupted

    def _ends_after(self, epoch, interrupted, seen, n, history, progress) -> bool:
        """Whether training ends after ``epoch`` (Ctrl-C, or a callback's
        ``network.stop_training``), the reason recorded in ``history`` and printed."""
        if interrupted:
            history.interrupted = True
            history.stop_reason = "interrupted (Ctrl-C)"
            of = f" of {n}" if n is not None else ""
            progress.message(f"interrupted in epoch {epoch} after {seen}{of} samples: the "
                             "network keeps the weights of the last full batch")
            return True
        if self.network.stop_training:
            history.stop_reason = history.stop_reason or (
                f"stopped by a callback (network.stop_training) in epoch {epoch}")
            progress.message(f"stopped after epoch {epoch}: {history.stop_reason}")
            return True
        return False

    def _give_back(self, state, when=None):
        """Hand copies of the current parameters, buffers and optimizer state to the layers and
        the optimizer, all at once (under WEIGHTS_LOCK): the step goes on updating its own
        arrays (in place, or donated to a compiled step), and a predict in another thread
        reads one step's weights.

        Weights that are not all finite are never handed over: the layers keep the last finite
        ones they were given, and TrainingError says so (``when`` names the point of training;
        None hands nothing over, silently, once training is over)."""
        params, buffers, optimizer_state = state
        xp = namespace(*params, *buffers) if params or buffers else None
        if not all(bool(xp.all(xp.isfinite(array))) for array in (*params, *buffers)):
            if when is None:
                return
            raise TrainingError(
                f"the weights became NaN or infinite {when} (an update overflowed): training "
                "stopped, and the network keeps its last finite weights (those of the epoch "
                "before, or of the batch before where a callback has batch hooks). Lower the "
                "learning rate (now "
                f"{self.optimizer.learning_rate:g}), clip the gradients (e.g. "
                "optimizer=portanet.optimizers.Adam(clip_norm=1.0)) or normalise the inputs.")
        params = self.split([xp.asarray(p, copy=True) for p in params])
        buffers = [xp.asarray(b, copy=True) for b in buffers]
        with WEIGHTS_LOCK:
            for (layer, name), value in zip(self.layout.slots, params):
                setattr(layer, name, value)
            for (layer, name), value in zip(self.buffers, buffers):
                setattr(layer, name, value)
        self.optimizer.state = optimizer_state
        if self.loss_scaling:  # the buffers end with it
            self.optimizer.loss_scale = buffers[-1]

    def _scaling_values(self, state):
        """The epoch's "skipped_steps" (their gradients overflowed: not applied) and the
        "loss_scale" at its end, from the :class:`LossScale` state ending ``state``'s
        buffers."""
        scale, _, skipped = (float(v) for v in to_numpy(state[1][-1]))
        count, self.skipped = int(skipped) - self.skipped, int(skipped)
        return {"skipped_steps": count, "loss_scale": scale}

    def _epoch_values(self, epoch, total, seen, validation):
        world = self.world
        sums = world.sum(to_numpy(total).reshape(-1).tolist(), "the epoch's loss")
        values = {"loss": sums[0] / seen}
        if self.accuracy:
            values["accuracy"] = sums[1] / seen
        if not math.isfinite(values["loss"]):
            raise TrainingError(
                f"the loss became {values['loss']} at epoch {epoch}: training stopped. "
                f"Lower the learning rate (now {self.optimizer.learning_rate:g}) or normalise "
                "the inputs (portanet.preprocessing.standardize / normalize).")
        if validation is not None:
            values["val_loss"], values["val_accuracy"] = (
                score_stream(self.network, validation, world) if isinstance(validation, Loader)
                else score(self.network, *validation, world=world))
        return values

    @contextlib.contextmanager
    def _interruptible(self):
        """Turn the first Ctrl-C into a request to stop after the current batch."""
        self.stop_requested = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            if self.stop_requested:  # a second Ctrl-C stops at once
                raise KeyboardInterrupt
            self.stop_requested = True

        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
