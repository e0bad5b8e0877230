"""Embeddings: token ids to vectors, learned positions added to a sequence, and the output
projection tied to an embedding's matrix."""

from array_api_compat import device

from .. import initializers
from .._checks import boolean, integer
from ..backend import (
    cast,
    dtype_name,
    get_backend,
    is_traced,
    kernels,
    matmul,
    namespace,
    rng,
    sum_rows,
)
from ..errors import InputError, ShapeError
from .base import EMPTY, Layer


def _gpt2_normal(shape, fan_in, fan_out):
    """N(0, 0.02), as GPT-2 starts its embeddings."""
    return rng().normal(0.0, 0.02, size=shape)


class Embedding(Layer):
    """Integer ids of any shape, e.g. ``(N, T)``, to vectors: ``(N, T, dim)``, row ``id`` of
    ``weights`` (shape ``(vocabulary, dim)``, drawn N(0, 0.02) as in GPT-2).

    The lookup and its gradient (the output gradient's rows added up per id) are
    :func:`portanet.backend.kernels.embedding`.

    Ids must be integers in ``[0, vocabulary)``: a float array is an :class:`InputError`, and so
    are ids out of range in eager use (a compiled step cannot check values).
    """

    params = ("weights",)
    takes_ids = True  # its input is integer ids, which the network keeps as integers

    def __init__(self, vocabulary, dim, dtype="float32"):
        super().__init__()
        integer("Embedding vocabulary", vocabulary)
        integer("Embedding dim", dim)
        self.vocabulary, self.dim = vocabulary, dim
        self.weights = initializers.initial_weights(_gpt2_normal, (vocabulary, dim), vocabulary,
                                                    dim, dtype, self)

    def output_shape(self, input_shape):
        return (*tuple(input_shape), self.dim)

    def check_ids(self, ids):
        """InputError unless ``ids`` are integers in ``[0, vocabulary)`` (values only checked
        outside compiled steps)."""
        xp = namespace(ids)
        if not xp.isdtype(ids.dtype, "integral"):
            raise InputError(f"{self!r} takes integer token ids, got dtype {ids.dtype}: "
                             "convert them, e.g. ids.astype('int64')")
        if not is_traced(ids) and ids.shape[0] > 0:
            low, high = int(xp.min(ids)), int(xp.max(ids))
            if low < 0 or high >= self.vocabulary:
                raise InputError(f"{self!r}: token ids must lie in [0, {self.vocabulary}), got "
                                 f"ids from {low} to {high}")

    def apply(self, state, x, run):
        """The input gradient is None: ids have none."""
        self.check_ids(x)
        out, backward = kernels.embedding(state["weights"], x)

        def backprop(grad_output, need_input=True):
            return None, {"weights": backward(grad_output)}
        return out, backprop

    def config(self):
        return {"vocabulary": self.vocabulary, "dim": self.dim}


class PositionalEmbedding(Layer):
    """Learned positions: adds row ``t`` of ``weights`` (shape ``(context, dim)``, drawn
    N(0, 0.02)) to position ``t`` of its input ``(N, T, dim)``, for ``T <= context``."""

    params = ("weights",)

    def __init__(self, context, dim, dtype="float32"):
        super().__init__()
        integer("PositionalEmbedding context", context)
        integer("PositionalEmbedding dim", dim)
        self.context, self.dim = context, dim
        self.weights = initializers.initial_weights(_gpt2_normal, (context, dim), context, dim,
                                                    dtype, self)

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 2 or shape[1] != self.dim:
            raise ShapeError(f"{self!r} expects per-sample shape (positions, {self.dim}), got "
                             f"{shape}")
        if shape[0] > self.context:
            raise ShapeError(f"{self!r} has positions for sequences of up to {self.context}, "
                             f"got {shape[0]}: give shorter sequences or make a longer table")
        return shape

    def apply(self, state, x, run):
        self.output_shape(tuple(x.shape[1:]))

        def backprop(grad_output, need_input=True):
            xp = namespace(grad_output)
            used = sum_rows(grad_output)
            rest = self.context - used.shape[0]
            if rest:
                used = xp.concat([used, xp.zeros((rest, self.dim), dtype=used.dtype,
                                                  device=device(used))], axis=0)
            return grad_output, {"weights": used}
        return x + state["weights"][:x.shape[1], :], backprop

    def config(self):
        return {"context": self.context, "dim": self.dim}


class TiedDense(Layer):
    """The output projection tied to ``embedding`` (an :class:`Embedding`, before it in the
    network), as GPT-2 and nanoGPT tie theirs: ``x @ embedding.weights.T``, ``(..., dim)`` ->
    ``(..., vocabulary)`` scores. The matrix is the embedding's own parameter: one array,
    saved once, trained by the sum of both uses' gradients. ``bias=True`` adds a bias of the
    projection's own (``(vocabulary,)``, starting at zero; nanoGPT has none)."""

    def __init__(self, embedding, bias=False, dtype="float32"):
        super().__init__()
        if type(embedding) is not Embedding:
            raise InputError(f"TiedDense ties to an Embedding of the network, got {embedding!r}: "
                             "give the Embedding layer object, e.g. TiedDense(net.layers[0])")
        self.embedding = embedding
        self.has_bias = boolean("TiedDense bias", bias)
        self.params = ("bias",) if bias else ()
        if bias:
            self.bias = get_backend().zeros((embedding.vocabulary,), dtype)

    @property
    def references(self):
        return (self.embedding,)

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if not shape or shape[-1] != self.embedding.dim:
            raise ShapeError(f"{self!r} expects the embedding's {self.embedding.dim} features on "
                             f"the last axis, got per-sample shape {shape}")
        return (*shape[:-1], self.embedding.vocabulary)

    def apply(self, state, x, run):
        if x.ndim < 2 or x.shape[-1] != self.embedding.dim:
            self.output_shape(tuple(x.shape[1:]))
        tied = run.states.get(id(self.embedding))
        if tied is None:
            raise InputError(f"{self!r} is tied to an Embedding that is not in this network: add "
                             "that Embedding before it")
        # (vocabulary, dim), in the dtype of the pass (16 bits under a precision policy)
        weights = cast(tied["weights"], dtype_name(x))
        xp = namespace(x)
        out = x @ xp.matrix_transpose(weights)
        if self.has_bias:
            out += state["bias"]  # in place on the new product (rebinding on JAX)

        def backprop(grad_output, need_input=True):
            flat_grad = xp.reshape(grad_output, (-1, grad_output.shape[-1]))
            rows = xp.reshape(x, (-1, x.shape[-1]))
            run.record(self.embedding, {"weights": matmul(xp.matrix_transpose(flat_grad), rows)})
            grads = {"bias": sum_rows(flat_grad)} if self.has_bias else EMPTY
            return (grad_output @ weights if need_input else None), grads
        return out, backprop

    def config(self):
        return {"embedding": self.embedding, "bias": self.has_bias}
