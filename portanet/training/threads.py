"""Data parallelism inside one process: an eager training step whose batch is split between
threads.

NumPy runs each element-wise operation on one core, but lets other threads run meanwhile: the
rows of a large batch, split between threads (each running the same pure step on its rows, BLAS
on one core each), keep every core busy. Each part's gradient is scaled by its share of the
batch, the flat gradient buffers and the loss sums are added up, and one update follows, so a
split step equals the whole-batch step up to rounding. Only networks of built-in layers without
buffers are split (BatchNorm's batch statistics would change with the split), and only batches
that carry enough element-wise work (see :meth:`SplitGradients.parts`). """

from __future__ import annotations

import functools
import math
import operator
from concurrent.futures import ThreadPoolExecutor, wait

from ..backend import blas_threads
from ..layers.base import is_builtin, walk, walk_shapes

# A batch is split when its layers' inputs hold at least WORK_PER_PARAMETER values per parameter
# and MIN_WORK in all. Below that, matrix products dominate the step (the benchmark's MLPs,
# about 1 value per parameter, ran twice as slow split on 2 cores; its CNN, 27, and transformer,
# 39, ran 18 % and 25 % faster) or the step is too short for threads to pay.
WORK_PER_PARAMETER = 8
MIN_WORK = 1 << 20
MIN_ROWS = 8  # per thread


def splittable(step) -> bool:
    """Whether the batches of ``step`` (a :class:`portanet.step.TrainStep`) may be split: every
    layer built in (each sample's output depends on that sample alone) and no buffers."""
    return not step.buffers and all(is_builtin(layer) for layer in walk(step.layers))


class SplitGradients:
    """``step.gradients`` with each large batch split between ``threads`` threads."""

    def __init__(self, step, threads):
        self.step, self.threads = step, threads
        self.pool = None  # made at the first split
        self.parameters = sum(step.layout.sizes)
        self._values = {}  # layer input values per sample, by sample shape

    def parts(self, x) -> int:
        """Into how many parts the batch ``x`` is split (1: not split)."""
        shape = tuple(x.shape[1:])
        if shape not in self._values:
            self._values[shape] = sum(math.prod(s) for _, _, s in
                                      walk_shapes(self.step.layers, shape) if s is not None)
        rows = x.shape[0]
        if rows * self._values[shape] < max(MIN_WORK, WORK_PER_PARAMETER * self.parameters):
            return 1
        return max(1, min(self.threads, rows // MIN_ROWS))

    def __call__(self, params, buffers, batch, share, noise):
        x, y = batch
        parts = self.parts(x)
        if parts == 1:
            return self.step.gradients(params, buffers, batch, share, noise)
        self.step.traces += 1
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="portanet-step")
        rows = x.shape[0]
        bounds = [rows * k // parts for k in range(parts + 1)]

        def part(lo, hi):  # random draws have the batch's rows first
            return self.step.part_gradients(params, buffers, (x[lo:hi, ...], y[lo:hi, ...]),
                                            (hi - lo) / rows * (1 if share is None else share),
                                            [draws[lo:hi, ...] for draws in noise])

        with blas_threads(1):
            others = [self.pool.submit(part, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:])]
            try:
                results = [part(bounds[0], bounds[1])]
            finally:
                wait(others)  # BLAS goes back to all cores only after them
            results += [future.result() for future in others]
        add = functools.partial(functools.reduce, operator.add)
        grads = [add(dtype_grads) for dtype_grads in zip(*(r[0] for r in results))]
        return grads, results[0][1], add(r[2] for r in results)
