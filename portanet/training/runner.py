"""The training step as the loop runs it (:func:`compose`): one function compiled whole in one
process, possibly split between threads where it runs eagerly; two across the ranks of an MPI
job, the gradients then the update, with the world's gradient sum between them."""

import functools

from ..backend import compilers, get_backend, step_threads
from .step import zeros_like_all
from .threads import SplitGradients, splittable


def compose(step, compiler, world):
    """One training step of ``step`` (a :class:`TrainStep`) as the loop runs it:
    ``(params, buffers, optimizer_state, total, batch, rows, scalars, noise, share, wants_stop)
    -> (params, buffers, optimizer_state, total, stop)``. ``total`` sums the batches' losses,
    ``batch`` comes from :class:`portanet.step.Batches`, ``rows`` is its number of rows,
    ``share`` this process's part of the global batch, ``wants_stop()`` this process's wish to
    stop (Ctrl-C), asked once the batch's gradients are known; ``stop`` is whether any process
    wished it.

    In one process the step is one function, compiled whole by ``compiler``; across the ranks
    of ``world`` it is two, gradients then update, with the world's gradient sum between them.
    Eager steps may split large batches between threads (see :mod:`portanet.training.threads`).
    """
    if world.size > 1:  # the ranks of a node share its cores already: no threads
        return _two_halves(step, compiler, world)
    gradients = step.gradients
    threads = step_threads(get_backend().name) if compiler is compilers.EAGER else 1
    if threads > 1 and splittable(step):
        gradients = SplitGradients(step, threads)
    whole = compilers.compiled(compiler, functools.partial(step.whole, gradients=gradients),
                               "the training step", donate=(0, 1, 2))  # not the loss total

    def run(params, buffers, optimizer_state, total, batch, rows, scalars, noise, share,
            wants_stop):
        return (*whole(params, buffers, optimizer_state, total, batch, scalars, noise),
                wants_stop())

    run.parts = [whole]  # what was compiled (each may have fallen back to eager)
    return run


def _two_halves(step, compiler, world):
    """:func:`compose` across MPI ranks: gradients, the world's sum, update."""
    gradients = compilers.compiled(compiler, step.gradients, "the gradient step", donate=(1,))
    update = compilers.compiled(compiler, step.update, "the optimizer update", donate=(0, 1, 2))

    def run(params, buffers, optimizer_state, total, batch, rows, scalars, noise, share,
            wants_stop):
        if rows:
            grads, buffers, sums = gradients(params, buffers, batch, share, noise)
            total = total + sums
        else:  # none of this batch is this rank's: it adds nothing
            grads = zeros_like_all(params)
        grads, stop = world.reduce_gradients(grads, wants_stop())
        params, optimizer_state = update(params, grads, optimizer_state, scalars)
        return params, buffers, optimizer_state, total, stop

    run.parts = [gradients, update]
    return run
