"""NumPy's native kernels (see :mod:`portanet.backend.kernels`): the same results as the portable
ones, in fewer passes over memory, with what the array API cannot say (``out=``, views of
windows, ``copyto`` with ``where=``)."""

from __future__ import annotations

import math

import numpy as np

from .constants import GELU_C, GELU_K

CHUNK = 32768  # values per block of an element-wise chain: its temporaries stay in the L2 cache


def floating(x):
    """``x``, or for integers its float64 copy (what the portable kernels' arithmetic gives)."""
    return x if x.dtype.kind in "fc" else x.astype(np.float64)


def lstm(projected, weight_hh, h0, c0):
    """The LSTM kernel (:mod:`portanet.backend.kernels`) in NumPy: every buffer allocated once
    per sequence and each step's element-wise work written in place (``out=``), which the
    array API cannot say. One ``tanh`` gives all four gates, the sigmoid gates' columns being
    halved (``sigmoid(a) = (1 + tanh(a / 2)) / 2``; ``projected`` comes halved). ``hidden`` is
    a time-major view of a batch-major buffer: the layer's output ``(N, T, H)`` needs no copy."""
    steps, n, rows = projected.shape
    size, dtype = rows // 4, projected.dtype
    g_block = slice(2 * size, 3 * size)
    scale, offset, is_tanh = (np.full(rows, value, dtype) for value in (0.5, 0.5, 0.0))
    scale[g_block], offset[g_block], is_tanh[g_block] = 1.0, 0.0, 1.0
    weights = np.ascontiguousarray((weight_hh * scale[:, None]).T)
    gates = np.empty(projected.shape, dtype)  # each step's i, f, g, o
    hidden = np.empty((n, steps, size), dtype)
    cells, tanh_cells = (np.empty((steps, n, size), dtype) for _ in range(2))
    part = np.empty((n, size), dtype)
    h, c = h0, c0
    for t in range(steps):
        a = np.matmul(h, weights, out=gates[t])
        a += projected[t]
        np.tanh(a, out=a)
        a *= scale
        a += offset
        c = np.multiply(a[:, size:2 * size], c, out=cells[t])
        c += np.multiply(a[:, :size], a[:, g_block], out=part)
        h = np.multiply(a[:, 3 * size:], np.tanh(c, out=tanh_cells[t]), out=hidden[:, t])

    def backward(grad_hidden):
        weight = np.ascontiguousarray(weight_hh)
        grad_gates, slopes = np.empty_like(gates), np.empty((n, rows), dtype)
        grad_h, through = np.empty((n, size), dtype), np.zeros((n, size), dtype)
        grad_c, term = np.zeros((n, size), dtype), np.empty((n, size), dtype)
        for t in range(steps - 1, -1, -1):
            a, tanh_c, grad = gates[t], tanh_cells[t], grad_gates[t]
            np.add(grad_hidden[t], through, out=grad_h)
            # dh / dc = o (1 - tanh(c)^2) = o - h tanh(c)
            np.subtract(a[:, 3 * size:], np.multiply(hidden[:, t], tanh_c, out=term), out=term)
            term *= grad_h
            grad_c += term
            np.multiply(grad_c, a[:, g_block], out=grad[:, :size])
            np.multiply(grad_c, cells[t - 1] if t else c0, out=grad[:, size:2 * size])
            np.multiply(grad_c, a[:, :size], out=grad[:, g_block])
            np.multiply(grad_h, tanh_c, out=grad[:, 3 * size:])
            # the slopes (is_tanh + a) (1 - a): sigmoid' = s (1 - s), tanh' = (1 + g) (1 - g)
            grad *= np.add(a, is_tanh, out=slopes)
            grad *= np.subtract(1.0, a, out=slopes)
            grad_c *= a[:, size:2 * size]
            np.matmul(grad, weight, out=through)
        return grad_gates, through, grad_c
    return hidden.transpose(1, 0, 2), backward


def gelu(x):
    """The GELU kernel (:mod:`portanet.backend.kernels`) in NumPy: block by block, so the chain
    of in-place steps works in the cache, the value ``y = x h`` and the slope computed together
    (``h = (1 + t) / 2``, ``t = tanh(x u)``, ``u = C + C K x^2``; the slope
    ``h + y (1 - h) (6 u - 4 C)``), constants in ``x``'s dtype."""
    flat = np.ascontiguousarray(floating(x)).reshape(-1)
    dtype = flat.dtype
    c, ck = dtype.type(GELU_C), dtype.type(GELU_C * GELU_K)
    y, slope = np.empty_like(flat), np.empty_like(flat)
    u, h = np.empty(min(CHUNK, flat.size), dtype), np.empty(min(CHUNK, flat.size), dtype)
    for start in range(0, flat.size, CHUNK):
        block = slice(start, start + CHUNK)
        xs, ys, ss = flat[block], y[block], slope[block]
        us, hs = u[:xs.size], h[:xs.size]
        np.multiply(xs, xs, out=us)
        us *= ck
        us += c
        np.multiply(us, xs, out=hs)
        np.tanh(hs, out=hs)
        hs *= dtype.type(0.5)
        hs += dtype.type(0.5)
        np.multiply(xs, hs, out=ys)
        np.subtract(dtype.type(1), hs, out=ss)
        ss *= ys
        us *= dtype.type(6)
        us -= dtype.type(4) * c
        ss *= us
        ss += hs

    def backward(grad):
        return np.multiply(grad, slope.reshape(x.shape))
    return y.reshape(x.shape), backward


def attention(q, k, v, causal):
    """The attention kernel (:mod:`portanet.backend.kernels`) in NumPy: the heads of a few
    samples at a time, so each block's scores stay in the cache from their product through the
    softmax (in place: causal mask, shift by the maximum, ``exp``, product with the sum's
    reciprocal) to the product with the values; the backward pass goes block by block the same
    way. The scores are kept transposed, a query's in a column: NumPy takes a maximum down the
    columns several times as fast as along the rows; the sums are products with a row of
    ones."""
    q, k, v = floating(q), floating(k), floating(v)
    n, heads, steps, size = q.shape
    dtype = q.dtype
    scale = dtype.type(1.0 / math.sqrt(size))
    # scaled here (q is smaller than the scores), into a C-ordered array: NumPy would give the
    # product the layout of a transposed view, which the reshape would copy
    q = np.multiply(q, scale, out=np.empty(q.shape, dtype)).reshape(n * heads, steps, size)
    k, v = (np.ascontiguousarray(a).reshape(n * heads, steps, -1) for a in (k, v))
    weights = np.empty((n * heads, steps, steps), dtype)  # [head, key, query]
    out = np.empty((n * heads, steps, v.shape[-1]), dtype)
    block = max(1, CHUNK // (steps * steps))  # of heads
    columns = np.empty((min(block, n * heads), 1, steps), dtype)
    ones = np.ones((1, steps), dtype)
    mask = np.tril(np.full((steps, steps), -np.inf, dtype), -1) if causal else None
    for start in range(0, n * heads, block):
        part = slice(start, start + block)
        w = np.matmul(k[part], q[part].transpose(0, 2, 1), out=weights[part])
        c = columns[:w.shape[0]]
        if causal:
            w += mask  # a key after the query
        w -= np.maximum.reduce(w, axis=-2, keepdims=True, out=c)
        np.exp(w, out=w)
        w *= np.reciprocal(np.matmul(ones, w, out=c), out=c)
        np.matmul(w.transpose(0, 2, 1), v[part], out=out[part])

    def backward(grad_output):
        grad = np.ascontiguousarray(grad_output).reshape(out.shape)
        grad_q, grad_k, grad_v = np.empty_like(q), np.empty_like(k), np.empty_like(v)
        scores, share = (np.empty((min(block, n * heads), steps, steps), dtype) for _ in "ab")
        for start in range(0, n * heads, block):
            part = slice(start, start + block)
            w = weights[part]
            g, s, c = scores[:w.shape[0]], share[:w.shape[0]], columns[:w.shape[0]]
            np.matmul(w, grad[part], out=grad_v[part])
            np.matmul(v[part], grad[part].transpose(0, 2, 1), out=g)
            g *= w  # the softmax's vector-Jacobian product: w g - w (w . g)
            g -= np.multiply(w, np.matmul(ones, g, out=c), out=s)
            np.matmul(g.transpose(0, 2, 1), k[part], out=grad_q[part])
            np.matmul(g, q[part], out=grad_k[part])
        grad_q *= scale
        return tuple(a.reshape(n, heads, steps, -1) for a in (grad_q, grad_k, grad_v))
    return out.reshape(n, heads, steps, -1), backward


def layer_norm(x, gamma, beta, epsilon):
    """The layer normalisation kernel (:mod:`portanet.backend.kernels`) in NumPy: each mean over
    the last axis is a product with a vector (``1 / dim`` each, or ``gamma / dim``), which BLAS
    does several times as fast as NumPy's ``mean`` of short rows, and so are the sums over the
    rows (a product with ones); the rest in place."""
    rows = np.ascontiguousarray(floating(x)).reshape(-1, x.shape[-1])
    dim, dtype = rows.shape[1], rows.dtype
    average = np.full(dim, 1.0 / dim, dtype)
    normalized = np.subtract(rows, np.matmul(rows, average)[:, None])
    out = np.multiply(normalized, normalized)
    inv_std = np.matmul(out, average)
    inv_std += dtype.type(epsilon)
    np.sqrt(inv_std, out=inv_std)
    inv_std = np.reciprocal(inv_std, out=inv_std)[:, None]
    normalized *= inv_std
    np.multiply(normalized, gamma, out=out)
    out += beta

    def backward(grad, need_input=True):
        grad = np.ascontiguousarray(grad).reshape(normalized.shape)
        product = np.multiply(grad, normalized)
        ones = np.ones(len(grad), dtype)
        grad_gamma, grad_beta = np.matmul(ones, product), np.matmul(ones, grad)
        if not need_input:
            return None, grad_gamma, grad_beta
        # inv_std (grad gamma - mean(grad gamma) - normalized mean(grad gamma normalized))
        weighted = gamma / dtype.type(dim)
        grad_x = np.multiply(grad, gamma)
        grad_x -= np.matmul(grad, weighted)[:, None]
        grad_x -= np.multiply(normalized, np.matmul(product, weighted)[:, None], out=product)
        grad_x *= inv_std
        return grad_x.reshape(x.shape), grad_gamma, grad_beta
    return out.reshape(x.shape), backward


def sparse_softmax_crossentropy(targets, logits):
    """The sparse softmax cross-entropy kernel (:mod:`portanet.backend.kernels`) in NumPy: each
    target's score picked by its index (no one-hot matrix), the row sums a product with ones
    (BLAS sums short rows several times as fast as ``sum``), and the gradient written over the
    ``exp`` in place: ``softmax / rows``, less ``1 / rows`` at each target. A target outside
    ``[0, classes)`` adds nothing, as in the portable kernel. ``gradient`` may be called once."""
    scores = np.ascontiguousarray(floating(logits)).reshape(-1, logits.shape[-1])
    (rows, classes), dtype = scores.shape, scores.dtype
    ids = np.reshape(targets, -1)
    picked = np.where((ids >= 0) & (ids < classes), ids, 0).astype(np.intp)
    inside = (picked == ids).astype(dtype)  # 1 where the target is a class, else 0
    exp = np.subtract(scores, np.maximum.reduce(scores, axis=1, keepdims=True))
    at_target = np.arange(rows) * classes + picked  # in the flat rows
    target_shifted = exp.reshape(-1)[at_target]
    np.exp(exp, out=exp)
    total = np.matmul(exp, np.ones(classes, dtype))
    count = dtype.type(math.prod(logits.shape[:-1]) if logits.ndim > 1 else 1)
    loss = np.dot(np.log(total) - target_shifted, inside) / count

    def gradient():  # once: it writes over the exp
        grad = np.multiply(exp, (inside / (total * count))[:, None], out=exp)
        grad.reshape(-1)[at_target] -= inside / count
        return grad.reshape(logits.shape)
    return loss, gradient


def _window_axis(x, axis, size, stride, count):
    """The views of ``x`` along ``axis`` that a window of ``size`` values moved ``count`` times
    by ``stride`` reads, one per offset in the window."""
    return [x[(slice(None),) * axis + (slice(k, k + stride * (count - 1) + 1, stride),)]
            for k in range(size)]


def _max_along(x, axis, size, stride, count):
    """The maximum of each window along ``axis`` and, where ``size > 1``, the offset of its
    first maximum (int8)."""
    views = _window_axis(x, axis, size, stride, count)
    if size == 1:
        return views[0], None
    first = np.greater(views[1], views[0]).view(np.int8)  # the offsets 0 and 1
    best = np.maximum(views[0], views[1])
    for k in range(2, size):
        found = np.greater(views[k], best)
        np.maximum(best, views[k], out=best)
        np.copyto(first, k, where=found)
    return best, first


def _spread_along(grad, first, like, axis, size, stride):
    """The gradient of :func:`_max_along`'s input ``like``: each window's ``grad`` at its first
    maximum."""
    if first is None and grad.shape == like.shape:
        return grad
    tiles = stride == size and like.shape[axis] == size * grad.shape[axis]
    out = np.empty_like(like, dtype=grad.dtype) if tiles else np.zeros_like(like, grad.dtype)
    for k, view in enumerate(_window_axis(out, axis, size, stride, grad.shape[axis])):
        if first is None:
            np.copyto(view, grad)
        elif stride >= size:  # the windows do not overlap
            np.multiply(grad, first == k, out=view)
        else:
            view += grad * (first == k)
    return out


def _copy_like(like, values):
    """``values`` copied into an array laid out in memory as ``like``."""
    copy = np.empty_like(like, dtype=values.dtype)
    np.copyto(copy, values)
    return copy


def max_pool2d(x, pool, stride):
    """The max pooling kernel (:mod:`portanet.backend.kernels`) in NumPy: the maximum of each
    row of a window, then the maximum of those, each keeping the offset of its first maximum
    (so the gradient goes to the window's first maximum in row-major order, as in the portable
    kernel), where the portable kernel copies the windows side by side and compares each with
    the maximum. A
    window holding NaN has the maximum NaN in both, but here its gradient goes to one of its
    values, where the portable kernel's goes to none."""
    (ph, pw), (sh, sw) = pool, stride
    out_h, out_w = (x.shape[2] - ph) // sh + 1, (x.shape[3] - pw) // sw + 1
    rows, first_column = _max_along(x, 3, pw, sw, out_w)
    out, first_row = _max_along(rows, 2, ph, sh, out_h)

    def backward(grad_output):
        if grad_output.strides != out.strides:  # in another layout: copied into out's first
            grad_output = _copy_like(out, grad_output)
        grad_rows = _spread_along(grad_output, first_row, rows, 2, ph, sh)
        return _spread_along(grad_rows, first_column, x, 3, pw, sw)
    return out, backward


def relu_backward(y, grad):
    """ReLU's backward kernel (:mod:`portanet.backend.kernels`) in NumPy: the product of
    ``grad`` with the boolean mask ``y > 0`` itself, one pass less than the portable kernel's,
    which casts the mask to ``grad``'s dtype first."""
    return np.multiply(grad, y > 0)


def _offset_views(image, kernel_size, stride, dilation, out_size):
    """For each kernel offset ``(i, j)`` in row-major order, the view of ``image`` (its last two
    axes padded) it meets in every window: rows ``i * dilation[0]`` on, columns ``j *
    dilation[1]`` on, ``out_size`` of them ``stride`` apart."""
    (kh, kw), (sh, sw), (dh, dw), (out_h, out_w) = kernel_size, stride, dilation, out_size
    return [image[..., i * dh:i * dh + sh * (out_h - 1) + 1:sh,
                  j * dw:j * dw + sw * (out_w - 1) + 1:sw] for i in range(kh) for j in range(kw)]


def conv2d(x, weights, bias, stride, padding, dilation):
    """The convolution kernel (:mod:`portanet.backend.kernels`) in NumPy, channels first as the
    portable kernel (``(C, N, ...)`` in memory, one matrix product for the batch), but with
    patches for the output's positions only (the portable kernel computes some extra columns
    to copy longer runs) and each kernel offset's values copied into one buffer."""
    n, c, h, w = x.shape
    out_channels, kernel_size = weights.shape[0], tuple(weights.shape[2:])
    ((top, bottom), (left, right)), size = padding, math.prod(kernel_size)
    image = x.transpose(1, 0, 2, 3)
    if top or bottom or left or right:
        padded = np.zeros((c, n, h + top + bottom, w + left + right), x.dtype)
        padded[:, :, top:top + h, left:left + w] = image
        image = padded
    reach = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation)]
    out_size = tuple((length - r) // s + 1
                     for length, r, s in zip(image.shape[2:], reach, stride))
    patches = np.empty((c, size, n, *out_size), x.dtype)
    for k, view in enumerate(_offset_views(image, kernel_size, stride, dilation, out_size)):
        np.copyto(patches[:, k], view)
    patches = patches.reshape(c * size, -1)
    kernel = weights.reshape(out_channels, c * size)
    out = kernel @ patches
    out += bias[:, None]

    def backward(grad_output, need_input=True):
        grad = grad_output.transpose(1, 0, 2, 3).reshape(out_channels, -1)
        # (patches @ grad^T)^T: the product as the portable kernel takes it
        grad_weights = (patches @ grad.T).T.reshape(weights.shape)
        if not need_input:
            return None, grad_weights, grad.sum(axis=1)
        grad_patches = (kernel.T @ grad).reshape(c, size, n, *out_size)
        grad_image = np.zeros(image.shape, grad.dtype)
        views = _offset_views(grad_image, kernel_size, stride, dilation, out_size)
        for k, view in enumerate(views):
            view += grad_patches[:, k]
        grad_x = grad_image[:, :, top:top + h, left:left + w].transpose(1, 0, 2, 3)
        return grad_x, grad_weights, grad.sum(axis=1)
    return out.reshape(out_channels, n, *out_size).transpose(1, 0, 2, 3), backward
