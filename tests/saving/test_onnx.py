"""ONNX export and .safetensors files: onnxruntime computes what predict computes for networks
trained on every backend; safetensors files hold the same arrays and load on any backend."""

import subprocess
import sys

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
    Conv1D,
    Conv2D,
    Dropout,
    FCLayer,
    Flatten,
    MaxPool1D,
    MaxPool2D,
    Network,
    Reshape,
)
from portanet.cli import main
from portanet.preprocessing import Normalizer, Standardizer

ATOL = 1e-5  # float32 outputs of order 1: onnxruntime and portanet round differently


@pytest.fixture
def onnx():
    pytest.importorskip("onnxruntime")
    return pytest.importorskip("onnx")


@pytest.fixture
def safetensors():
    return pytest.importorskip("safetensors.numpy")


def trained(layers, x, classes, loss="softmax_crossentropy", scaler=None):
    net = Network(layers)
    net.use(loss)
    net.scaler = scaler.fit(x) if scaler is not None else None
    # one-hot targets: integer labels (tested in test_errors) cost a trial forward pass more
    targets = np.eye(classes)[np.random.default_rng(3).integers(0, classes, len(x))]
    net.fit(x, targets, epochs=3, batch_size=8, shuffle=True, optimizer="adam", verbose=0)
    return net


def mlp():
    """Every exportable activation, ending in a softmax."""
    x = np.random.default_rng(0).normal(size=(32, 5)) * 2
    layers = [FCLayer(5, 8), ActivationLayer("tanh"), FCLayer(8, 8), ActivationLayer("relu"),
              FCLayer(8, 6), ActivationLayer("leaky_relu"), FCLayer(6, 6),
              ActivationLayer("sigmoid"), FCLayer(6, 4), ActivationLayer("identity"),
              FCLayer(4, 3), ActivationLayer("softmax")]
    return trained(layers, x, 3, loss="categorical_crossentropy"), x


def logits_mlp():
    x = np.random.default_rng(1).normal(size=(32, 6))
    layers = [FCLayer(6, 10), ActivationLayer("relu"), FCLayer(10, 4)]
    return trained(layers, x, 4), x


def cnn():
    """'same' convolutions whose padding is odd along the width (the extra pixel goes right),
    a 'valid' stride-2 one, pools that drop partial windows, BatchNorm on images and rows."""
    x = np.random.default_rng(2).normal(size=(16, 1, 21, 18))
    layers = [Conv2D(1, 4, 3, padding="same", input_shape=(1, 21, 18)), BatchNorm(4),
              ActivationLayer("relu"),
              Conv2D(4, 4, 3, stride=2, padding="same"),  # 11x9: padding (1, 1) and (0, 1)
              Conv2D(4, 6, 3, stride=2),                  # valid: 5x4
              MaxPool2D(2, stride=1), AvgPool2D(2),       # 4x3, then 2x1 (a column dropped)
              Dropout(0.25), Flatten(), FCLayer(12, 8), BatchNorm(8), ActivationLayer("tanh"),
              Reshape((2, -1)), Flatten(), FCLayer(8, 3)]
    return trained(layers, x, 3), x


def cnn1d():
    """1-D convolutions on (N, 3, 20) sequences: 'same' with dilation, 'same' with a stride
    (the odd padding value at the end), 'valid' dilated; a pool that drops a partial window."""
    x = np.random.default_rng(7).normal(size=(16, 3, 20))
    layers = [Conv1D(3, 4, 3, padding="same", dilation=2, input_shape=(3, 20)),
              ActivationLayer("relu"),
              Conv1D(4, 5, 3, stride=2, padding="same"),  # 10: padding 0 before, 1 after
              MaxPool1D(3, stride=2),                     # 4 (the last value dropped)
              Conv1D(5, 4, 2, dilation=2),                # valid: 2
              AvgPool1D(2, stride=1), Flatten(), FCLayer(4, 3)]
    return trained(layers, x, 3), x


def dilated_cnn():
    """Conv2D dilated differently along height and width, 'same' then 'valid'."""
    x = np.random.default_rng(8).normal(size=(16, 1, 9, 10))
    layers = [Conv2D(1, 3, 3, stride=(1, 2), padding="same", dilation=(2, 1),
                     input_shape=(1, 9, 10)), ActivationLayer("relu"),  # 9x5
              Conv2D(3, 2, 2, dilation=2), Flatten(), FCLayer(2 * 7 * 3, 3)]  # valid: 7x3
    return trained(layers, x, 3), x


def run_onnx(onnx, path, x):
    import onnxruntime

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": np.asarray(x, dtype=np.float32)})[0]


@pytest.mark.parametrize("make", [mlp, logits_mlp, cnn, cnn1d, dilated_cnn])
def test_onnxruntime_gives_what_predict_gives(backend, tmp_path, onnx, make):
    net, x = make()
    path = portanet.export_onnx(net, tmp_path / "net.onnx")
    expected = net.predict(x)
    got = run_onnx(onnx, path, x)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("return_sequences, initial_state", [(False, "learned"),
                                                             (True, "zeros")])
@pytest.mark.parametrize("kind", [LSTM, GRU])
def test_recurrent_layers_export(backend, tmp_path, onnx, kind, return_sequences,
                                 initial_state):
    """One ONNX LSTM/GRU node (gate blocks reordered), the last step's state or every step's,
    the learned initial state repeated for every sample of a batch."""
    x = np.random.default_rng(7).normal(size=(24, 5, 3))
    recurrent = kind(3, 6, return_sequences=return_sequences, initial_state=initial_state)
    tail = [Flatten(), FCLayer(30, 3)] if return_sequences else [FCLayer(6, 3)]
    net = trained([recurrent, *tail], x, 3)
    if initial_state == "learned":
        assert np.max(np.abs(recurrent.get_weights()[4])) > 1e-3  # training moved the state
    path = portanet.export_onnx(net, tmp_path / "net.onnx", input_shape=(5, 3))
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops.count(kind.__name__) == 1
    expected = net.predict(x)
    got = run_onnx(onnx, path, x)
    assert got.shape == expected.shape == (24, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


def test_logits_by_default_probabilities_on_request(backend, tmp_path, onnx):
    net, x = logits_mlp()
    logits = run_onnx(onnx, portanet.export_onnx(net, tmp_path / "logits.onnx"), x)
    assert not np.allclose(logits.sum(axis=1), 1)  # the logits predict gives, not probabilities
    path = portanet.export_onnx(net, tmp_path / "proba.onnx", probabilities=True)
    np.testing.assert_allclose(run_onnx(onnx, path, x), net.predict_proba(x), rtol=0, atol=ATOL)
    tanh_net = Network([FCLayer(6, 2), ActivationLayer("tanh")])
    with pytest.raises(portanet.InputError, match="probabilities=True needs"):
        portanet.export_onnx(tanh_net, tmp_path / "tanh.onnx", probabilities=True)


@pytest.mark.parametrize("scaler", [Normalizer, Standardizer])
def test_the_scaler_is_part_of_the_graph(backend, tmp_path, onnx, scaler):
    x = np.random.default_rng(4).uniform(0, 255, size=(24, 7))  # raw pixel values
    net = trained([FCLayer(7, 5), ActivationLayer("tanh"), FCLayer(5, 2)], x, 2,
                  scaler=scaler())
    got = run_onnx(onnx, portanet.export_onnx(net, tmp_path / "scaled.onnx"), x)
    np.testing.assert_allclose(got, net.predict(x), rtol=0, atol=ATOL)


def test_input_shape_for_a_first_layer_that_does_not_fix_it(tmp_path, onnx):
    net = Network([Conv2D(1, 2, 3, padding="same"), Flatten()])
    with pytest.raises(portanet.InputError, match="input_shape="):
        portanet.export_onnx(net, tmp_path / "conv.onnx")
    x = np.random.default_rng(5).normal(size=(3, 1, 5, 4))
    path = portanet.export_onnx(net, tmp_path / "conv.onnx", input_shape=(1, 5, 4))
    np.testing.assert_allclose(run_onnx(onnx, path, x), net.predict(x), rtol=0, atol=ATOL)


def test_float64_networks_export_as_float32_on_request(tmp_path, onnx):
    net = Network([Conv2D(1, 2, 3, input_shape=(1, 6, 6)), MaxPool2D(2), Flatten()],
                  dtype="float64")
    path = portanet.export_onnx(net, tmp_path / "net.onnx", dtype="float32")
    x = np.random.default_rng(6).normal(size=(2, 1, 6, 6))
    np.testing.assert_allclose(run_onnx(onnx, path, x), net.predict(x), rtol=0, atol=ATOL)


class Twice(portanet.Layer):
    def forward(self, x, training=False):
        return 2 * x


def swish(x):
    return x * portanet.activations.sigmoid(x)


@pytest.mark.parametrize("layer", [Twice(), ActivationLayer(swish, lambda x: x)])
def test_unsupported_layers_are_named(tmp_path, onnx, layer):
    target = tmp_path / "net.onnx"
    target.write_bytes(b"precious")
    net = Network([FCLayer(3, 3), layer])
    with pytest.raises(portanet.InputError, match=r"layer 1 \(.*\) cannot be exported to ONNX: "
                                                  r"the layers that can are FCLayer, "):
        portanet.export_onnx(net, target)
    assert target.read_bytes() == b"precious"


def test_bad_export_arguments(tmp_path, onnx):
    net = Network([FCLayer(3, 2)])
    with pytest.raises(portanet.InputError, match="unknown file suffix ..txt.; use .onnx"):
        portanet.export_onnx(net, tmp_path / "net.txt")
    with pytest.raises(portanet.InputError, match="opset must be an integer >= 13"):
        portanet.export_onnx(net, tmp_path / "net.onnx", opset=11)
    with pytest.raises(portanet.InputError, match="does not exist"):
        portanet.export_onnx(net, tmp_path / "missing" / "net.onnx")
    assert list(tmp_path.iterdir()) == []


def test_missing_packages_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx fails
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    net = Network([FCLayer(3, 2)])
    with pytest.raises(portanet.PortanetError, match=r'pip install "portanet\[onnx\]"'):
        portanet.export_onnx(net, tmp_path / "net.onnx")
    with pytest.raises(portanet.PortanetError, match=r'pip install "portanet\[safetensors\]"'):
        net.save(tmp_path / "net.safetensors")


def test_importing_portanet_imports_neither_onnx_nor_safetensors():
    code = ("import sys, portanet, portanet.cli; "
            "print(sorted({'onnx', 'onnxruntime', 'safetensors'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_cli_export(backend, tmp_path, capsys, onnx):
    net, x = logits_mlp()
    model = net.save(tmp_path / "net.npz")
    output = tmp_path / "net.onnx"
    assert main(["export", str(model), str(output)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {output}" in out
    assert "input 'input': float32 (batch, 6)" in out
    assert "output 'output': float32 (batch, 4)" in out
    np.testing.assert_allclose(run_onnx(onnx, output, x), net.predict(x), rtol=0, atol=ATOL)
    assert main(["export", str(model), str(tmp_path / "net.pb")]) == 2
    assert "unknown file suffix '.pb'; use .onnx" in capsys.readouterr().err


# -- safetensors ---------------------------------------------------------------------------

def test_safetensors_hold_the_weights_and_the_description(backend, tmp_path, safetensors):
    import json

    net, x = cnn()
    net.scaler = Standardizer().fit(x)
    net.metadata = {"note": "kept"}
    path = net.save(tmp_path / "net.safetensors")
    arrays = safetensors.load_file(str(path))
    expected = {f"{index}/{name}": value for index, layer in enumerate(net.layers)
                for name, value in zip(layer.params + layer.buffers, layer.get_weights())}
    assert sorted(arrays) == sorted(expected) and "1/running_var" in arrays
    for name, value in expected.items():
        np.testing.assert_array_equal(arrays[name], value)
    with safetensors.safe_open(str(path), framework="numpy") as archive:
        header = json.loads(archive.metadata()["portanet"])
    assert header["scaler"] == net.scaler.config() and header["metadata"] == {"note": "kept"}
    assert [layer["type"] for layer in header["layers"]] == [type(layer).__name__
                                                             for layer in net.layers]
    if backend.name == "torch":
        import safetensors.torch
        import torch

        tensors = safetensors.torch.load_file(str(path))
        for name, value in expected.items():
            assert torch.equal(tensors[name], torch.from_numpy(value))


def test_safetensors_round_trip_on_this_backend_and_on_numpy(backend, tmp_path, safetensors):
    net, x = cnn()
    net.scaler = Normalizer().fit(x)
    expected = net.predict(x)
    loaded = portanet.load(net.save(tmp_path / "net.safetensors"))
    np.testing.assert_array_equal(loaded.predict(x), expected)
    assert loaded.loss is net.loss and loaded.scaler.config() == net.scaler.config()
    with portanet.using_backend("numpy"):
        on_numpy = portanet.load(tmp_path / "net.safetensors")
        np.testing.assert_allclose(on_numpy.predict(x), expected, rtol=1e-5, atol=1e-6)


def test_unknown_suffixes_name_the_formats(tmp_path):
    net = Network([FCLayer(3, 2)])
    with pytest.raises(portanet.InputError, match=r"unknown file suffix '\.h5'.*\.npz or "
                                                  r"\.safetensors"):
        net.save(tmp_path / "net.h5")
    assert main(["train", "--save", str(tmp_path / "net.h5")]) == 2  # before training
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated", "text", "no_portanet_metadata", "bad_json",
                                    "missing"])
def test_bad_safetensors_files_give_clear_errors(tmp_path, safetensors, damage):
    path = tmp_path / "bad.safetensors"
    if damage == "truncated":
        good = Network([FCLayer(30, 20)]).save(tmp_path / "good.safetensors").read_bytes()
        path.write_bytes(good[: len(good) - 100])
    elif damage == "text":
        path.write_text("not a network")
    elif damage == "no_portanet_metadata":
        safetensors.save_file({"0/weights": np.ones((2, 2), np.float32)}, str(path))
    elif damage == "bad_json":
        safetensors.save_file({"0/weights": np.ones((2, 2), np.float32)}, str(path),
                              metadata={"portanet": "{not json"})
    with pytest.raises(portanet.ModelFileError):
        portanet.load(path)
