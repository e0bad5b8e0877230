"""Kernels for what the array API lacks, or does in more passes than a library's own operator:
2-D convolution and max/average pooling (NCHW), the embedding lookup, scaled dot-product
attention, ReLU's backward pass and a loop over time steps. The 1-D convolution and pooling
(``conv1d``, ``max_pool1d``, ``avg_pool1d`` on ``(N, C, L)`` batches) are the 2-D kernels on
images of one row.

Each kernel is a function of arrays that returns its output and ``backward``, a function of the
gradient of the output that returns the gradients of the inputs (a layer's backprop calls it):

- ``conv2d(x, weights, bias, stride, padding, dilation) -> (out, backward)``, ``padding`` the
  zeros ``((top, bottom), (left, right))`` around the image, ``dilation`` the pair of steps
  between the image pixels a kernel's neighbouring weights meet, ``backward(grad,
  need_input=True) -> (grad_x or None, grad_weights, grad_bias)``;
- ``max_pool2d(x, pool, stride)``, ``avg_pool2d(x, pool, stride) -> (out, backward)``, windows
  without padding, ``backward(grad) -> grad_x``;
- ``embedding(table, ids) -> (out, backward)``, rows ``ids`` of ``table``, ``backward(grad) ->
  grad_table``;
- ``attention(q, k, v, causal) -> (out, backward)``, ``softmax(q k^T / sqrt(d)) v`` for ``(N,
  heads, T, d)`` arrays (``causal``: query ``t`` attends to keys ``<= t``), ``backward(grad) ->
  (grad_q, grad_k, grad_v)``;
- ``scan(step, carry, xs, reverse=False) -> (carry, ys)``, the loop of recurrent layers (see
  :func:`scan`; no backward: the layers write theirs as a second scan).
- ``lstm(projected, weight_hh, h0, c0) -> (hidden, backward)``, the LSTM recurrence (see
  :func:`lstm`), ``backward(grad_hidden) -> (grad_projected, grad_h0, grad_c0)``;
- ``relu_backward(y, grad) -> grad_x``, ReLU's input gradient from its output ``y``;
- ``gelu(x) -> (y, backward)``, GELU in its tanh approximation, ``backward(grad) -> grad_x``;
- ``layer_norm(x, gamma, beta, epsilon) -> (out, backward)``, normalisation over the last axis,
  ``backward(grad, need_input=True) -> (grad_x or None, grad_gamma, grad_beta)``;
- ``sparse_softmax_crossentropy(targets, logits) -> (loss, gradient)``, softmax cross-entropy
  of integer class targets, ``gradient() -> grad_logits`` (a loss: no output gradient).

:data:`PORTABLE` holds one implementation of each, in the array API (the one NumPy and
array-api-strict run); a backend module gives native ones in its library's ``kernels``
(torch: ``torch.nn.functional`` and the matching ATen backward operators; JAX: ``jax.lax`` and
``jax.vjp`` where that measured faster; NumPy, in :mod:`portanet.backend.numpy_kernels`: the LSTM
loop in preallocated buffers, the convolution, max pooling, ReLU's backward, GELU, attention, layer
normalisation and the sparse cross-entropy in fewer passes over memory). The functions here pick,
by the type of ``x``, the native kernel where the array's library has one and the portable one
elsewhere. The portable implementations live by family in
:mod:`~portanet.backend.kernels.convolution`, :mod:`~portanet.backend.kernels.sequence`,
:mod:`~portanet.backend.kernels.elementwise`, :mod:`~portanet.backend.kernels.normalization` and
:mod:`~portanet.backend.kernels.crossentropy`; :mod:`~portanet.backend.kernels.registry` picks.
"""

from __future__ import annotations

from .convolution import (
    avg_pool1d,
    avg_pool2d,
    conv1d,
    conv2d,
    max_pool1d,
    max_pool2d,
    portable_avg_pool2d,
    portable_conv2d,
    portable_max_pool2d,
)
from .crossentropy import (
    portable_sparse_softmax_crossentropy,
    samples,
    softmax_crossentropy_gradient,
    softmax_crossentropy_value,
    softmax_parts,
    sparse_softmax_crossentropy,
)
from .elementwise import gelu, portable_gelu, portable_relu_backward, relu_backward
from .normalization import layer_norm, portable_layer_norm, standardized_backward
from .registry import PORTABLE, kernel
from .sequence import (
    attention,
    embedding,
    lstm,
    lstm_gate_scale,
    portable_attention,
    portable_embedding,
    portable_lstm,
    portable_scan,
    scan,
)

__all__ = ["PORTABLE", "attention", "avg_pool1d", "avg_pool2d", "conv1d", "conv2d", "embedding",
           "gelu", "kernel", "layer_norm", "lstm", "lstm_gate_scale", "max_pool1d", "max_pool2d",
           "portable_attention", "portable_avg_pool2d", "portable_conv2d", "portable_embedding",
           "portable_gelu", "portable_layer_norm", "portable_lstm", "portable_max_pool2d",
           "portable_relu_backward", "portable_scan",
           "portable_sparse_softmax_crossentropy", "relu_backward", "samples", "scan",
           "softmax_crossentropy_gradient", "softmax_crossentropy_value", "softmax_parts",
           "sparse_softmax_crossentropy", "standardized_backward"]
