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
every rank.

One module per family: ``base`` (:class:`Callback`, and the :class:`CallbackList` ``fit``
calls), ``monitoring`` (watching a value: :class:`EarlyStopping`, :class:`ModelCheckpoint`),
``scheduling`` (:class:`LearningRateScheduler`) and ``records`` (files written every epoch:
:class:`CSVLogger`, :class:`BackupAndRestore`).
"""

from .base import Callback, CallbackList
from .monitoring import (
    VALUES,
    EarlyStopping,
    ModelCheckpoint,
    check_computed,
    path_fields,
    weights_of,
)
from .records import BackupAndRestore, CSVLogger
from .scheduling import LearningRateScheduler

__all__ = ["Callback", "CallbackList", "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler",
           "CSVLogger", "BackupAndRestore", "weights_of", "check_computed", "path_fields",
           "VALUES"]  # in the reference's order
