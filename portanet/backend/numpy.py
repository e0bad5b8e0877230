"""The NumPy backend: the CPU, and the host every other backend copies data from and to."""

from __future__ import annotations

import numpy as np

from .library import Library


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


class NumPy(Library):
    name = module = "numpy"
    install = "pip install numpy"
    # no bfloat16; float16 exists but has no BLAS: a (64, 784) @ (784, 100) product took 34
    # times as long as in float32, so no precision policy computes in it here
    half_dtypes = ()
    kernels = {"lstm": lstm}

    def device(self, module, kind, index, text):
        self.cpu_only(kind, text)
        return "cpu"

    def probe(self, module, device):
        return np.zeros(1)

    def to_numpy(self, x):
        return np.asarray(x)


LIBRARY = NumPy()
