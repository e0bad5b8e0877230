"""2-D and 1-D convolution and max/average pooling (see :mod:`portanet.backend.kernels`)."""

from __future__ import annotations

import math

import array_api_extra as xpx
from array_api_compat import device

from ...errors import ShapeError
from ..ops import add_at, namespace
from .registry import kernel, portable


def _check(x, window, stride, padding=((0, 0), (0, 0))):
    """ShapeError unless ``x`` is a 4-D batch whose padded image holds one window."""
    if x.ndim != 4:
        raise ShapeError("2-D convolution and pooling take 4-D batches (batch, channels, height, "
                         f"width), got an array of shape {tuple(x.shape)}")
    for size, (before, after), reach in zip(x.shape[2:], padding, window):
        if size + before + after < reach:
            raise ShapeError(f"a {window[0]}x{window[1]} window does not fit in an image of "
                             f"{x.shape[2]}x{x.shape[3]} padded by {padding}")
    if min(stride) < 1:
        raise ShapeError(f"strides must be positive, got {stride}")


def _out_size(size, kernel, stride, before=0, after=0):
    return (size + before + after - kernel) // stride + 1


def _conv_layout(x, kernel_size, stride, padding):
    """How the batch ``x`` is laid out for the patches: each channel's padded image in planes of
    ``rows x width`` values, with ``width`` a multiple of the column stride and enough rows that
    every kernel offset's values for the whole batch are one strided slice of a plane (one plane
    per row stride residue). A window that runs past the end of a row reads the next row's left
    padding, so the right padding need not be stored when the left is as wide. Outputs are
    computed on a grid ``out_h x grid_w`` whose ``grid_w - out_w`` extra columns are dropped."""
    _, _, h, w = x.shape
    (kh, kw), (sh, sw), ((top, bottom), (left, right)) = kernel_size, stride, padding
    out_h, out_w = _out_size(h, kh, sh, top, bottom), _out_size(w, kw, sw, left, right)
    reach = (out_w - 1) * sw + kw  # padded columns the windows read
    keep_w = min(w, reach - left)
    grid_w = -(-max(left + keep_w, reach - left) // sw)
    rows = out_h + (kh - 1) // sh + 1
    return {"out": (out_h, out_w), "grid_w": grid_w, "rows": rows, "width": grid_w * sw,
            "top": top, "left": left, "keep": (min(h, rows * sh - top), keep_w)}


def _reach(kernel_size, dilation):
    """The height and width of the image a dilated kernel's window covers."""
    return tuple((k - 1) * d + 1 for k, d in zip(kernel_size, dilation))


def _conv_offsets(g, kernel_size, stride, dilation):
    """``(plane, slice)`` of each kernel offset ``(i, j)``, in row-major order: it reads the
    image at row ``i * dilation[0]``, column ``j * dilation[1]`` of each window."""
    (kh, kw), sh, sw, (dh, dw) = kernel_size, stride[0], stride[1], dilation
    count = g["out"][0] * g["grid_w"]
    return [(row % sh, slice(start, start + sw * (count - 1) + 1, sw))
            for i in range(kh) for j in range(kw)
            for row in [i * dh] for start in [(row // sh) * g["width"] + j * dw]]


@portable("conv2d")
def portable_conv2d(x, weights, bias, stride, padding, dilation):
    """2-D cross-correlation by patch extraction (strided slices) and one matrix product."""
    xp = namespace(x)
    n, c = x.shape[:2]
    out_channels, kernel_size = weights.shape[0], tuple(weights.shape[2:])
    kh, kw = kernel_size
    sh = stride[0]
    g = _conv_layout(x, _reach(kernel_size, dilation), stride, padding)
    offsets = _conv_offsets(g, kernel_size, stride, dilation)
    rows, width, (keep_h, keep_w) = g["rows"], g["width"], g["keep"]
    # Channels first, so the stacked patches reshape to (C*kh*kw, N*positions) for free.
    image = xp.permute_dims(x, (1, 0, 2, 3))[:, :, :keep_h, :keep_w]
    padded = xpx.pad(image, ((0, 0), (0, 0), (g["top"], rows * sh - g["top"] - keep_h),
                             (g["left"], width - g["left"] - keep_w)), xp=xp)
    planes = xp.reshape(padded, (c, n, rows, sh, width))
    planes = [xp.reshape(planes[:, :, :, r, :], (c, n, rows * width)) for r in range(sh)]
    patches = xp.stack([planes[plane][..., index] for plane, index in offsets], axis=1)
    patches = xp.reshape(patches, (c * kh * kw, math.prod(patches.shape[2:])))
    kernel = xp.reshape(weights, (out_channels, c * kh * kw))
    out = kernel @ patches
    out += xp.reshape(bias, (out_channels, 1))
    out_h, out_w = g["out"]
    out = xp.reshape(out, (out_channels, n, out_h, g["grid_w"]))[..., :out_w]

    def on_grid(grad_output):
        """``grad_output`` as (out_channels, N*grid positions), zeros in the extra columns."""
        grad = xp.permute_dims(grad_output, (1, 0, 2, 3))
        if g["grid_w"] > out_w:
            grad = xpx.pad(grad, ((0, 0), (0, 0), (0, 0), (0, g["grid_w"] - out_w)), xp=xp)
        return xp.reshape(grad, (out_channels, patches.shape[1]))

    def parameter_grads(patches, grad):
        """Weight and bias gradients from the patches and the output gradient, both with one
        column per output position."""
        # (patches @ grad^T)^T rather than grad @ patches^T: the same on NumPy and torch, about
        # three times faster on JAX's CPU backend.
        grad_kernel = xp.matrix_transpose(patches @ xp.matrix_transpose(grad))
        return xp.reshape(grad_kernel, tuple(weights.shape)), xp.sum(grad, axis=1)

    def input_grad(grad):
        """Each kernel offset's share of the gradient goes back to the strided slice it was
        read from."""
        h, w = x.shape[2:]
        grad_patches = xp.reshape(xp.matrix_transpose(kernel) @ grad, (c, kh * kw, n, -1))
        planes = [xp.zeros((c, n, rows * width), dtype=grad.dtype, device=device(grad))
                  for _ in range(sh)]
        for k, (plane, index) in enumerate(offsets):
            planes[plane] = add_at(planes[plane], (..., index), grad_patches[:, k, ...])
        planes = [xp.reshape(plane, (c, n, rows, width)) for plane in planes]
        grad_padded = planes[0] if sh == 1 else xp.reshape(xp.stack(planes, axis=3),
                                                           (c, n, rows * sh, width))
        grad_x = grad_padded[:, :, g["top"]:g["top"] + keep_h, g["left"]:g["left"] + keep_w]
        if (keep_h, keep_w) != (h, w):  # rows or columns no window reached
            grad_x = xpx.pad(grad_x, ((0, 0), (0, 0), (0, h - keep_h), (0, w - keep_w)), xp=xp)
        return xp.permute_dims(grad_x, (1, 0, 2, 3))

    def backward(grad_output, need_input=True):
        if need_input:
            grad = on_grid(grad_output)
            return input_grad(grad), *parameter_grads(patches, grad)
        # When the patches have fewer rows than the output has channels (a first layer), the
        # patches drop the grid's extra columns rather than the gradient gaining them: the
        # smaller copy.
        if g["grid_w"] == out_w or patches.shape[0] >= out_channels:
            return None, *parameter_grads(patches, on_grid(grad_output))
        dense = xp.reshape(patches, (patches.shape[0], -1, out_h, g["grid_w"]))[..., :out_w]
        grad = xp.permute_dims(grad_output, (1, 0, 2, 3))
        return None, *parameter_grads(xp.reshape(dense, (patches.shape[0], -1)),
                                      xp.reshape(grad, (out_channels, -1)))
    return xp.permute_dims(out, (1, 0, 2, 3)), backward


def _pool_windows(x, pool, stride):
    """Index of the last two axes of each pool offset's window: for every output pixel, the
    input at that offset."""
    (ph, pw), (sh, sw) = pool, stride
    out_h, out_w = _out_size(x.shape[2], ph, sh), _out_size(x.shape[3], pw, sw)
    return [(..., slice(i, i + sh * (out_h - 1) + 1, sh), slice(j, j + sw * (out_w - 1) + 1, sw))
            for i in range(ph) for j in range(pw)]


def _pool_scatter(x, pool, stride, shares):
    """The input gradient: the ``k``-th of ``shares`` put into window ``k`` of an array shaped
    like ``x``; windows that do not overlap are written rather than added to (one pass less),
    into an uninitialised array when they tile ``x`` exactly."""
    xp = namespace(x)
    disjoint = all(s >= p for s, p in zip(stride, pool))
    tiles = stride == pool and all(size % p == 0 for size, p in zip(x.shape[2:], pool))
    grad = xp.empty_like(x) if tiles else xp.zeros_like(x)
    for index, share in zip(_pool_windows(x, pool, stride), shares):
        grad = xpx.at(grad, index).set(share) if disjoint else add_at(grad, index, share)
    return grad


@portable("max_pool2d")
def portable_max_pool2d(x, pool, stride):
    """Maximum of each window; the gradient goes to the window's maximum (the first one in
    row-major order on ties). The windows' values are copied into one array, an offset per row,
    and kept for the backward: its comparisons then read contiguous memory."""
    xp = namespace(x)
    windows = xp.stack([x[index] for index in _pool_windows(x, pool, stride)])
    out = xp.max(windows, axis=0)

    def shares(grad_output):
        free = None  # windows whose maximum has not had the gradient yet
        for k in range(windows.shape[0]):
            hit = windows[k, ...] == out
            if free is not None:
                hit = hit & free
            if k < windows.shape[0] - 1:
                free = ~hit if free is None else free ^ hit  # hit is within free
            yield grad_output * xp.astype(hit, grad_output.dtype)

    def backward(grad_output):
        return _pool_scatter(x, pool, stride, shares(grad_output))
    return out, backward


@portable("avg_pool2d")
def portable_avg_pool2d(x, pool, stride):
    """Mean of each window."""
    windows = _pool_windows(x, pool, stride)
    total = x[windows[0]]
    for index in windows[1:]:
        total = total + x[index]

    def backward(grad_output):
        share = grad_output / len(windows)
        return _pool_scatter(x, pool, stride, [share] * len(windows))
    return total / len(windows), backward


def conv2d(x, weights, bias, stride, padding, dilation=(1, 1)):
    """2-D cross-correlation of NCHW ``x`` with ``weights`` (out, in, kh, kw) plus ``bias``
    (out,), moved by ``stride`` (a pair) over the image padded by ``padding`` ((top, bottom),
    (left, right)) zeros, the weights ``dilation`` (a pair) pixels apart: ``(out, backward)``,
    see the module."""
    if min(dilation) < 1:
        raise ShapeError(f"dilations must be positive, got {dilation}")
    _check(x, _reach(tuple(weights.shape[2:]), dilation), stride, padding)
    if x.shape[1] != weights.shape[1]:
        raise ShapeError(f"the weights of shape {tuple(weights.shape)} take {weights.shape[1]} "
                         f"input channels, the batch has {x.shape[1]}")
    return kernel("conv2d", x)(x, weights, bias, tuple(stride), tuple(map(tuple, padding)),
                               tuple(dilation))


def max_pool2d(x, pool, stride):
    """Maximum over ``pool`` (a pair) windows of NCHW ``x`` moved by ``stride``: ``(out,
    backward)``."""
    _check(x, pool, stride)
    return kernel("max_pool2d", x)(x, tuple(pool), tuple(stride))


def avg_pool2d(x, pool, stride):
    """Mean over ``pool`` (a pair) windows of NCHW ``x`` moved by ``stride``: ``(out,
    backward)``."""
    _check(x, pool, stride)
    return kernel("avg_pool2d", x)(x, tuple(pool), tuple(stride))


def _one_row(x):
    """``(N, C, L)`` ``x`` as images of one row, ``(N, C, 1, L)``: how the 1-D kernels call the
    2-D ones."""
    if x.ndim != 3:
        raise ShapeError("1-D convolution and pooling take 3-D batches (batch, channels, "
                         f"length), got an array of shape {tuple(x.shape)}")
    return namespace(x).reshape(x, (x.shape[0], x.shape[1], 1, x.shape[2]))


def _drop_row(x):
    """``(N, C, 1, L)`` ``x`` as ``(N, C, L)``."""
    return namespace(x).reshape(x, (x.shape[0], x.shape[1], x.shape[3]))


def conv1d(x, weights, bias, stride, padding, dilation=(1,)):
    """1-D cross-correlation of ``(N, C, L)`` ``x`` with ``weights`` (out, in, k) plus ``bias``,
    as :func:`conv2d` with one value per argument for the length (``stride`` ``(s,)``,
    ``padding`` ``((before, after),)``, ``dilation`` ``(d,)``): that kernel on images of one
    row, ``(out, backward)``."""
    out, backward = conv2d(_one_row(x), _one_row(weights), bias, (1, *stride),
                           ((0, 0), *padding), (1, *dilation))

    def backward_1d(grad_output, need_input=True):
        grad_x, grad_weights, grad_bias = backward(_one_row(grad_output), need_input)
        return (None if grad_x is None else _drop_row(grad_x)), _drop_row(grad_weights), grad_bias
    return _drop_row(out), backward_1d


def _pool_one_row(pool2d, x, pool, stride):
    """``pool2d`` over windows of ``pool`` ``(p,)`` values moved by ``stride`` ``(s,)`` along
    the length of ``(N, C, L)`` ``x``, on images of one row: ``(out, backward)``."""
    out, backward = pool2d(_one_row(x), (1, *pool), (1, *stride))
    return _drop_row(out), lambda grad_output: _drop_row(backward(_one_row(grad_output)))


def max_pool1d(x, pool, stride):
    """Maximum over windows of ``pool`` (a 1-tuple) values of ``(N, C, L)`` ``x`` moved by
    ``stride``: ``(out, backward)``."""
    return _pool_one_row(max_pool2d, x, pool, stride)


def avg_pool1d(x, pool, stride):
    """Mean over windows of ``pool`` (a 1-tuple) values of ``(N, C, L)`` ``x`` moved by
    ``stride``: ``(out, backward)``."""
    return _pool_one_row(avg_pool2d, x, pool, stride)

