"""The embedding lookup, attention and the recurrent loops (see :mod:`portanet.backend.kernels`)."""

from __future__ import annotations

import math

from array_api_compat import device

from ...errors import ShapeError
from ..ops import is_traced, namespace, row_major, softmax, softmax_vjp
from .registry import kernel, portable


@portable("embedding")
def portable_embedding(table, ids):
    """``take`` of the rows; the gradient of the table adds up the output gradient's rows that
    share an id by a product with the ids' one-hot matrix (the array API has no scatter-add):
    one matmul, traced by ``jax.jit`` like any other and cheap for small vocabularies (it costs
    ``positions x vocabulary`` values)."""
    xp = namespace(table)
    flat = xp.reshape(ids, (-1,))
    rows = xp.take(table, flat, axis=0)

    def backward(grad_output):
        vocabulary = xp.arange(table.shape[0], dtype=ids.dtype, device=device(ids))
        one_hot = xp.astype(xp.expand_dims(flat, axis=1) == vocabulary, grad_output.dtype)
        return xp.matrix_transpose(one_hot) @ xp.reshape(grad_output, (-1, table.shape[1]))
    return xp.reshape(rows, (*ids.shape, table.shape[1])), backward


@portable("attention")
def portable_attention(q, k, v, causal):
    """The scores by matrix products, the causal mask added as ``-inf`` above the diagonal (by
    comparing position indices: no boolean indexing, so it traces), softmax shifted by the row
    maximum."""
    xp = namespace(q)
    scale = 1.0 / math.sqrt(q.shape[-1])
    q = q * scale  # scaled here: q is smaller than the scores
    scores = q @ xp.matrix_transpose(k)
    if causal:
        positions = xp.arange(q.shape[-2], device=device(q))
        allowed = xp.expand_dims(positions, axis=1) >= positions  # (T, T): key <= query
        scores += xp.where(allowed, xp.asarray(0.0, dtype=scores.dtype, device=device(q)),
                           xp.asarray(-math.inf, dtype=scores.dtype, device=device(q)))
    weights = softmax(scores)

    def backward(grad_output):
        grad_scores = softmax_vjp(weights, grad_output @ xp.matrix_transpose(v))
        return ((grad_scores @ k) * scale, xp.matrix_transpose(grad_scores) @ q,
                xp.matrix_transpose(weights) @ grad_output)
    return weights @ v, backward


@portable("scan")
def portable_scan(step, carry, xs, reverse=False):
    """A Python loop over the time steps (unrolled where a compiler traces it)."""
    steps = xs[0].shape[0]
    ys = [None] * steps
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        carry, ys[t] = step(carry, tuple(x[t, ...] for x in xs))
    xp = namespace(xs[0])
    return carry, tuple(xp.stack([y[k] for y in ys], axis=0) for k in range(len(ys[0])))


def lstm_gate_scale(weight_hh):
    """The factor of each gate row of :func:`lstm`'s ``projected`` and ``weight_hh``: 1/2 for the
    sigmoid gates ``i, f, o``, 1 for ``g``: one ``tanh`` over all four gates then gives ``g``
    and, as ``sigmoid(a) = (1 + tanh(a / 2)) / 2``, ``i, f, o``. ``(4 H,)``, in ``weight_hh``'s
    dtype and device."""
    xp, size = namespace(weight_hh), weight_hh.shape[-1]
    half = xp.full((size,), 0.5, dtype=weight_hh.dtype, device=device(weight_hh))
    return xp.concat([half, half, xp.ones_like(half), half])


@portable("lstm")
def portable_lstm(projected, weight_hh, h0, c0):
    """The LSTM loop as two scans, one ``tanh`` over the four gates (see
    :func:`lstm_gate_scale`)."""
    xp, size = namespace(projected), h0.shape[-1]
    scale = lstm_gate_scale(weight_hh)
    weights = row_major(xp.matrix_transpose(weight_hh * scale[:, None]))

    def forward(carry, inputs):
        h, c = carry
        tanh_gates = xp.tanh(inputs[0] + h @ weights)
        sigmoids = 0.5 * tanh_gates + 0.5  # the g block's is not used
        i, f, o = sigmoids[:, :size], sigmoids[:, size:2 * size], sigmoids[:, 3 * size:]
        c_new = f * c + i * tanh_gates[:, 2 * size:3 * size]
        tanh_c = xp.tanh(c_new)
        return (o * tanh_c, c_new), (o * tanh_c, tanh_gates, c, tanh_c)

    _, (hidden, *records) = scan(forward, (h0, c0), (projected,))

    def step_back(grad_carry, inputs):
        tanh_gates, c, tanh_c, grad_output = inputs
        sigmoids = 0.5 * tanh_gates + 0.5
        i, f, o = sigmoids[:, :size], sigmoids[:, size:2 * size], sigmoids[:, 3 * size:]
        g = tanh_gates[:, 2 * size:3 * size]
        grad_h = grad_carry[0] + grad_output
        grad_c = grad_carry[1] + grad_h * o * (1.0 - tanh_c * tanh_c)
        # the slopes: sigmoid' = (1 - tanh(a / 2)^2) / 4, tanh' = 1 - tanh(a)^2
        slopes = (1.0 - tanh_gates * tanh_gates) * (scale * scale)
        grad_gates = xp.concat([grad_c * g, grad_c * c, grad_c * i, grad_h * tanh_c],
                               axis=-1) * slopes
        return (grad_gates @ weight_hh, grad_c * f), (grad_gates,)

    def backward(grad_hidden):
        zeros = xp.zeros(h0.shape, dtype=h0.dtype, device=device(h0))
        (grad_h0, grad_c0), (grad_projected,) = scan(step_back, (zeros, zeros),
                                                     (*records, grad_hidden), reverse=True)
        return grad_projected, grad_h0, grad_c0
    return hidden, backward


def embedding(table, ids):
    """Rows ``ids`` (integers of any shape, in ``[0, len(table))``) of ``table`` (rows,
    dim): ``(out, backward)``, ``out`` shaped ``(*ids.shape, dim)``."""
    return kernel("embedding", table)(table, ids)


def attention(q, k, v, causal):
    """``softmax(q k^T / sqrt(d)) v`` over the last two axes of ``(N, heads, T, d)`` arrays,
    ``causal``: each query only sees keys at or before its position: ``(out, backward)``."""
    if not q.shape == k.shape == v.shape or q.ndim != 4:
        raise ShapeError("attention takes queries, keys and values of one shape (batch, heads, "
                         f"positions, features), got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    return kernel("attention", q)(q, k, v, bool(causal))


def scan(step, carry, xs, reverse=False):
    """``step(carry, x_t) -> (carry, y_t)`` applied along the first axis of the arrays ``xs``
    (a tuple; ``x_t`` the tuple of their slices ``t``), backwards with ``reverse``: ``(the
    last carry, ys)``, ``ys`` the tuple of the ``y_t`` stacked on a new first axis. ``carry``
    and ``y_t`` are tuples of arrays whose shapes and dtypes stay the same at every step.
    Native loops (JAX's ``lax.scan``) run only inside a traced function: eagerly they would
    compile ``step``, a new closure at each call, every time."""
    run = kernel("scan", xs[0]) if is_traced(xs[0]) else portable_scan
    return run(step, tuple(carry), tuple(xs), reverse)


def lstm(projected, weight_hh, h0, c0):
    """The LSTM recurrence in PyTorch's gate order ``i, f, g, o``: ``projected`` ``(T, N, 4 H)``
    the input projections plus both biases times :func:`lstm_gate_scale` (the sigmoid gates'
    columns halved: a product with scaled weights costs nothing more), ``weight_hh`` ``(4 H,
    H)``, ``h0`` and ``c0`` the initial states ``(N, H)``. Per step ``a = projected[t] / scale +
    h @ weight_hh.T``, ``c' = f * c + i * g``, ``h' = o * tanh(c')``. ``(hidden, backward)``:
    ``hidden`` ``(T, N, H)`` every step's ``h``; ``backward(grad_hidden)`` (``(T, N, H)``) ``->
    (grad_a (T, N, 4 H), grad_h0, grad_c0)``: the gradient of ``a``, unscaled."""
    return kernel("lstm", projected)(projected, weight_hh, h0, c0)
