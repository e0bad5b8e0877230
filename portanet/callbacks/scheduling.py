"""A callback that sets the learning rate every epoch: :class:`LearningRateScheduler`."""

import inspect

from .._checks import positive
from ..errors import InputError
from .base import Callback


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
