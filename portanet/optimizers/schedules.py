"""Learning-rate schedules: functions ``schedule(iteration) -> learning rate`` (the iteration
counts steps from 0) for an optimizer's ``schedule`` argument."""

import functools
import math

from .._checks import integer, number, positive


def step_decay(initial, drop, every):
    """``initial * drop ** (iteration // every)``: the rate times ``drop`` every ``every`` steps."""
    initial = positive("initial", initial)
    drop = number("drop", drop, lambda v: 0 < v <= 1, "a number in (0, 1]")
    every = integer("every", every)
    return functools.partial(_step_decay, initial, drop, every)


def _step_decay(initial, drop, every, iteration):
    return initial * drop ** (iteration // every)


def exponential_decay(initial, rate, steps):
    """``initial * rate ** (iteration / steps)``: the rate times ``rate`` per ``steps`` steps."""
    initial = positive("initial", initial)
    rate = number("rate", rate, lambda v: 0 < v <= 1, "a number in (0, 1]")
    steps = positive("steps", steps)
    return functools.partial(_exponential_decay, initial, rate, steps)


def _exponential_decay(initial, rate, steps, iteration):
    return initial * rate ** (iteration / steps)


def cosine_decay(initial, total_steps, final=0.0):
    """Half a cosine from ``initial`` to ``final`` over ``total_steps``, then ``final``."""
    initial = positive("initial", initial)
    total_steps = integer("total_steps", total_steps)
    final = number("final", final, lambda v: 0 <= v <= initial, f"a number in [0, {initial:g}]")

    return functools.partial(_cosine_decay, initial, total_steps, final)


def _cosine_decay(initial, total_steps, final, iteration):
    progress = min(iteration, total_steps) / total_steps
    return final + (initial - final) * 0.5 * (1 + math.cos(math.pi * progress))
