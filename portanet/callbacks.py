"""Callbacks: code that runs at points of training (``fit(..., callbacks=[...])``), as in Keras.

A callback subclasses :class:`Callback` and overrides the hooks it needs. Before training
starts, ``fit`` sets on each callback ``network``, ``optimizer``, ``history`` (the
:class:`portanet.History` being filled) and ``world`` (:mod:`portanet.training.world`: one process,
or the ranks of an MPI job). Epochs are numbered from 1, as in ``history.epoch`` and the progress
lines. A callback stops training by setting ``self.network.stop_training = True`` (Keras's
``model.stop_training``); training ends after the current batch (set in a batch hook) or epoch,
and ``history.stop_reason`` says why (a callback may set it before setting the flag).

The network's layers hold the current weights in ``on_epoch_end`` and ``on_train_end``, and in
the batch hooks where a callback has any (the training loop then hands the layers a copy of the
weights after every batch; otherwise only after every epoch). Under MPI every rank runs the
callbacks with the same epoch values (summed over the ranks), so decisions made from them agree;
only rank 0 writes files. A callback that stops training from a batch hook must decide alike on
every rank. """

from __future__ import annotations

import csv
import inspect
import io
import math
import os
import string
from pathlib import Path

from ._checks import boolean, integer, non_negative, one_of, positive
from .backend import namespace
from .errors import InputError
from .layers.base import walk
from .saving.files import append, check_writable, write_atomically
from .saving.format import describe
from .saving.state import resume, save_training


class Callback:
    """Base class: every hook does nothing. ``logs`` is the epoch's values ("loss" and, where
    computed, "accuracy", "val_loss", "val_accuracy")."""

    network = optimizer = history = world = None  # set by fit before training starts
    params = None  # set by fit too: {"epochs", "steps" (per epoch), "metrics" (value names)}
    restored_epoch = None  # set in on_train_begin by a callback that restored training

    def on_train_begin(self, logs):
        """Training starts (``logs`` is empty)."""

    def on_train_end(self, logs):
        """Training ended, normally or stopped (``logs``: the last epoch's values)."""

    def on_epoch_begin(self, epoch):
        """Epoch ``epoch`` (from 1) starts."""

    def on_epoch_end(self, epoch, logs):
        """Epoch ``epoch`` ended with the values ``logs`` (already in ``self.history``)."""

    def on_batch_begin(self, batch):
        """Batch ``batch`` (from 1, per epoch) starts."""

    def on_batch_end(self, batch):
        """Batch ``batch`` has been trained."""


class CallbackList:
    """The callbacks of one ``fit``, checked, called in order at each hook."""

    def __init__(self, callbacks=None):
        if isinstance(callbacks, Callback):
            callbacks = [callbacks]
        if callbacks is None:
            callbacks = []
        if not isinstance(callbacks, (list, tuple)):
            raise InputError(f"callbacks must be a list of portanet.callbacks.Callback objects, "
                             f"got {callbacks!r}")
        for callback in callbacks:
            if isinstance(callback, type) and issubclass(callback, Callback):
                raise InputError(f"callbacks holds the class {callback.__name__}, not an "
                                 f"object: write {callback.__name__}(...)")
            if not isinstance(callback, Callback):
                raise InputError(f"callbacks holds {callback!r}, which is not a "
                                 "portanet.callbacks.Callback: subclass Callback and override "
                                 "its on_... methods")
        self.callbacks = list(callbacks)

    def __bool__(self):
        return bool(self.callbacks)

    def has_batch_hooks(self) -> bool:
        """True if a callback overrides on_batch_begin or on_batch_end (the layers then get
        the current weights after every batch)."""
        return any(type(callback).on_batch_begin is not Callback.on_batch_begin
                   or type(callback).on_batch_end is not Callback.on_batch_end
                   for callback in self.callbacks)

    def bind(self, network, optimizer, history, world, params):
        for callback in self.callbacks:
            callback.network, callback.optimizer = network, optimizer
            callback.history, callback.world, callback.params = history, world, params

    def on_train_begin(self, logs):
        for callback in self.callbacks:
            callback.on_train_begin(logs)

    def initial_epoch(self, initial_epoch):
        """The epoch training goes on after: the last one a callback restored
        (``restored_epoch``, e.g. :class:`BackupAndRestore`'s), else ``initial_epoch``."""
        restored = [callback.restored_epoch for callback in self.callbacks
                    if callback.restored_epoch is not None]
        return restored[-1] if restored else initial_epoch

    def on_train_end(self, logs):
        for callback in self.callbacks:
            callback.on_train_end(logs)

    def on_epoch_begin(self, epoch):
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch)

    def on_epoch_end(self, epoch, logs):
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_batch_begin(self, batch):
        for callback in self.callbacks:
            callback.on_batch_begin(batch)

    def on_batch_end(self, batch):
        for callback in self.callbacks:
            callback.on_batch_end(batch)


class _Monitoring(Callback):
    """A callback watching one of the epoch's values for improvement.

    ``mode`` "min" or "max" says which way is better; "auto" is "max" for accuracy-like names
    (containing "acc") and "min" otherwise. An improvement beats the best value by more than
    ``min_delta``.
    """

    def __init__(self, monitor, mode, min_delta=0.0):
        if not isinstance(monitor, str) or not monitor:
            raise InputError(f"monitor must name one of the epoch's values (such as 'val_loss'),"
                             f" got {monitor!r}")
        one_of("mode", mode, ("auto", "min", "max"))
        self.monitor = monitor
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.min_delta = non_negative("min_delta", min_delta)
        self.best, self.best_epoch = None, 0

    def on_train_begin(self, logs):
        self.best, self.best_epoch = None, 0

    def _current(self, logs):
        """The monitored value in ``logs`` (another callback may have added it); InputError
        saying how to get it when absent."""
        check_computed(self.monitor, list(logs), f"{type(self).__name__} monitors")
        return float(logs[self.monitor])

    def _improved(self, epoch, current) -> bool:
        """Whether ``current`` beats the best value so far; if so, it becomes the best."""
        if math.isnan(current):
            return False
        better = self.best is None or (current < self.best - self.min_delta if self.mode == "min"
                                       else current > self.best + self.min_delta)
        if better:
            self.best, self.best_epoch = current, epoch
        return better


def weights_of(network):
    """Copies (on the backend, same device) of every layer's parameters and buffers, as
    ``(layer, name, array)``: the training loop keeps changing or reusing the arrays it gives
    the layers."""
    copies = []
    for layer in walk(network.layers):
        for name in getattr(layer, "params", ()) + getattr(layer, "buffers", ()):
            value = getattr(layer, name)
            copies.append((layer, name, namespace(value).asarray(value, copy=True)))
    return copies


class EarlyStopping(_Monitoring):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs (Keras's).

    It stops after ``patience`` epochs in a row without improvement (0 or 1: the first one);
    ``min_delta`` is the least change that counts as one; ``mode`` as in Keras ("auto": "max" for
    accuracy-like names, else "min"). ``restore_best_weights=True`` gives the network, when
    training ends, the parameters and buffers (BatchNorm's running statistics) of the best epoch.
    After training, ``best``, ``best_epoch`` and ``stopped_epoch`` (0 if it did not stop
    training) tell what happened.
    """

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto",
                 restore_best_weights=False):
        super().__init__(monitor, mode, min_delta)
        self.patience = integer("patience", patience, low=0)
        self.restore_best_weights = bool(restore_best_weights)
        self.wait, self.stopped_epoch, self.best_weights = 0, 0, None

    def on_train_begin(self, logs):
        super().on_train_begin(logs)
        self.wait, self.stopped_epoch, self.best_weights = 0, 0, None

    def on_epoch_end(self, epoch, logs):
        if self._improved(epoch, self._current(logs)):
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = weights_of(self.network)
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            epochs = "epoch" if self.wait == 1 else "epochs"
            restored = (f"; restoring the weights of epoch {self.best_epoch}"
                        if self.best_weights is not None else "")
            self.history.stop_reason = (
                f"early stopping: {self.monitor} did not improve for {self.wait} {epochs} "
                f"(best {self.best:g} in epoch {self.best_epoch}){restored}")
            self.network.stop_training = True

    def on_train_end(self, logs):
        if self.best_weights is not None:
            for layer, name, value in self.best_weights:
                setattr(layer, name, value)

    def __repr__(self):
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"mode={self.mode!r})")


VALUES = ("loss", "accuracy", "val_loss", "val_accuracy")  # what an epoch may compute


def check_computed(name, computed, what):
    """InputError unless ``computed`` (the names of the epoch's values) holds ``name``, saying
    how to get it."""
    if name not in computed:
        raise InputError(
            f"{what} {name!r}, which this training does not compute (its values per epoch: "
            f"{', '.join(computed)}): give fit validation_data=(x, y) or validation_split for "
            "'val_loss' and 'val_accuracy', metrics=['accuracy'] for 'accuracy', or use one of "
            "those values")


def path_fields(path) -> list:
    """The names in the format fields of a checkpoint path (``{epoch}``, ``{val_loss:.3f}``);
    InputError for a path that cannot be filled in with the epoch and the epoch's values."""
    fix = ("its fields may be {epoch} and the epoch's values, e.g. "
           "'net-{epoch:03d}-{val_loss:.3f}.npz'")
    try:
        names = [field for _, field, _, _ in string.Formatter().parse(path) if field is not None]
        path.format_map({name: 1 if name == "epoch" else 0.5 for name in names})
    except (KeyError, AttributeError, IndexError, ValueError, TypeError) as exc:
        raise InputError(f"the checkpoint path {path!r} cannot be filled in ({exc!r}): "
                         f"{fix}") from None
    bad = [name for name in names if name not in ("epoch", *VALUES)]
    if bad:
        raise InputError(f"the checkpoint path {path!r} has the field {{{bad[0]}}}: {fix}")
    return names


class ModelCheckpoint(_Monitoring):
    """Save the network with :meth:`portanet.Network.save` at the end of each epoch.

    ``path`` may hold ``{epoch}`` and the epoch's values (``"net-{epoch:03d}-{val_loss:.3f}.npz"``).
    ``save_best_only=True`` saves only when ``monitor`` improved (``mode`` as for
    :class:`EarlyStopping`), so ``path`` holds the best network so far. Files are written
    atomically (a temporary file renamed into place; a disk that refuses the write raises
    :class:`~portanet.WriteError` and leaves the checkpoint before); under MPI only rank 0
    writes. The path and whether the network can be saved are checked before training starts.
    """

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto"):
        super().__init__(monitor, mode)
        if not isinstance(path, (str, os.PathLike)):
            raise InputError(f"ModelCheckpoint needs a file path, got {path!r}")
        self.path = os.fspath(path)
        self.fields = path_fields(self.path)
        self.save_best_only = bool(save_best_only)

    def on_train_begin(self, logs):
        super().on_train_begin(logs)
        for name in self.fields:
            if name != "epoch":
                check_computed(name, self.params["metrics"], "the checkpoint path names")
        if self.world.is_root:
            check_writable(self.path.format_map({name: 1 for name in self.fields}),
                           "the checkpoint")
            describe(self.network)  # ModelFileError now if a layer or loss cannot be saved

    def on_epoch_end(self, epoch, logs):
        if self.save_best_only and not self._improved(epoch, self._current(logs)):
            return
        if self.world.is_root:
            self.network.save(self.path.format_map({**logs, "epoch": epoch}))

    def __repr__(self):
        return f"ModelCheckpoint({self.path!r}, monitor={self.monitor!r})"


def _takes_rate(schedule) -> bool:
    """Whether ``schedule`` takes ``(epoch, learning_rate)`` rather than ``(epoch)``;
    InputError unless it is a function taking one of the two."""
    if not callable(schedule):
        raise InputError(f"LearningRateScheduler needs a function schedule(epoch) or "
                         f"schedule(epoch, learning_rate) -> learning rate, got {schedule!r}")
    try:
        parameters = list(inspect.signature(schedule).parameters.values())
    except (TypeError, ValueError):  # a callable without a signature: called the Keras way
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in parameters) or len(positional) >= 2:
        return True
    if len(positional) == 1:
        return False
    raise InputError(f"LearningRateScheduler's schedule must take the epoch (and optionally the "
                     f"learning rate so far): {schedule!r} takes no positional argument")


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of each epoch to
    ``schedule(epoch, learning_rate)``, or ``schedule(epoch)`` for a function of one argument.

    As in Keras, ``epoch`` counts from **0** here (the first epoch is 0; Keras schedules work
    unchanged) and ``learning_rate`` is the rate so far. The rate reaches a compiled step as an
    argument, so changing it does not recompile. For a schedule per step instead, give the
    optimizer ``schedule=`` (:mod:`portanet.optimizers`); the two do not combine. Layers in the
    tutorial's self-updating style keep the rate training started with.
    """

    def __init__(self, schedule):
        self.schedule = schedule
        self.takes_rate = _takes_rate(schedule)

    def on_train_begin(self, logs):
        if self.optimizer.schedule is not None:
            raise InputError(f"the optimizer {self.optimizer!r} has its own schedule: use "
                             "either it or LearningRateScheduler, not both")

    def on_epoch_begin(self, epoch):
        rate = (self.schedule(epoch - 1, self.optimizer.learning_rate) if self.takes_rate
                else self.schedule(epoch - 1))
        self.optimizer.learning_rate = positive(
            f"the learning rate from the schedule (epoch {epoch - 1})", rate)

    def __repr__(self):
        return f"LearningRateScheduler({getattr(self.schedule, '__name__', self.schedule)})"


class CSVLogger(Callback):
    """Write one CSV row per epoch to ``path``: the epoch (from 1) and the epoch's values.

    Each row is appended and flushed to disk as its epoch ends, so a crash keeps the rows so
    far; a disk that refuses a row (full) raises :class:`~portanet.WriteError` and leaves the
    rows before it whole. ``append=False`` starts the file afresh; ``append=True`` adds to it
    (the header only if the file is empty). Under MPI only rank 0 writes.
    """

    def __init__(self, path, append=False):
        if not isinstance(path, (str, os.PathLike)):
            raise InputError(f"CSVLogger needs a file path, got {path!r}")
        self.path = Path(path)
        self.append = bool(append)
        self.keys = None  # the columns, from the first epoch's values

    def on_train_begin(self, logs):
        if self.world.is_root:
            check_writable(self.path, "the CSV log")
            if not self.append:
                write_atomically(self.path, lambda stream: None, "the CSV log")
        self.keys = None

    def on_epoch_end(self, epoch, logs):
        if not self.world.is_root:
            return
        rows = io.StringIO(newline="")
        writer = csv.writer(rows)
        if self.keys is None:
            self.keys = list(logs)
        if not (self.path.exists() and self.path.stat().st_size):
            writer.writerow(["epoch", *self.keys])
        writer.writerow([epoch, *(logs.get(key, "") for key in self.keys)])
        append(self.path, rows.getvalue().encode(), "the CSV log")

    def __repr__(self):
        return f"CSVLogger({str(self.path)!r})"


class BackupAndRestore(Callback):
    """Back up the training state after every epoch, and resume from it (Keras's).

    When ``fit`` starts and ``path`` holds a training state (see
    :func:`portanet.save_training`), the network's weights, the optimizer's state, step count
    and learning rate, and portanet's random generator are restored from it, and training goes
    on after its epoch: the same ``fit`` called again after an interruption ends with the
    weights the uninterrupted one would have had. After every epoch the state is written to
    ``path`` (.npz or .safetensors), atomically. Resuming is at epoch granularity: an epoch cut
    short is trained again from its start. ``delete_checkpoint`` (as in Keras) removes the file
    when training ends other than by Ctrl-C. The network and optimizer must be made as for the
    first run (InputError otherwise); under MPI every rank restores and rank 0 writes.
    """

    def __init__(self, path, delete_checkpoint=True):
        if not isinstance(path, (str, os.PathLike)):
            raise InputError(f"BackupAndRestore needs a file path, got {path!r}")
        self.path = Path(path)
        self.delete_checkpoint = boolean("delete_checkpoint", delete_checkpoint)

    def on_train_begin(self, logs):
        self.restored_epoch = resume(self.path, self.network, self.optimizer)

    def on_epoch_end(self, epoch, logs):
        if self.world.is_root:
            save_training(self.path, self.network, self.optimizer, epoch)

    def on_train_end(self, logs):
        if self.delete_checkpoint and not self.history.interrupted and self.world.is_root:
            self.path.unlink(missing_ok=True)

    def __repr__(self):
        return f"BackupAndRestore({str(self.path)!r})"
