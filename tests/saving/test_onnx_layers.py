"""ONNX export of every built-in layer and activation: onnxruntime gives what predict gives,
for each layer type in ``portanet.layers.LAYERS`` (a layer added later fails here until it
exports or is listed as not exportable), every activation, and the character transformer of
``examples/charlm.py``, tied and untied, trained on the backend under test."""

import numpy as np
import pytest

import portanet
from portanet import (
    GRU,
    LSTM,
    ActivationLayer,
    AvgPool1D,
    AvgPool2D,
    BatchNorm,
    Bidirectional,
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    FCLayer,
    Flatten,
    InputError,
    LayerNorm,
    MaxPool1D,
    MaxPool2D,
    Network,
    PositionalEmbedding,
    RandomCrop,
    RandomErasing,
    RandomFlip,
    Reshape,
    Residual,
    SelfAttention,
    Sequential,
    TiedDense,
)
from portanet.activations import ACTIVATIONS
from portanet.backend import dtype_name, get_backend, to_numpy
from portanet.cli import main
from portanet.layers import LAYERS
from portanet.layers.base import with_references
from portanet.models import causal_transformer
from portanet.saving.onnx import EXPORTS, NOT_EXPORTABLE, ONNX_ACTIVATIONS
from portanet.text import CharText

ATOL = 1e-5  # float32 outputs of order 1
RNG = np.random.default_rng(8)


@pytest.fixture
def onnx():
    pytest.importorskip("onnxruntime")
    return pytest.importorskip("onnx")


def run_onnx(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = np.asarray(x, dtype=np.int64 if np.issubdtype(x.dtype, np.integer) else np.float32)
    return session.run(None, {"input": feed})[0]


def perturbed(net):
    """``net`` with every parameter and buffer moved off its initial value (biases start at
    zero, LayerNorm's gain at one: a wrong export of them would go unseen)."""
    for layer in with_references(net.layers):
        for name in layer.params + layer.buffers:
            value = getattr(layer, name)
            noise = RNG.uniform(0.5, 1.5, size=tuple(value.shape))
            if name != "running_var":
                noise = RNG.normal(scale=0.3, size=tuple(value.shape))
            setattr(layer, name, value + get_backend().asarray(noise, dtype_name(value)))
    return net


def sequences(n=3, t=5, d=4):
    return RNG.normal(size=(n, t, d))


def ids(n=3, t=5, vocabulary=7):
    return RNG.integers(0, vocabulary, size=(n, t))


def tied():
    embedding = Embedding(7, 4)
    return [embedding, LayerNorm(4), TiedDense(embedding, bias=True)]


def images():
    return RNG.normal(size=(2, 2, 6, 5))


def signals():  # (N, C, L)
    return RNG.normal(size=(2, 2, 9))


# One network per layer type, and its inputs: each runs through onnxruntime below.
EXAMPLES = {
    "FCLayer": (lambda: [FCLayer(4, 3)], lambda: RNG.normal(size=(3, 4))),
    "Dense": (lambda: [Dense(4, 3)], sequences),  # over the last axis of (N, T, D)
    "ActivationLayer": (lambda: [Dense(4, 4), ActivationLayer("gelu")], sequences),
    "Conv2D": (lambda: [Conv2D(2, 3, 3, padding="same", input_shape=(2, 6, 5))], images),
    "MaxPool2D": (lambda: [Conv2D(2, 2, 1, input_shape=(2, 6, 5)), MaxPool2D(2)], images),
    "AvgPool2D": (lambda: [Conv2D(2, 2, 1, input_shape=(2, 6, 5)), AvgPool2D(2)], images),
    "Conv1D": (lambda: [Conv1D(2, 3, 3, stride=2, padding="same", dilation=2,
                               input_shape=(2, 9))], signals),
    "MaxPool1D": (lambda: [Conv1D(2, 2, 1, input_shape=(2, 9)), MaxPool1D(2)], signals),
    "AvgPool1D": (lambda: [Conv1D(2, 2, 1, input_shape=(2, 9)), AvgPool1D(3, stride=2)], signals),
    "Flatten": (lambda: [Conv2D(2, 2, 1, input_shape=(2, 6, 5)), Flatten()], images),
    "Reshape": (lambda: [FCLayer(4, 6), Reshape((2, 3))], lambda: RNG.normal(size=(3, 4))),
    "Dropout": (lambda: [Dense(4, 4), Dropout(0.5)], sequences),
    "BatchNorm": (lambda: [Conv2D(2, 2, 1, input_shape=(2, 6, 5)), BatchNorm(2)], images),
    "LayerNorm": (lambda: [Dense(4, 4), LayerNorm(4)], sequences),
    "Embedding": (lambda: [Embedding(7, 4)], ids),
    "PositionalEmbedding": (lambda: [Embedding(7, 4), PositionalEmbedding(8, 4)], ids),
    "TiedDense": (tied, ids),
    "SelfAttention": (lambda: [Dense(4, 4), SelfAttention(4, 2, causal=True),
                               SelfAttention(4, 1)], sequences),
    "LSTM": (lambda: [LSTM(4, 3, return_sequences=True, initial_state="learned")], sequences),
    "GRU": (lambda: [GRU(4, 3)], sequences),
    "Bidirectional": (lambda: [Bidirectional(LSTM(4, 3, return_sequences=True,
                                                  initial_state="learned")),
                               Bidirectional(GRU(6, 3), merge_mode="ave")], sequences),
    "Sequential": (lambda: [Sequential([Dense(4, 6), ActivationLayer("relu"),
                                        Sequential([Dense(6, 4)])])], sequences),
    "Residual": (lambda: [Residual(Sequential([LayerNorm(4), Dense(4, 4)])),
                          Residual(Dropout(0.1))], sequences),
    "RandomFlip": (lambda: [Conv2D(2, 2, 1, input_shape=(2, 6, 5)), RandomFlip()], images),
    "RandomCrop": (lambda: [Conv2D(2, 2, 1, input_shape=(2, 6, 5)), RandomCrop(1)], images),
    "RandomErasing": (lambda: [Conv2D(2, 2, 1, input_shape=(2, 6, 5)), RandomErasing(2)],
                      images),
}


def test_every_layer_type_exports_or_is_listed_with_its_reason():
    assert set(EXPORTS) <= set(LAYERS.values())
    exported = {kind.__name__ for kind in EXPORTS}
    assert exported.isdisjoint(NOT_EXPORTABLE)
    assert exported | set(NOT_EXPORTABLE) == set(LAYERS), "a layer neither exports nor is listed"
    assert set(EXAMPLES) == exported  # and each exported one is tested below
    assert all(isinstance(why, str) and why for why in NOT_EXPORTABLE.values())


def test_every_activation_exports():
    assert set(ACTIVATIONS) <= set(ONNX_ACTIVATIONS)


def check_export(net, x, tmp_path, **options):
    path = portanet.export_onnx(net, tmp_path / "net.onnx", **options)
    expected = net.predict(x)
    got = run_onnx(path, x)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    return path


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_layer_type_gives_in_onnxruntime_what_predict_gives(name, backend, tmp_path, onnx):
    make, data = EXAMPLES[name]
    x = data()
    net = perturbed(Network(make()))
    check_export(net, x, tmp_path, input_shape=x.shape[1:])


@pytest.mark.parametrize("merge_mode", Bidirectional.merges)
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("kind", [LSTM, GRU])
def test_bidirectional_is_one_node_in_each_merge_mode(kind, return_sequences, merge_mode,
                                                      backend, tmp_path, onnx):
    net = perturbed(Network([Bidirectional(kind(4, 3, return_sequences=return_sequences,
                                                initial_state="learned"), merge_mode)]))
    x = sequences()
    path = check_export(net, x, tmp_path, input_shape=x.shape[1:])
    [node] = [node for node in onnx.load(str(path)).graph.node if node.op_type == kind.__name__]
    assert {a.name: a.s for a in node.attribute}["direction"] == b"bidirectional"


def test_a_bidirectional_recurrent_layer_of_your_own_is_refused(tmp_path, onnx):
    class Mine(GRU):
        pass

    net = Network([Bidirectional(Mine(4, 3))])
    with pytest.raises(InputError, match=r"layer 0 \(Bidirectional\(Mine.*cannot be exported"):
        portanet.export_onnx(net, tmp_path / "net.onnx", input_shape=(5, 4))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_each_activation_gives_in_onnxruntime_what_predict_gives(name, backend, tmp_path, onnx):
    net = perturbed(Network([Dense(4, 6), ActivationLayer(name)]))
    x = 3 * sequences()  # (N, T, D), values where the activations bend and saturate
    check_export(net, x, tmp_path, input_shape=x.shape[1:])


def test_an_id_model_takes_int64_ids_and_asks_for_the_sequence_length(backend, tmp_path, onnx):
    net = Network(tied())
    with pytest.raises(InputError, match=r"give the sequence length, e.g. input_shape=\(64,\) "
                                         r"\(on the command line: --input-shape 64\)"):
        portanet.export_onnx(net, tmp_path / "net.onnx")
    with pytest.raises(InputError, match="input_shape must be a tuple of positive ints"):
        portanet.export_onnx(net, tmp_path / "net.onnx", input_shape=(0,))
    path = portanet.export_onnx(net, tmp_path / "net.onnx", input_shape=(5,))
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    with pytest.raises(Exception, match="invalid dimensions"):  # the length is fixed
        run_onnx(path, ids(t=4))
    # the tied matrix is stored once, used by the Gather and (transposed) by the projection
    assert [tuple(w.dims) for w in graph.initializer if tuple(w.dims) == (7, 4)] == [(7, 4)]


def test_a_layer_used_twice_is_stored_once(backend, tmp_path, onnx):
    shared = Dense(4, 4)
    net = perturbed(Network([shared, ActivationLayer("tanh"), shared]))
    path = check_export(net, sequences(), tmp_path, input_shape=(5, 4))
    assert len(onnx.load(str(path)).graph.initializer) == 2


def test_layer_norm_needs_opset_17(tmp_path, onnx):
    net = Network([Dense(4, 4), Sequential([LayerNorm(4)])])
    with pytest.raises(InputError, match=r"layer 1\.0 \(LayerNorm.*opset 17 or later"):
        portanet.export_onnx(net, tmp_path / "net.onnx", opset=16, input_shape=(4,))


class Twice(portanet.Layer):
    def forward(self, x, training=False):
        return 2 * x


def test_a_nested_layer_that_cannot_export_is_named_with_the_reason(tmp_path, onnx,
                                                                     monkeypatch):
    net = Network([Dense(4, 4), Residual(Sequential([Dense(4, 4), Twice()]))])
    with pytest.raises(InputError, match=r"layer 1\.0\.1 \(Twice\(\)\) cannot be exported"):
        portanet.export_onnx(net, tmp_path / "net.onnx", input_shape=(4,))
    monkeypatch.setitem(NOT_EXPORTABLE, "Twice", "it doubles in a way ONNX cannot say")
    with pytest.raises(InputError, match=r"cannot be exported to ONNX \(it doubles"):
        portanet.export_onnx(net, tmp_path / "net.onnx", input_shape=(4,))


TEXT = "def add(a, b):\n    return a + b\n\n" * 40  # offline, small


@pytest.mark.parametrize("tie", [False, True])
def test_the_character_transformer_trained_here_runs_in_onnxruntime(tie, backend, tmp_path,
                                                                     onnx):
    text = CharText(TEXT)
    portanet.set_seed(1)
    net = causal_transformer(len(text.vocabulary), 16, width=32, heads=4, blocks=2,
                             tie_embeddings=tie)
    x, y = text.batch(64, 16)
    history = net.fit(x, y, epochs=3, batch_size=16, optimizer="adam", verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    x_val, _ = text.batch(8, 16, split="validation")
    path = check_export(net, x_val, tmp_path, input_shape=(16,))
    padded = x_val.copy()
    padded[:, 9:] = 0  # a prompt of 9 ids, padded: the scores of its positions do not change
    np.testing.assert_array_equal(run_onnx(path, padded)[:, :9], run_onnx(path, x_val)[:, :9])
    path = portanet.export_onnx(net, tmp_path / "proba.onnx", input_shape=(16,),
                                probabilities=True)
    scores = net.predict(x_val)
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(run_onnx(path, x_val), exp / exp.sum(axis=-1, keepdims=True),
                               rtol=0, atol=ATOL)


def test_cli_export_takes_the_input_shape(backend, tmp_path, capsys, onnx):
    net = Network(tied())
    net.use("sparse_softmax_crossentropy")
    model = perturbed(net).save(tmp_path / "net.npz")
    output = tmp_path / "net.onnx"
    assert main(["export", str(model), str(output)]) == 2  # an id model's length is not known
    assert "--input-shape" in capsys.readouterr().err
    assert main(["export", str(model), str(output), "--input-shape", "5"]) == 0
    out = capsys.readouterr().out
    assert "input 'input': int64 (batch, 5)" in out
    assert "output 'output': float32 (batch, 5, 7)" in out
    x = ids()
    np.testing.assert_allclose(run_onnx(output, x), to_numpy(net.predict(x)), rtol=0, atol=ATOL)
    for bad in ("0", "5,x", ""):
        assert main(["export", str(model), str(output), "--input-shape", bad]) == 2
        assert "--input-shape must be a tuple of positive ints" in capsys.readouterr().err
