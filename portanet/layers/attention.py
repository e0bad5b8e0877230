"""Multi-head self-attention."""

from .. import initializers
from .._checks import boolean, integer
from ..backend import get_backend, kernels, namespace
from ..errors import InputError, ShapeError
from .base import Layer
from .dense import affine, affine_grads


class SelfAttention(Layer):
    """Multi-head self-attention over sequences ``(N, T, dim)`` -> ``(N, T, dim)``.

    One fused projection makes queries, keys and values (``qkv_weights`` ``(dim, 3 dim)``,
    ``qkv_bias``); each of ``heads`` heads attends with ``softmax(q k^T / sqrt(dim / heads))``
    (shifted by the row maximum, so it stays finite); an output projection (``out_weights``,
    ``out_bias``) mixes the heads. ``causal=True`` lets position ``t`` attend to positions
    ``<= t`` only (for language models); the mask is built by comparing position indices, no
    boolean indexing, so the layer traces under ``jax.jit``.
    """

    params = ("qkv_weights", "qkv_bias", "out_weights", "out_bias")

    def __init__(self, dim, heads, causal=False, init="glorot_uniform", dtype="float32"):
        super().__init__()
        for label, size in (("dim", dim), ("heads", heads)):
            integer(f"SelfAttention {label}", size)
        if dim % heads:
            raise InputError(f"SelfAttention dim ({dim}) must be a multiple of heads ({heads}): "
                             "each head gets dim / heads features")
        self.dim, self.heads, self.init = dim, heads, init
        self.causal = boolean("SelfAttention causal", causal)
        backend = get_backend()
        self.qkv_weights = initializers.initial_weights(init, (dim, 3 * dim), dim, dim, dtype,
                                                        self)
        self.qkv_bias = backend.zeros((3 * dim,), dtype)
        self.out_weights = initializers.initial_weights(init, (dim, dim), dim, dim, dtype, self)
        self.out_bias = backend.zeros((dim,), dtype)

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 2 or shape[1] != self.dim:
            raise ShapeError(f"{self!r} expects per-sample shape (positions, {self.dim}), got "
                             f"{shape}")
        return shape

    def _split_heads(self, x):
        """``(N, T, dim)`` -> ``(N, heads, T, dim / heads)``."""
        xp = namespace(x)
        n, t, _ = x.shape
        return xp.permute_dims(xp.reshape(x, (n, t, self.heads, self.dim // self.heads)),
                               (0, 2, 1, 3))

    def _merge_heads(self, x):
        """``(N, heads, T, dim / heads)`` -> ``(N, T, dim)``."""
        xp = namespace(x)
        n, _, t, _ = x.shape
        return xp.reshape(xp.permute_dims(x, (0, 2, 1, 3)), (n, t, self.dim))

    def apply(self, state, x, run):
        self.output_shape(tuple(x.shape[1:]))
        xp = namespace(x)
        d = self.dim
        qkv = affine(x, state["qkv_weights"], state["qkv_bias"])
        q, k, v = (self._split_heads(qkv[..., i * d:(i + 1) * d]) for i in range(3))
        heads, backward = kernels.attention(q, k, v, self.causal)
        context = self._merge_heads(heads)

        def backprop(grad_output, need_input=True):
            grad_context, out_weights, out_bias = affine_grads(
                context, state["out_weights"], (d,), grad_output,
                out=(run.place(self, "out_weights"), run.place(self, "out_bias")))
            # (N, T, 3, heads, dim / heads) in one copy: the three merged side by side
            grad_qkv = xp.reshape(
                xp.stack([xp.permute_dims(g, (0, 2, 1, 3))
                          for g in backward(self._split_heads(grad_context))], axis=2),
                (*x.shape[:2], 3 * d))
            grad_input, qkv_weights, qkv_bias = affine_grads(
                x, state["qkv_weights"], (3 * d,), grad_qkv, need_input,
                (run.place(self, "qkv_weights"), run.place(self, "qkv_bias")))
            return grad_input, {"qkv_weights": qkv_weights, "qkv_bias": qkv_bias,
                                "out_weights": out_weights, "out_bias": out_bias}
        return affine(context, state["out_weights"], state["out_bias"]), backprop

    def config(self):
        return {"dim": self.dim, "heads": self.heads, "causal": self.causal, "init": self.init}
