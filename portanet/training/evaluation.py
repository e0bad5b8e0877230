"""A network run over rows already checked, in inference mode: predictions in batches, and
the loss and accuracy over all rows (or over the ranks' shares of them)."""

from __future__ import annotations

import math

from .._checks import integer
from ..backend import compilers, get_backend, host_concat, namespace, to_numpy
from ..layers.base import not_pure
from ..metrics import accuracy
from .cache import cache_for, own
from .feed import Streamed
from .step import Inference
from .world import SINGLE

PREDICT_VALUES = 2 ** 25  # most values a layer outputs in one predict pass (128 MB in float32)


def predict_rows(network, rows, batch_size=None):
    """``network``'s outputs for backend rows ``rows``, ``batch_size`` rows at a time (default:
    as many as keep every layer's output under PREDICT_VALUES values)."""
    n = rows.shape[0]
    if batch_size is not None:
        integer("batch_size", batch_size)
    else:
        widest = max([math.prod(shape) for _, shape in network.layer_shapes()
                      if shape is not None] + [math.prod(rows.shape[1:])])
        batch_size = max(1, PREDICT_VALUES // widest)
    compiler = compilers.choose(get_backend(), "auto", not_pure(network.layers))
    policy = network.policy
    inference = own(network, ("inference", compiler.name, policy),
                    lambda: Inference(network.layers, policy))
    # compiled once for all networks alike: it depends only on the architecture and the
    # weights it is given
    run = cache_for(network, compiler)(
        ("inference-run", compiler.name, policy), lambda net: compilers.compiled(
            compiler, Inference(net.layers, policy), "the inference forward pass"))
    weights = inference.weights()
    parts = [run(weights, rows[i:min(i + batch_size, n), ...]) for i in range(0, n, batch_size)]
    return parts[0] if len(parts) == 1 else namespace(parts[0]).concat(parts, axis=0)


def score(network, x, y, batch_size=None, world=SINGLE):
    """(mean loss, accuracy) of ``network`` over rows ``x`` with targets ``y``; across the
    ranks of ``world``, each scores its share and all get the sums."""
    n = x.shape[0]
    lo, hi = world.shard(0, n)
    sums = [0.0, 0.0]
    if hi > lo:
        sums = [float(value) for value in _sums(network, x[lo:hi, ...], y[lo:hi, ...],
                                                batch_size)]
    sums = world.sum(sums, "the evaluation")
    return sums[0] / n, sums[1] / n


def _sums(network, x, y, batch_size=None):
    """The loss and the accuracy over rows ``x``, each times their number (where the
    backend computed them: read them once, after the last batch)."""
    out = predict_rows(network, x, batch_size)
    return [network.loss(y, out) * x.shape[0], accuracy(y, out) * x.shape[0]]


def score_stream(network, loader, world=SINGLE):
    """:func:`score` over the batches of ``loader`` (a :class:`portanet.data.Loader`), each
    rank reading only its share of each batch."""
    sums, seen = [0.0, 0.0], 0
    with Streamed(network, loader).epoch(1, world) as batches:
        for _, stop, _, _, rows in batches:
            if rows is not None:
                sums = [a + b for a, b in zip(sums, _sums(network, *rows, rows[0].shape[0]))]
            seen = stop
    sums = world.sum([float(value) for value in sums], "the evaluation")
    return sums[0] / seen, sums[1] / seen


def predict_stream(network, loader):
    """``network``'s outputs for the inputs of ``loader``'s batches, as one NumPy array."""
    with Streamed(network, loader, targets=False).epoch(1, SINGLE) as batches:
        parts = [to_numpy(predict_rows(network, rows, rows.shape[0]))
                 for _, _, _, _, rows in batches]
    return host_concat(parts)
