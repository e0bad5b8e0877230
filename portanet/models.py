"""Ready-made classifiers for image data sets, with the training settings that suit each."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ._checks import boolean
from .errors import InputError
from .layers import (
    LSTM,
    ActivationLayer,
    Conv2D,
    Dense,
    Embedding,
    FCLayer,
    Flatten,
    LayerNorm,
    MaxPool2D,
    PositionalEmbedding,
    Residual,
    SelfAttention,
    Sequential,
    TiedDense,
)
from .network import Network


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model and train it: ``layout`` is "flat" (rows) or "image" (N, C, H, W)."""

    build: Callable[[tuple, int], Network]
    layout: str
    training: dict = field(default_factory=dict)
    description: str = ""  # with {inputs} and {classes} for the data set's sizes


def tutorial_mlp(image_shape, classes):
    """The tutorial's network: inputs-100-50-classes, tanh everywhere, MSE loss."""
    net = Network()
    sizes = (math.prod(image_shape), 100, 50, classes)
    for n_in, n_out in zip(sizes, sizes[1:]):
        net.add(FCLayer(n_in, n_out, init="uniform"))
        net.add(ActivationLayer("tanh"))
    net.use("mse")
    return net


def causal_transformer(vocabulary, context, width=64, heads=4, blocks=2, dtype="float32",
                       tie_embeddings=False):
    """A small GPT-style language model: token and position embeddings, ``blocks`` pre-norm
    blocks (causal self-attention, then a GELU MLP 4x wide, each inside a residual connection),
    a final layer norm and the next token's scores (logits) over the vocabulary: a
    :class:`Dense` layer, or with ``tie_embeddings=True`` the token embedding's matrix
    (:class:`TiedDense`, no bias, as nanoGPT)."""
    tokens = Embedding(vocabulary, width, dtype=dtype)
    layers = [tokens, PositionalEmbedding(context, width, dtype=dtype)]
    for _ in range(blocks):
        layers.append(Residual(Sequential([LayerNorm(width, dtype=dtype),
                                           SelfAttention(width, heads, causal=True,
                                                         dtype=dtype)])))
        layers.append(Residual(Sequential([LayerNorm(width, dtype=dtype),
                                           Dense(width, 4 * width, dtype=dtype),
                                           ActivationLayer("gelu"),
                                           Dense(4 * width, width, dtype=dtype)])))
    scores = (TiedDense(tokens) if boolean("tie_embeddings", tie_embeddings)
              else Dense(width, vocabulary, dtype=dtype))
    net = Network([*layers, LayerNorm(width, dtype=dtype), scores], dtype=dtype)
    net.use("sparse_softmax_crossentropy")
    return net


def lstm_language_model(vocabulary, width=64, hidden=128, dtype="float32"):
    """A character-level LSTM language model: token embeddings, an LSTM giving every step's
    output, and the next token's scores (logits) over the vocabulary."""
    net = Network([Embedding(vocabulary, width, dtype=dtype),
                   LSTM(width, hidden, return_sequences=True, dtype=dtype),
                   Dense(hidden, vocabulary, dtype=dtype)], dtype=dtype)
    net.use("sparse_softmax_crossentropy")
    return net


def modern_mlp(image_shape, classes):
    """inputs-256-128-classes with ReLU, He initialisation and softmax cross-entropy."""
    net = Network()
    net.add(FCLayer(math.prod(image_shape), 256, init="he_uniform"))
    net.add(ActivationLayer("relu"))
    net.add(FCLayer(256, 128, init="he_uniform"))
    net.add(ActivationLayer("relu"))
    net.add(FCLayer(128, classes))
    net.use("softmax_crossentropy")
    return net


def small_cnn(image_shape, classes):
    """Two conv(3x3, same) + ReLU + 2x2 max-pool blocks (32, 64 channels), then 128-unit dense head.

    ``image_shape`` is one image's, (C, H, W), or (H, W) for grey images; images go in as
    (N, C, H, W) (NCHW).
    """
    shape = tuple(image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise InputError(f"small_cnn takes images of shape (C, H, W), or (H, W) for grey ones, "
                         f"got image_shape {image_shape!r}")
    channels, height, width = shape
    net = Network()
    net.add(Conv2D(channels, 32, 3, padding="same", input_shape=shape))
    net.add(ActivationLayer("relu"))
    net.add(MaxPool2D(2))
    net.add(Conv2D(32, 64, 3, padding="same"))
    net.add(ActivationLayer("relu"))
    net.add(MaxPool2D(2))
    net.add(Flatten())
    net.add(FCLayer(64 * (height // 4) * (width // 4), 128, init="he_uniform"))
    net.add(ActivationLayer("relu"))
    net.add(FCLayer(128, classes))
    net.use("softmax_crossentropy")
    return net


MODELS = {
    "tutorial": ModelSpec(tutorial_mlp, "flat",
                          {"epochs": 35, "batch_size": 1, "learning_rate": 0.1,
                           "optimizer": "sgd"},
                          "the tutorial's {inputs}-100-50-{classes} tanh network, MSE, "
                          "per-sample SGD"),
    "mlp": ModelSpec(modern_mlp, "flat",
                     {"epochs": 10, "batch_size": 128, "learning_rate": 1e-3,
                      "optimizer": "adam"},
                     "{inputs}-256-128-{classes} ReLU network, softmax cross-entropy, Adam"),
    "cnn": ModelSpec(small_cnn, "image",
                     {"epochs": 10, "batch_size": 128, "learning_rate": 1e-3,
                      "optimizer": "adam"},
                     "conv32-pool-conv64-pool-128-{classes} ReLU CNN, softmax cross-entropy, Adam"),
}


# settings that suit the small digits set better than the models' MNIST-sized defaults
DATASET_SETTINGS = {"digits": {"mlp": {"epochs": 40, "batch_size": 32},
                               "cnn": {"epochs": 20, "batch_size": 32}}}


def training_settings(model, dataset) -> dict:
    """The training settings (epochs, batch size, ...) of ``model`` on ``dataset``."""
    return {**get(model).training, **DATASET_SETTINGS.get(dataset, {}).get(model, {})}


def get(name) -> ModelSpec:
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    return MODELS[name]
