"""portanet's causal transformer (:func:`portanet.models.causal_transformer`) and LSTM
language model in torch.nn, from portanet's weights, and their PyTorch training step: the
reference that benchmarks/run.py, benchmarks/learning.py, benchmarks/lstm_twin.py and
tests/layers/test_transformer_torch.py compare portanet with."""

import re

import numpy as np

from portanet.backend import to_numpy


def transformer_weights(net):
    """{"layer.sublayer....name": NumPy copy} of every parameter of ``net``."""
    weights = {}

    def visit(layers, prefix):
        for index, layer in enumerate(layers):
            key = f"{prefix}{index}"
            for name in getattr(layer, "params", ()):
                weights[f"{key}.{name}"] = np.array(to_numpy(getattr(layer, name)))
            visit(getattr(layer, "sublayers", ()), f"{key}.")

    visit(net.layers, "")
    return weights


def torch_transformer(torch, weights, heads):
    """``causal_transformer`` with ``heads`` heads in torch.nn, from ``weights`` (its
    :func:`transformer_weights`); the sizes come from the weights' shapes. Without weights of
    the last layer (``tie_embeddings=True``: a :class:`TiedDense`), the scores are the
    embedding's matrix, one ``nn.Parameter`` used twice, with no bias (as nanoGPT)."""
    nn = torch.nn
    vocabulary, dim = weights["0.weights"].shape
    context = weights["1.weights"].shape[0]
    blocks = sum(bool(re.fullmatch(r"\d+\.0\.1\.qkv_weights", key)) for key in weights)

    def linear(prefix, n_in, n_out):
        module = nn.Linear(n_in, n_out)
        module.weight.data, module.bias.data = (torch.tensor(weights[f"{prefix}.weights"].T),
                                                torch.tensor(weights[f"{prefix}.bias"]))
        return module

    def norm(prefix):
        module = nn.LayerNorm(dim)
        module.weight.data, module.bias.data = (torch.tensor(weights[f"{prefix}.gamma"]),
                                                torch.tensor(weights[f"{prefix}.beta"]))
        return module

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(vocabulary, dim)
            self.embedding.weight.data = torch.tensor(weights["0.weights"])
            self.positions = nn.Parameter(torch.tensor(weights["1.weights"]))
            self.norms, self.attentions, self.mlps = (nn.ModuleList() for _ in range(3))
            for k in range(blocks):
                attention, mlp = 2 + 2 * k, 3 + 2 * k  # the Residual layers' indices
                self.norms.append(norm(f"{attention}.0.0"))
                layer = nn.MultiheadAttention(dim, heads, batch_first=True)
                layer.in_proj_weight.data = torch.tensor(weights[f"{attention}.0.1.qkv_weights"].T)
                layer.in_proj_bias.data = torch.tensor(weights[f"{attention}.0.1.qkv_bias"])
                layer.out_proj.weight.data = torch.tensor(
                    weights[f"{attention}.0.1.out_weights"].T)
                layer.out_proj.bias.data = torch.tensor(weights[f"{attention}.0.1.out_bias"])
                self.attentions.append(layer)
                self.mlps.append(nn.Sequential(
                    norm(f"{mlp}.0.0"), linear(f"{mlp}.0.1", dim, 4 * dim),
                    nn.GELU(approximate="tanh"), linear(f"{mlp}.0.3", 4 * dim, dim)))
            last = 2 + 2 * blocks
            if f"{last + 1}.weights" in weights:
                scores = linear(f"{last + 1}", dim, vocabulary)
            else:
                scores = nn.Linear(dim, vocabulary, bias=False)
                scores.weight = self.embedding.weight  # tied
            self.head = nn.Sequential(norm(f"{last}"), scores)
            self.register_buffer("mask", torch.triu(torch.ones(context, context,
                                                               dtype=torch.bool), 1))

        def forward(self, ids):
            t = ids.shape[1]
            x = self.embedding(ids) + self.positions[:t]
            for norm_, attention, mlp in zip(self.norms, self.attentions, self.mlps):
                h = norm_(x)
                x = x + attention(h, h, h, attn_mask=self.mask[:t, :t], need_weights=False)[0]
                x = x + mlp(x)
            return self.head(x)

    return Model()


def torch_lstm_lm(torch, weights, cell="LSTM"):
    """Embedding -> LSTM (or ``cell="GRU"``; batch first, every step's output) -> Linear in
    torch.nn, from the :func:`transformer_weights` of a portanet ``Network([Embedding, LSTM
    (or GRU), Dense])``."""
    nn = torch.nn
    vocabulary, dim = weights["0.weights"].shape
    hidden = weights["1.weight_hh"].shape[1]

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(vocabulary, dim)
            self.embedding.weight.data = torch.tensor(weights["0.weights"])
            self.recurrent = getattr(nn, cell)(dim, hidden, batch_first=True)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.recurrent, f"{name}_l0").data = torch.tensor(weights[f"1.{name}"])
            self.head = nn.Linear(hidden, vocabulary)
            self.head.weight.data = torch.tensor(weights["2.weights"].T)
            self.head.bias.data = torch.tensor(weights["2.bias"])

        def forward(self, ids):
            return self.head(self.recurrent(self.embedding(ids))[0])

    return Model()


def cross_entropy(torch, logits, targets):
    """Mean softmax cross-entropy of (N, T, V) ``logits`` for (N, T) ``targets`` (nats)."""
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             targets.reshape(-1))


def torch_trainer(torch, model, learning_rate, clip_norm=None):
    """A function of ``(ids, targets)`` tensors that takes one training step of ``model`` as
    portanet's ``Adam(learning_rate, clip_norm=clip_norm)`` does (epsilon 1e-7, gradients
    clipped by their global norm) and returns the batch's loss (a float)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, eps=1e-7)

    def step(ids, targets):
        optimizer.zero_grad(set_to_none=True)
        loss = cross_entropy(torch, model(ids), targets)
        loss.backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        return loss.item()

    return step
