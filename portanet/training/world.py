"""Data-parallel training over MPI (mpi4py): one network, trained by N processes together.

Start the same program on N processes (``mpirun -n N python train.py``, or
``mpirun -n N portanet train --distributed``) and train with ``net.fit(..., distributed=True)``.
Every rank holds the whole network and the whole data set. Rank 0's parameters are broadcast at
the start; each global batch (``batch_size`` samples, in rank 0's shuffled order) is split into
one shard per rank; each rank scales its loss gradient by its share of the batch, and after
backward one allreduce sums the ranks' gradients, so every rank applies the update that one
process training on the whole batch would, and all ranks keep identical weights. Only rank 0
prints.

Every collective waits at most ``timeout`` seconds (``PORTANET_MPI_TIMEOUT``, default 300): a
rank that hangs or dies makes the others stop the whole job with a message, and a rank that
raises prints its traceback and stops the job, instead of leaving the others waiting forever.

Gradients of GPU arrays (CuPy, torch on CUDA) go to MPI as device buffers when the MPI library is
CUDA-aware (``MPI.Query_cuda_support()``, or ``PORTANET_MPI_CUDA_AWARE=1``), and through host
memory otherwise; :attr:`World.transport` says which was used. A bare ``PORTANET_DEVICE=cuda``
gives each rank the GPU of its local rank (see :func:`portanet.backend.local_rank`).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
import time
import traceback

from ..backend import (
    cuda_buffer,
    dtype_name,
    get_backend,
    host_array,
    host_empty,
    namespace,
    share_cpu_cores,
    to_numpy,
)
from ..errors import DistributedError, InputError, TrainingError
from ..layers.base import is_native, unique, walk

DEFAULT_TIMEOUT = 300.0
SPIN_SECONDS = 0.01  # how long a wait for the other ranks polls without sleeping
INSTALL = ("pip install 'portanet[mpi]' (mpi4py and Open MPI); on a cluster, pip install mpi4py "
           "built against the cluster's MPI")

_default: World | None = None


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(f"distributed training needs mpi4py and an MPI library ({exc}). "
                               f"Install them with: {INSTALL}") from exc
    return MPI


def _cuda_aware(mpi) -> bool:
    """Whether the MPI library takes GPU buffers: PORTANET_MPI_CUDA_AWARE, else its own answer."""
    setting = os.environ.get("PORTANET_MPI_CUDA_AWARE", "").strip()
    if setting:
        return setting not in ("0", "false", "no")
    query = getattr(mpi, "Query_cuda_support", None)
    return bool(query()) if query is not None else False


def init(timeout: float | None = None) -> World:
    """The :class:`World` of all processes of this MPI job (made on first call)."""
    global _default
    if _default is None:
        _default = World(timeout=timeout)
    return _default


def resolve(distributed) -> SingleProcess:
    """``fit``'s ``distributed`` argument as a world: False/None → :data:`SINGLE`, True →
    :func:`init`, a world → itself."""
    if distributed is None or distributed is False:
        return SINGLE
    if distributed is True:
        return init()
    if isinstance(distributed, SingleProcess):
        return distributed
    raise InputError(f"distributed must be True, False or a portanet.distributed.World, "
                     f"got {distributed!r}")


class SingleProcess:
    """A world of one: the interface the training loop uses to work with the other processes,
    for a process that has none. :class:`World` is the same for the ranks of an MPI job."""

    rank, size, local_rank, local_size = 0, 1, 0, 1

    @property
    def is_root(self) -> bool:
        """True on rank 0, the rank that prints and writes files."""
        return self.rank == 0

    def together(self):
        """A block all ranks go through together (see :meth:`World.together`)."""
        return contextlib.nullcontext()

    def sum(self, values, what="a sum"):
        """The element-wise sum over the ranks of a list of numbers."""
        return [float(value) for value in values]

    def broadcast(self, array, what="a broadcast"):
        """Rank 0's NumPy ``array``."""
        return array

    def shard(self, start: int, stop: int) -> tuple[int, int]:
        """This rank's part ``[lo, hi)`` of samples ``[start, stop)``."""
        return start, stop

    def join(self, network, samples, input_values, target_values, batch_size):
        """Called as training starts with the training data's number of samples (None: not
        known ahead) and values per input and target sample (-1: not known ahead): check that
        the ranks agree and share rank 0's weights."""

    def average_buffers(self, layers):
        """Make non-trained state (BatchNorm's running statistics) the mean over the ranks."""

    def reduce_gradients(self, grads, stop: bool):
        """``(sum over the ranks of the flat gradient buffers grads, whether any rank asked to
        stop)``."""
        return grads, stop


SINGLE = SingleProcess()


class World(SingleProcess):
    """The MPI processes (ranks) training one network together.

    ``comm`` is an mpi4py communicator (``MPI.COMM_WORLD`` by default); ``timeout`` bounds every
    wait for the other ranks, in seconds. ``comm_seconds`` adds up the time spent exchanging
    gradients (waiting for slower ranks included) and ``steps`` counts the exchanges.
    """

    def __init__(self, comm=None, timeout: float | None = None):
        self._mpi = _mpi()
        self.comm = comm if comm is not None else self._mpi.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(self._mpi.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        self.threads = share_cpu_cores(self.local_size)  # no BLAS threads fighting over cores
        self.timeout = _seconds(timeout if timeout is not None else
                                os.environ.get("PORTANET_MPI_TIMEOUT") or DEFAULT_TIMEOUT)
        self.cuda_aware = _cuda_aware(self._mpi)
        self.transport = "none (one process)" if self.size == 1 else "not used yet"
        self.comm_seconds, self.steps = 0.0, 0

    def __repr__(self):
        return f"World(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"

    # -- failing together ---------------------------------------------------------------
    def abort(self, message: str):
        """Print ``message`` for this rank and stop every rank of the job."""
        if self.size == 1:
            raise DistributedError(message)
        sys.stdout.flush()
        sys.stderr.write(f"portanet.training.world: rank {self.rank} of {self.size}: {message}. "
                         "Stopping every rank.\n")
        sys.stderr.flush()
        self.comm.Abort(1)

    @contextlib.contextmanager
    def together(self):
        """A block all ranks go through together: an exception on one rank prints its traceback
        and stops the job, so no rank waits for one that has gone. TrainingError and
        DistributedError, which every rank raises alike, pass through."""
        try:
            yield
        except (TrainingError, DistributedError):
            raise
        except BaseException as exc:
            if self.size == 1:
                raise
            traceback.print_exc()
            self.abort(f"{type(exc).__name__}: {exc}")

    def _wait(self, request, what):
        """Wait for a nonblocking collective; abort the job if it takes over ``timeout``."""
        started = time.perf_counter()
        while not request.Test():
            waited = time.perf_counter() - started
            if waited > self.timeout:
                self.abort(f"no answer from the other ranks for {self.timeout:g} s in {what}: "
                           "a rank has stopped, hung or failed (PORTANET_MPI_TIMEOUT sets "
                           "the limit)")
            # poll at once while the wait is step-sized, then give the core to other processes
            time.sleep(0 if waited < SPIN_SECONDS else 1e-3)

    # -- collectives ----------------------------------------------------------------------
    def sum(self, values, what="a sum"):
        """The element-wise sum over the ranks of a list of numbers (float64)."""
        send = host_array(values, "float64")
        if self.size == 1:
            return send.tolist()
        total = host_empty(send.shape)
        self._wait(self.comm.Iallreduce(send, total, op=self._mpi.SUM), what)
        return total.tolist()

    def agree(self, **values):
        """Raise DistributedError on every rank unless all ranks have the same ``values``."""
        mine = [float(value) for value in values.values()]
        both = host_array(mine + [-value for value in mine], "float64")
        extremes = host_array(both)
        if self.size > 1:
            self._wait(self.comm.Iallreduce(both, extremes, op=self._mpi.MAX), "a check")
        high, low = extremes[:len(mine)], -extremes[len(mine):]
        differ = [f"{name} ({low[k]:g} to {high[k]:g})" for k, name in enumerate(values)
                  if low[k] != high[k]]
        if differ:
            raise DistributedError("the ranks disagree on " + ", ".join(differ) +
                                   ": give every rank the same data and network")

    def broadcast(self, array, what="a broadcast"):
        """Rank 0's NumPy ``array`` on every rank (same shape and dtype on every rank)."""
        buffer = host_array(array)
        if self.size > 1:
            self._wait(self.comm.Ibcast(buffer, root=0), what)
        return buffer

    def shard(self, start: int, stop: int) -> tuple[int, int]:
        """This rank's part ``[lo, hi)`` of samples ``[start, stop)``: contiguous, the ranks'
        sizes differing by at most one (a rank may get none of a batch smaller than the world)."""
        lo, hi = _shard_of(stop - start, self.rank, self.size)
        return start + lo, start + hi

    def gather(self, rows, n: int):
        """Rank 0 gets the rows of all ranks' shards of ``[0, n)`` in order (NumPy, 2-D);
        the other ranks get None."""
        rows = host_array(rows, "float64")
        if self.size == 1:
            return rows
        width = rows.shape[1]
        counts = [(hi - lo) * width for lo, hi in
                  (_shard_of(n, rank, self.size) for rank in range(self.size))]
        gathered = host_empty((n, width)) if self.is_root else None
        target = [gathered, (counts, [0, *itertools.accumulate(counts[:-1])]),
                  self._mpi.DOUBLE] if self.is_root else None
        self._wait(self.comm.Igatherv(rows, target, root=0), "gathering the outputs")
        return gathered

    # -- the network's arrays -------------------------------------------------------------
    def join(self, network, samples, input_values, target_values, batch_size):
        """Check that every rank trains alike, then give all ranks rank 0's weights."""
        tutorial_style = [layer for layer in network.layers if not is_native(layer)]
        if tutorial_style:
            raise InputError(f"{tutorial_style[0]!r} updates its own weights (the tutorial's "
                             "backward_propagation), which distributed training cannot "
                             "average: write it with apply() instead")
        layers = unique(walk(network.layers))
        sizes = [math.prod(getattr(layer, name).shape) for layer in layers
                 for name in layer.params + layer.buffers]
        self.agree(training_samples=-1 if samples is None else samples,
                   input_values=input_values, target_values=target_values,
                   batch_size=batch_size,
                   weight_arrays=len(sizes), weights=sum(sizes))
        for layer in layers:
            weights = layer.get_weights()
            if weights:
                layer.set_weights([self.broadcast(w, f"the broadcast of {layer!r}'s weights")
                                   for w in weights])

    def reduce_gradients(self, grads, stop: bool):
        """Sum the flat gradient buffers (one per dtype) over the ranks; ``stop``, this rank's
        wish to end training (Ctrl-C), travels with the first buffer, so all ranks stop after
        the same step.

        Each rank scaled its loss gradient by its share of the global batch, so the sum is the
        batch mean one process would compute; a rank without samples in the batch sends zeros.
        """
        started = time.perf_counter()
        what = f"the gradient allreduce of step {self.steps + 1}"
        xp = namespace(grads[0])
        first = self._allreduce(xp.concat([grads[0], xp.full_like(grads[0][:1], float(stop))]),
                                what)
        totals = [first[:-1], *(self._allreduce(g, what) for g in grads[1:])]
        wants_stop = float(first[-1]) > 0
        self.comm_seconds += time.perf_counter() - started
        self.steps += 1
        return totals, wants_stop

    def average_buffers(self, layers):
        """Make non-trained state (BatchNorm's running statistics) the mean over the ranks."""
        for layer in unique(walk(layers)):
            for name in getattr(layer, "buffers", ()):
                total = self._allreduce(getattr(layer, name), f"averaging {layer!r}.{name}")
                setattr(layer, name, total / self.size)

    def _allreduce(self, array, what):
        """The element-wise sum over the ranks of backend ``array``: GPU buffers straight to a
        CUDA-aware MPI, everything else through host memory."""
        if self.size == 1:
            return array
        device_buffer = cuda_buffer(array)
        if device_buffer is not None and self.cuda_aware:
            total = namespace(array).empty_like(array)
            self._wait(self.comm.Iallreduce(device_buffer, cuda_buffer(total),
                                            op=self._mpi.SUM), what)
            self.transport = "CUDA-aware MPI (GPU buffers)"
            return total
        send = to_numpy(array)  # arrays made by array operations are C-contiguous
        total = host_empty(send.shape, send.dtype)
        self._wait(self.comm.Iallreduce(send, total, op=self._mpi.SUM), what)
        self.transport = "host memory" + (" (this MPI is not CUDA-aware)"
                                          if device_buffer is not None else "")
        return get_backend().asarray(total, dtype_name(array))


def _seconds(value) -> float:
    """``value`` (a number or its text) as a positive number of seconds, else InputError."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not seconds > 0:
        raise InputError(f"the MPI timeout (PORTANET_MPI_TIMEOUT or timeout=) must be a positive "
                         f"number of seconds, got {value!r}")
    return seconds


def _shard_of(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous part of ``range(n)`` split into ``size`` near-equal parts."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)
