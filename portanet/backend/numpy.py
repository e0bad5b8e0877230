"""The NumPy backend: the CPU, and the host every other backend copies data from and to."""

from __future__ import annotations

import numpy as np

from .library import Library
from .numpy_kernels import (
    attention,
    conv2d,
    gelu,
    layer_norm,
    lstm,
    max_pool2d,
    relu_backward,
    sparse_softmax_crossentropy,
)


class NumPy(Library):
    name = module = "numpy"
    install = "pip install numpy"
    # no bfloat16; float16 exists but has no BLAS: a (64, 784) @ (784, 100) product took 34
    # times as long as in float32, so no precision policy computes in it here
    half_dtypes = ()
    kernels = {"attention": attention, "conv2d": conv2d, "gelu": gelu, "layer_norm": layer_norm,
               "lstm": lstm, "max_pool2d": max_pool2d, "relu_backward": relu_backward,
               "sparse_softmax_crossentropy": sparse_softmax_crossentropy}

    def device(self, module, kind, index, text):
        self.cpu_only(kind, text)
        return "cpu"

    def probe(self, module, device):
        return np.zeros(1)

    def to_numpy(self, x):
        return np.asarray(x)


LIBRARY = NumPy()
