"""What ``fit`` returns."""

from __future__ import annotations


class History:
    """What ``fit`` returns: per-epoch values in ``history`` ("loss", "val_loss", ...). "loss" is
    the epoch's mean loss, which fit's epoch line prints as ``error=`` (the tutorial's name).

    ``compiled`` names how the step ran ("jax.jit" or "eager"); ``step_traces`` counts the
    runs of the step's Python code (every step when eager; once per batch shape when compiled);
    ``interrupted`` is True when Ctrl-C ended training early. ``stop_reason`` says why training
    ended ("completed", "interrupted (Ctrl-C)", "early stopping: ...") and ``stopped_epoch`` in
    which epoch (the last one trained; 0 if none). Under ``precision="mixed_float16"``,
    "skipped_steps" counts each epoch's steps skipped because their gradients overflowed and
    "loss_scale" gives the loss scale at its end (see :mod:`portanet.precision`).
    """

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.interrupted = False
        self.stop_reason: str | None = None  # set when training ends (a callback may set it)
        self.stopped_epoch = 0
        self.compiled = "eager"
        self.step_traces = 0

    def record(self, epoch, values):
        self.epoch.append(epoch)
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"
