"""Callbacks that watch one of the epoch's values: :class:`EarlyStopping` and
:class:`ModelCheckpoint`."""

import math
import os
import string

from .._checks import integer, non_negative, one_of
from ..backend import namespace
from ..errors import InputError
from ..layers.base import walk
from ..saving.files import check_writable
from ..saving.format import describe
from .base import Callback


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
