"""Callbacks that write a file every epoch: :class:`CSVLogger` (the epoch's values) and
:class:`BackupAndRestore` (the training state, to resume from)."""

import csv
import io
import os
from pathlib import Path

from .._checks import boolean
from ..errors import InputError
from ..saving.files import append, check_writable, write_atomically
from ..saving.state import resume, save_training
from .base import Callback


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
