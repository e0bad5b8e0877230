"""NumPy's native kernels (see :mod:`portanet.backend.kernels`): the same results as the portable
ones, in fewer passes over memory, with what the array API cannot say (``out=``, views of
windows, ``copyto`` with ``where=``)."""

from __future__ import annotations

import math

import numpy as np


def lstm(projected, weight_hh, h0, c0):
    """The LSTM kernel (:mod:`portanet.backend.kernels`) in NumPy: every buffer allocated once
    per sequence and each step's element-wise work written in place (``out=``), which the
    array API cannot say. One ``tanh`` gives all four gates, the sigmoid gates' columns being
    halved first (``sigmoid(a) = (1 + tanh(a / 2)) / 2``)."""
    steps, n, rows = projected.shape
    size, dtype = rows // 4, projected.dtype
    g_block = slice(2 * size, 3 * size)
    scale, offset, is_tanh = (np.full(rows, value, dtype) for value in (0.5, 0.5, 0.0))
    scale[g_block], offset[g_block], is_tanh[g_block] = 1.0, 0.0, 1.0
    weights = np.ascontiguousarray((weight_hh * scale[:, None]).T)
    gates = np.empty(projected.shape, dtype)  # each step's i, f, g, o
    hidden, cells, tanh_cells = (np.empty((steps, n, size), dtype) for _ in range(3))
    product, part = np.empty((n, rows), dtype), np.empty((n, size), dtype)
    h, c = h0, c0
    for t in range(steps):
        a = np.multiply(projected[t], scale, out=gates[t])
        a += np.matmul(h, weights, out=product)
        np.tanh(a, out=a)
        a *= scale
        a += offset
        c = np.multiply(a[:, size:2 * size], c, out=cells[t])
        c += np.multiply(a[:, :size], a[:, g_block], out=part)
        h = np.multiply(a[:, 3 * size:], np.tanh(c, out=tanh_cells[t]), out=hidden[t])

    def backward(grad_hidden):
        weight = np.ascontiguousarray(weight_hh)
        grad_gates, slopes = np.empty_like(gates), np.empty((n, rows), dtype)
        grad_h, through = np.empty((n, size), dtype), np.zeros((n, size), dtype)
        grad_c, term = np.zeros((n, size), dtype), np.empty((n, size), dtype)
        for t in range(steps - 1, -1, -1):
            a, tanh_c, grad = gates[t], tanh_cells[t], grad_gates[t]
            np.add(grad_hidden[t], through, out=grad_h)
            np.multiply(tanh_c, tanh_c, out=term)
            np.subtract(1.0, term, out=term)
            term *= a[:, 3 * size:]
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
    return hidden, backward


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
