"""LSTM and GRU: finite-difference gradients (input, every weight, the learned initial
state), equality with torch.nn.LSTM / torch.nn.GRU from the same weights (where torch
imports), the compiled training step against the eager one, saving, summary and bad input."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_backend_array, on_backend

import portanet
from portanet import GRU, LSTM, CompileWarning, Dense, Embedding, InputError, Network, ShapeError
from portanet.backend import to_numpy
from portanet.optimizers import Adam
from portanet.testing import check_layer

RNG = np.random.default_rng(21)
KINDS = {"LSTM": LSTM, "GRU": GRU}


def sequences(n=2, t=4, d=3):
    return RNG.normal(size=(n, t, d))


def randomized(layer, scale=0.5):
    """``layer`` with random values in every parameter (the learned initial states too, which
    start at zero), in float64."""
    layer.astype("float64")
    for name in layer.params:
        value = getattr(layer, name)
        setattr(layer, name, on_backend(RNG.normal(scale=scale, size=tuple(value.shape))))
    return layer


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("initial_state", ["zeros", "learned"])
def test_gradient(kind, return_sequences, initial_state):
    layer = randomized(KINDS[kind](3, 4, return_sequences=return_sequences,
                                   initial_state=initial_state, dtype="float64"))
    assert len(layer.params) == 4 + (len(layer.states) if initial_state == "learned" else 0)
    check_layer(layer, x=sequences())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_gradient_of_one_time_step(kind):
    check_layer(randomized(KINDS[kind](2, 3, initial_state="learned", dtype="float64")),
                x=sequences(n=3, t=1, d=2))


# -- the same as torch.nn ----------------------------------------------------------------------
def torch_twin(torch, layer):
    """torch.nn.LSTM / GRU (batch_first, float64) holding a copy of ``layer``'s weights."""
    module = getattr(torch.nn, type(layer).__name__)(layer.input_size, layer.hidden_size,
                                                    batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(module, f"{name}_l0").copy_(torch.tensor(to_numpy(getattr(layer, name))))
    return module


def assert_close(actual, expected, what):
    """Equal to 1e-10 relative, the scale being the largest magnitude of ``expected``."""
    actual, expected = to_numpy(actual), np.asarray(expected)
    assert actual.shape == expected.shape, what
    scale = np.max(np.abs(expected))
    assert scale > 0, what
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10 * scale, err_msg=what)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("return_sequences", [True, False])
def test_equals_torch(kind, return_sequences):
    """Outputs, the input gradient, every weight's gradient and the initial states' gradients
    equal torch's (the learned initial states given to torch as per-sample h0, c0)."""
    torch = pytest.importorskip("torch")
    layer = randomized(KINDS[kind](3, 5, return_sequences=return_sequences,
                                   initial_state="learned", dtype="float64"), scale=0.6)
    x, n = sequences(n=4, t=6), 4
    module = torch_twin(torch, layer)
    x_torch = torch.tensor(x, requires_grad=True)
    starts = [torch.tensor(to_numpy(getattr(layer, name)), requires_grad=True)
              for name in layer.states]
    expanded = [s.expand(1, n, layer.hidden_size) for s in starts]
    out_torch, _ = module(x_torch, expanded[0] if kind == "GRU" else tuple(expanded))
    if not return_sequences:
        out_torch = out_torch[:, -1, :]
    grad_output = RNG.normal(size=tuple(out_torch.shape))
    out_torch.backward(torch.tensor(grad_output))

    out = layer.forward(on_backend(x), training=True)
    assert_close(out, out_torch.detach().numpy(), "output")
    grad_input = layer.backward(on_backend(grad_output))
    assert_close(grad_input, x_torch.grad.numpy(), "input gradient")
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert_close(layer.grads[name], getattr(module, f"{name}_l0").grad.numpy(), name)
    for name, start in zip(layer.states, starts):
        assert_close(layer.grads[name], start.grad.numpy(), name)


# -- in networks -------------------------------------------------------------------------------
def language_model(kind, dtype="float64"):
    """Embedding -> recurrent layer (every step's output) -> scores of the next token."""
    net = Network([Embedding(7, 5), KINDS[kind](5, 6, return_sequences=True,
                                                initial_state="learned"), Dense(6, 7)],
                  dtype=dtype)
    net.use("sparse_softmax_crossentropy")
    return net


def token_data(samples=32, steps=6):
    """Sequences counting up modulo 7; the targets are the next tokens."""
    starts = np.random.default_rng(2).integers(0, 7, size=(samples, 1))
    tokens = (starts + np.arange(steps + 1)) % 7
    return tokens[:, :-1], tokens[:, 1:]


def train(build, compile):
    """The network ``build()`` makes, trained 5 epochs on :func:`token_data`: (net, history)."""
    portanet.set_seed(9)
    net = build()
    x, y = token_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)  # backends without a compiler say so
        history = net.fit(x, y, epochs=5, batch_size=8, shuffle=True,
                          optimizer=Adam(0.05, clip_norm=1.0), verbose=0, compile=compile)
    return net, history


def check_compiled_training(build, backend):
    """The network ``build()`` makes learns, and trained compiled it gives the eager losses and
    predictions."""
    eager, eager_history = train(build, compile=False)
    compiled, history = train(build, compile=True)
    losses = eager_history.history["loss"]
    assert losses[-1] < 0.8 * losses[0]
    assert history.compiled == (backend.library.compiler.name
                                if backend.library.compiler else "eager")
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-9)
    x, _ = token_data(samples=3)
    prediction = compiled.predict(x)
    np.testing.assert_allclose(prediction, eager.predict(x), rtol=1e-8, atol=1e-10)
    assert prediction.shape == (3, 6, 7)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_learns_and_compiled_equals_eager(kind, backend):
    check_compiled_training(lambda: language_model(kind), backend)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_last_step_classifier_keeps_the_backend(kind, backend):
    """return_sequences=False: (N, hidden); float32 in, float32 out, on the backend's device;
    the caller's arrays are left alone."""
    layer = KINDS[kind](3, 4)
    x_host = sequences(n=5, t=3).astype(np.float32)
    x = on_backend(x_host, "float32")
    out = layer.forward(x, training=True)
    assert_backend_array(out, backend, "float32")
    assert tuple(out.shape) == (5, 4)
    grad = on_backend(np.ones((5, 4)), "float32")
    assert_backend_array(layer.backward(grad), backend, "float32")
    for value in layer.grads.values():
        assert_backend_array(value, backend, "float32")
    np.testing.assert_array_equal(to_numpy(x), x_host)
    np.testing.assert_array_equal(to_numpy(grad), np.ones((5, 4), dtype=np.float32))


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_saved_and_loaded(kind, suffix, tmp_path):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    net, _ = train(lambda: language_model(kind), compile=False)
    loaded = portanet.load(net.save(tmp_path / f"net{suffix}"))
    recurrent = loaded.layers[1]
    assert type(recurrent) is KINDS[kind] and recurrent.config() == net.layers[1].config()
    x, _ = token_data(samples=3)
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))


def test_summary_names_the_layers_and_counts_their_parameters():
    net = Network([Embedding(7, 5), LSTM(5, 6, return_sequences=True), GRU(6, 4), Dense(4, 2)])
    lines = []
    net.summary(print_fn=lines.append, input_shape=(10,))
    text = "\n".join(lines)
    lstm = 4 * 6 * (5 + 6 + 2)
    gru = 3 * 4 * (6 + 4 + 2)
    assert "LSTM" in text and "GRU" in text
    assert f"{lstm:,}" in text and f"{gru:,}" in text
    assert "(10, 6)" in text


def test_pytorch_initialisation_range():
    layer = GRU(3, 16, dtype="float64")
    for name in layer.params:
        values = to_numpy(getattr(layer, name))
        assert np.all(np.abs(values) <= 0.25) and np.max(np.abs(values)) > 0.2


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_bad_input_is_named(kind):
    layer = KINDS[kind](3, 4)
    with pytest.raises(ShapeError, match=r"\(time steps, 3\).*reshape to \(N, T, 1\)"):
        layer.forward(on_backend(np.zeros((2, 5)), "float32"))
    with pytest.raises(ShapeError, match=r"\(time steps, 3\), got \(5, 2\)"):
        layer.forward(on_backend(np.zeros((2, 5, 2)), "float32"))
    with pytest.raises(ShapeError, match="at least one time step"):
        layer.forward(on_backend(np.zeros((2, 0, 3)), "float32"))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_initial_state_of_the_wrong_shape_is_named(kind):
    layer = KINDS[kind](3, 4, initial_state="learned")
    with pytest.raises(ShapeError, match=r"h0 has shape \(4,\), got \(5,\)"):
        layer.set_weights([*layer.get_weights()[:4], np.zeros(5), *layer.get_weights()[5:]])
    layer.h0 = on_backend(np.zeros((2, 4)), "float32")  # one per sample: not this layer's form
    with pytest.raises(ShapeError, match=r"initial state h0 has shape \(2, 4\), expected \(4,\)"):
        layer.forward(on_backend(np.zeros((2, 5, 3)), "float32"))


@pytest.mark.parametrize("kwargs, message", [
    ({"input_size": 0}, "input_size must be an integer"),
    ({"hidden_size": 2.5}, "hidden_size must be an integer"),
    ({"return_sequences": "yes"}, "return_sequences must be True or False"),
    ({"initial_state": "random"}, "initial_state must be one of 'zeros', 'learned'"),
])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_bad_arguments_are_named(kind, kwargs, message):
    arguments = {"input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(InputError, match=message):
        KINDS[kind](**arguments)


def test_the_docs_example_builds_what_it_says():
    """docs/training.md's recurrent example: a language model's scores at every position, a
    classifier's from the last step with a learned initial state, a tagger's from both
    directions."""
    text = (Path(__file__).parents[2] / "docs" / "training.md").read_text()
    section = text.split("## Recurrent layers")[1]
    example = section.split("```python\n")[1].split("```")[0]
    names = {}
    exec(compile(example, "docs/training.md", "exec"), names)
    ids = np.random.default_rng(0).integers(0, 96, size=(2, 7))
    assert names["net"].predict(ids).shape == (2, 7, 96)
    assert names["classifier"].predict(sequences(n=4, t=5, d=3)).shape == (4, 5)
    assert "h0" in names["classifier"].layers[0].params
    assert names["tagger"].predict(ids).shape == (2, 7, 9)
