"""The base of every callback (:class:`Callback`: hooks that do nothing) and the
:class:`CallbackList` ``fit`` calls them through."""

from ..errors import InputError


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
