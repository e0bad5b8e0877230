"""The benchmark's cases: each model, its training recipe, and the data it is timed on."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np

import portanet
import portanet.datasets
import portanet.text
from portanet.backend import to_numpy


@dataclass(frozen=True)
class Case:
    """One benchmark: a model, its training recipe and how much data it sees."""

    name: str
    sizes: tuple = (784, 100, 50, 10)
    activation: str = "tanh"
    output_activation: bool = True  # the tutorial applies tanh to the output layer too
    init: str = "uniform"
    loss: str = "mse"
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    batch: int = 64
    dtype: str = "float32"
    samples: int = 60000
    quick_samples: int = 6000
    shuffle: bool = True
    kind: str = "train"  # "train", "predict", "cnn", "transformer" or "lstm-lm"
    cell: str = "LSTM"  # the recurrent layer of kind "lstm-lm": "LSTM" or "GRU"
    synthetic: bool = False  # random inputs of the first layer's size instead of images
    clip_norm: float | None = None  # gradient clipping by global norm
    note: str = ""


MODERN = dict(sizes=(784, 256, 128, 10), activation="relu", output_activation=False,
              init="he_uniform", loss="softmax_crossentropy", optimizer="adam",
              learning_rate=1e-3, batch=128)
CASES = {case.name: case for case in (
    Case("tutorial-mlp", note="784-100-50-10 tanh, MSE, SGD 0.1, batch 64"),
    Case("modern-mlp", **MODERN, note="784-256-128-10 ReLU, softmax-CE, Adam 1e-3, batch 128"),
    Case("cnn", **{**MODERN, "sizes": (64 * 7 * 7, 128, 10)}, kind="cnn", samples=6000,
         quick_samples=512, note="conv32-pool-conv64-pool-128-10, Adam, batch 128, "
                                 "a subset of the images to keep it short"),
    Case("per-sample", batch=1, dtype="float64", samples=1000, quick_samples=200, shuffle=False,
         note="the tutorial's recipe at batch 1, float64, samples in order"),
    Case("predict", **MODERN, kind="predict", samples=10000, quick_samples=2000,
         note="modern-mlp inference over the test images, time per pass"),
    Case("wide-mlp", **{**MODERN, "sizes": (4096, 4096, 4096, 10), "optimizer": "sgd",
                        "learning_rate": 0.01, "batch": 1024}, samples=16384, quick_samples=4096,
         synthetic=True,
         note="4096-4096-4096-10 ReLU, SGD, batch 1024, synthetic inputs (GPU only)"),
    Case("transformer", kind="transformer", loss="sparse_softmax_crossentropy",
         optimizer="adam", learning_rate=3e-4, clip_norm=1.0, batch=32, samples=512,
         quick_samples=64, note="causal character model: 2 pre-norm blocks, width 64, 4 heads, "
                                "context 64; Adam 3e-4, clip_norm 1, batch 32; windows of the "
                                "standard library's source"),
    Case("lstm-lm", kind="lstm-lm", loss="sparse_softmax_crossentropy", optimizer="adam",
         learning_rate=1e-3, batch=32, samples=512, quick_samples=64,
         note="character LSTM: embedding 64, LSTM 128 (every step's output), dense to the "
              "vocabulary; Adam 1e-3, batch 32; the transformer's windows"),
    Case("gru-lm", kind="lstm-lm", cell="GRU", loss="sparse_softmax_crossentropy",
         optimizer="adam", learning_rate=1e-3, batch=32, samples=512, quick_samples=64,
         note="character GRU: lstm-lm with a GRU 128 in place of the LSTM"),
)}
TRANSFORMER = dict(blocks=2, dim=64, heads=4, context=64)
LSTM_LM = dict(dim=64, hidden=128)


def load_images():
    """(train images, train labels, test images, test labels, source): uint8 28x28, or random."""
    try:
        (x, y), (xt, yt) = portanet.datasets.load_fashion_mnist(download=False)
        return x, y, xt, yt, "Fashion-MNIST"
    except portanet.PortanetError:
        rng = np.random.default_rng(0)
        x, xt = (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for n in (60000, 10000))
        y, yt = (rng.integers(0, 10, n).astype(np.uint8) for n in (60000, 10000))
        return x, y, xt, yt, "synthetic (Fashion-MNIST not found; same shapes, random pixels)"


@dataclass
class Data:
    """A case's data as NumPy arrays."""

    x: np.ndarray  # inputs in [0, 1], shape (n, features), (n, 1, 28, 28) for the CNN
    y: np.ndarray  # one-hot targets
    labels: np.ndarray


@functools.cache
def char_text():
    """The transformer's text: the first 300 000 characters of the offline default."""
    return portanet.text.CharText(portanet.text.load_text(limit=300_000))


def case_data(case, images, n):
    """The first ``n`` samples shaped and typed for ``case``."""
    if case.kind in ("transformer", "lstm-lm"):  # windows of ids; targets shifted by one
        x, y = (to_numpy(a)[:n] for a in char_text().windows(TRANSFORMER["context"]))
        return Data(x, y, y)
    x, labels = (images[2], images[3]) if case.kind == "predict" else images[:2]
    if case.synthetic:
        rng = np.random.default_rng(0)
        x = rng.random((n, case.sizes[0]), dtype=np.float32)
        labels = rng.integers(0, 10, n)
    x, labels = x[:n], np.asarray(labels[:n], dtype=np.int64)
    shape = (n, 1, 28, 28) if case.kind == "cnn" else (n, x[0].size)
    if x.dtype == np.uint8:
        x = x.reshape(shape) / np.float32(255)
    x = x.astype(case.dtype, copy=False)
    y = np.eye(case.sizes[-1], dtype=case.dtype)[labels]
    return Data(x, y, labels)


def sized(case, quick):
    """``case`` with its ``--quick`` number of samples where ``quick``."""
    return replace(case, samples=case.quick_samples) if quick else case


def epoch_order(case, n, seed):
    """The batch order of one epoch: portanet's fit draws exactly this from its seeded generator."""
    return np.random.default_rng(seed).permutation(n) if case.shuffle else None
