"""Bidirectional LSTM and GRU: finite-difference gradients (input, every parameter of both
directions, every merge mode), equality with torch.nn.LSTM / GRU(bidirectional=True) from the
same weights, the compiled training step against the eager one, saving, summary and bad
input."""

import json

import numpy as np
import pytest
from helpers import assert_backend_array, on_backend
from test_recurrent import (
    KINDS,
    assert_close,
    check_compiled_training,
    randomized,
    sequences,
    token_data,
    train,
)

import portanet
from portanet import (
    GRU,
    LSTM,
    Bidirectional,
    Dense,
    Embedding,
    InputError,
    Network,
    ShapeError,
)
from portanet.backend import to_numpy
from portanet.testing import CheckError, check_layer

WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def bidirectional(kind, input_size, hidden_size, return_sequences, merge_mode="concat",
                  initial_state="learned", scale=0.5):
    """A float64 Bidirectional ``kind`` with random values in every parameter of both
    directions."""
    layer = Bidirectional(KINDS[kind](input_size, hidden_size, return_sequences=return_sequences,
                                      initial_state=initial_state, dtype="float64"), merge_mode)
    for direction in layer.sublayers:
        randomized(direction, scale)
    return layer


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("return_sequences", [True, False])
def test_gradient(kind, return_sequences):
    """The input and every parameter of both directions, the learned initial states too."""
    layer = bidirectional(kind, 3, 4, return_sequences)
    assert layer.params == () and all(len(d.params) == 4 + len(d.states) for d in layer.sublayers)
    check_layer(layer, x=sequences())


@pytest.mark.parametrize("merge_mode", ["sum", "mul", "ave"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_gradient_of_each_merge_mode(merge_mode, return_sequences):
    check_layer(bidirectional("GRU", 2, 3, return_sequences, merge_mode, initial_state="zeros"),
                x=sequences(n=2, t=3, d=2))


def test_the_check_sees_a_wrong_gradient_of_the_backward_direction():
    """check_layer checks a container's sublayers' parameters: a backprop that doubles the
    backward direction's bias gradient fails it, naming that sublayer and parameter."""

    class Wrong(Bidirectional):
        def apply(self, state, x, run):
            out, backprop = super().apply(state, x, run)

            def doubled(grad_output, need_input=True):
                result = backprop(grad_output, need_input)
                grads = run.grads[id(self.backward_layer)]
                grads["bias_ih"] = 2 * grads["bias_ih"]
                return result
            return out, doubled

    layer = Wrong(GRU(2, 3, dtype="float64"))
    with pytest.raises(CheckError, match=r"parameter 'bias_ih' of sublayer 1 \(GRU"):
        check_layer(layer, x=sequences(n=2, t=3, d=2))


# -- the same as torch.nn ----------------------------------------------------------------------
def torch_twin(torch, layer):
    """torch.nn.LSTM / GRU (bidirectional, batch_first, float64) holding a copy of the
    weights of ``layer``'s two directions (torch's ``_reverse`` weights: the backward one)."""
    forward = layer.forward_layer
    module = getattr(torch.nn, type(forward).__name__)(
        forward.input_size, forward.hidden_size, batch_first=True, bidirectional=True,
        dtype=torch.float64)
    with torch.no_grad():
        for suffix, direction in (("", forward), ("_reverse", layer.backward_layer)):
            for name in WEIGHTS:
                getattr(module, f"{name}_l0{suffix}").copy_(
                    torch.tensor(to_numpy(getattr(direction, name))))
    return module


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("return_sequences", [True, False])
def test_equals_torch(kind, return_sequences):
    """Outputs (every step's: torch's output; the last: torch's h_n of both directions, forward
    first), the input gradient and the gradients of every weight and learned initial state
    of both directions equal torch's."""
    torch = pytest.importorskip("torch")
    layer = bidirectional(kind, 3, 5, return_sequences, scale=0.6)
    x, n, size = sequences(n=4, t=6), 4, 5
    module = torch_twin(torch, layer)
    x_torch = torch.tensor(x, requires_grad=True)
    directions = layer.sublayers
    states = layer.forward_layer.states
    starts = {name: [torch.tensor(to_numpy(getattr(d, name)), requires_grad=True)
                     for d in directions] for name in states}
    initial = [torch.stack(starts[name])[:, None, :].expand(2, n, size) for name in states]
    out_torch, final = module(x_torch, initial[0] if kind == "GRU" else tuple(initial))
    if not return_sequences:
        h_n = final if kind == "GRU" else final[0]
        out_torch = torch.cat([h_n[0], h_n[1]], dim=-1)
    grad_output = np.random.default_rng(3).normal(size=tuple(out_torch.shape))
    out_torch.backward(torch.tensor(grad_output))

    out = layer.forward(on_backend(x), training=True)
    assert_close(out, out_torch.detach().numpy(), "output")
    assert_close(layer.backward(on_backend(grad_output)), x_torch.grad.numpy(), "input gradient")
    for suffix, direction in zip(("", "_reverse"), directions):
        for name in WEIGHTS:
            assert_close(direction.grads[name],
                         getattr(module, f"{name}_l0{suffix}").grad.numpy(), name + suffix)
    for name in states:
        for index, direction in enumerate(directions):
            assert_close(direction.grads[name], starts[name][index].grad.numpy(), name)


# -- in networks -------------------------------------------------------------------------------
def tagger(kind, merge_mode):
    """Embedding -> bidirectional layer (every step's output) -> scores of the next token."""
    hidden = 6
    features = 2 * hidden if merge_mode == "concat" else hidden
    net = Network([Embedding(7, 5),
                   Bidirectional(KINDS[kind](5, hidden, return_sequences=True,
                                             initial_state="learned"), merge_mode),
                   Dense(features, 7)], dtype="float64")
    net.use("sparse_softmax_crossentropy")
    return net


@pytest.mark.parametrize("kind, merge_mode", [("LSTM", "concat"), ("GRU", "ave")])
def test_learns_and_compiled_equals_eager(kind, merge_mode, backend):
    check_compiled_training(lambda: tagger(kind, merge_mode), backend)


def test_directions_start_apart_and_keep_the_backend(backend):
    """The backward direction is a new layer with the forward one's settings and dtype, other
    initial weights; float32 in, float32 out on the backend's device, (N, 2 hidden) from the
    last steps; the caller's arrays are left alone."""
    forward = LSTM(3, 4)
    layer = Bidirectional(forward)
    assert layer.forward_layer is forward and layer.backward_layer is not forward
    assert layer.backward_layer.config() == forward.config()
    assert all(not np.array_equal(a, b) for a, b in zip(forward.get_weights(),
                                                         layer.backward_layer.get_weights()))
    x_host = sequences(n=5, t=3).astype(np.float32)
    x = on_backend(x_host, "float32")
    out = layer.forward(x, training=True)
    assert_backend_array(out, backend, "float32")
    assert tuple(out.shape) == (5, 8)
    grad = on_backend(np.ones((5, 8)), "float32")
    assert_backend_array(layer.backward(grad), backend, "float32")
    for direction in layer.sublayers:
        assert sorted(direction.grads) == sorted(WEIGHTS)
        for value in direction.grads.values():
            assert_backend_array(value, backend, "float32")
    np.testing.assert_array_equal(to_numpy(x), x_host)
    np.testing.assert_array_equal(to_numpy(grad), np.ones((5, 8), dtype=np.float32))


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_saved_and_loaded(suffix, tmp_path):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    net, _ = train(lambda: tagger("GRU", "ave"), compile=False)
    path = net.save(tmp_path / f"net{suffix}")
    loaded = portanet.load(path)
    layer = loaded.layers[1]
    assert type(layer) is Bidirectional and layer.merge_mode == "ave"
    assert repr(loaded) == repr(net)
    for direction, saved in zip(layer.sublayers, net.layers[1].sublayers):
        assert type(direction) is GRU and direction.config() == saved.config()
        for value, expected in zip(direction.get_weights(), saved.get_weights()):
            np.testing.assert_array_equal(value, expected)
    x, _ = token_data(samples=3)
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))


def test_the_description_names_both_directions(tmp_path):
    path = tagger("LSTM", "concat").save(tmp_path / "net.npz")
    with np.load(path) as archive:
        header = json.loads(archive["__portanet__.json"].tobytes())
        assert "1.1/weight_ih" in archive.files and "1.0/h0" in archive.files
    spec = header["layers"][1]
    assert spec["type"] == "Bidirectional" and spec["config"] == {"merge_mode": "concat"}
    assert [sub["type"] for sub in spec["sublayers"]] == ["LSTM", "LSTM"]


def test_summary_shapes_and_parameters():
    net = Network([Embedding(7, 5), Bidirectional(LSTM(5, 6, return_sequences=True)),
                   Bidirectional(GRU(12, 4), merge_mode="sum"), Dense(4, 2)])
    lines = []
    net.summary(print_fn=lines.append, input_shape=(10,))
    rows = [line.split() for line in lines[0].split("\n")]
    lstm, gru = 4 * 6 * (5 + 6 + 2), 3 * 4 * (12 + 4 + 2)
    assert rows[2] == ["Bidirectional", "(10,", "12)", f"{2 * lstm:,}"]
    assert rows[3][-3:] == rows[4][-3:] == ["(10,", "6)", f"{lstm:,}"]
    assert rows[5] == ["Bidirectional", "(4,)", f"{2 * gru:,}"]


# -- bad input ---------------------------------------------------------------------------------
def test_bad_arguments_are_named():
    with pytest.raises(InputError, match=r"wraps an LSTM or a GRU, got Dense"):
        Bidirectional(Dense(3, 4))
    with pytest.raises(InputError,
                       match="merge_mode must be one of 'concat', 'sum', 'mul', 'ave'"):
        Bidirectional(LSTM(3, 4), merge_mode="max")
    forward = GRU(3, 4)
    with pytest.raises(InputError, match="backward_layer of its own"):
        Bidirectional(forward, backward_layer=forward)
    with pytest.raises(InputError, match=r"must be a GRU with the settings of GRU\(input_size=3"):
        Bidirectional(forward, backward_layer=GRU(3, 5))
    with pytest.raises(InputError, match="must be a GRU"):
        Bidirectional(forward, backward_layer=LSTM(3, 4))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_bad_input_is_named(kind):
    layer = Bidirectional(KINDS[kind](3, 4, return_sequences=True))
    with pytest.raises(ShapeError, match=r"\(time steps, 3\).*reshape to \(N, T, 1\)"):
        layer.forward(on_backend(np.zeros((2, 5)), "float32"))
    with pytest.raises(ShapeError, match=r"\(time steps, 3\), got \(5, 2\)"):
        layer.forward(on_backend(np.zeros((2, 5, 2)), "float32"))
    with pytest.raises(ShapeError, match=r"\(time steps, 3\), got \(5, 3, 1\)"):
        layer.forward(on_backend(np.zeros((2, 5, 3, 1)), "float32"))
    with pytest.raises(ShapeError, match=r"\(time steps, 3\), got \(7, 8\)"):  # concat: 2 * 4
        Network([layer, Bidirectional(LSTM(3, 4))]).predict(np.zeros((2, 7, 3)))
