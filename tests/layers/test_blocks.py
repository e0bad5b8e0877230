"""Building blocks of sequence models: Dense over the last axis, GELU/SiLU, LayerNorm,
embeddings, self-attention, Sequential/Residual containers, the loss on integer targets and
gradient clipping; a tiny causal transformer trained eagerly and compiled, on every backend."""

import math
import warnings

import numpy as np
import pytest
from helpers import on_backend

import portanet
from portanet import (
    ActivationLayer,
    CompileWarning,
    Dense,
    Dropout,
    Embedding,
    FCLayer,
    InputError,
    LayerNorm,
    Network,
    PositionalEmbedding,
    Residual,
    SelfAttention,
    Sequential,
    ShapeError,
)
from portanet.activations import gelu
from portanet.backend import dtype_name, to_numpy
from portanet.losses import (
    softmax_crossentropy,
    sparse_softmax_crossentropy,
    sparse_softmax_crossentropy_prime,
)
from portanet.optimizers import SGD, Adam
from portanet.testing import assert_gradient_close, check_layer, numeric_gradient
from portanet.training.step import TrainStep, parameter_slots

RNG = np.random.default_rng(5)


def sequences(n=2, t=3, d=4):
    return RNG.normal(size=(n, t, d))


def check_nested_gradients(container, x):
    """The container's input gradient, and the gradient of every parameter of its sublayers,
    against finite differences of sum(forward(x) * weights); backward_params leaves the same
    parameter gradients as backward."""
    check_layer(container, x=x)  # the input; a container has no parameters of its own
    weights = np.random.default_rng(11).normal(size=tuple(container.forward(
        on_backend(x), training=True).shape))

    def objective():
        return float(np.sum(to_numpy(container.forward(on_backend(x), training=True)) * weights))

    container.forward(on_backend(x), training=True)
    container.backward(on_backend(weights))
    slots = parameter_slots([container])
    assert slots
    grads = [layer.grads[name] for layer, name in slots]
    container.forward(on_backend(x), training=True)
    container.backward_params(on_backend(weights))
    for (layer, name), grad in zip(slots, grads):
        assert_gradient_close(layer.grads[name], to_numpy(grad), "backward_params")
    for (layer, name), grad in zip(slots, grads):
        original = to_numpy(getattr(layer, name))

        def at_param(point, layer=layer, name=name):
            setattr(layer, name, on_backend(point))
            return objective()

        numeric = numeric_gradient(at_param, original)
        setattr(layer, name, on_backend(original))
        assert_gradient_close(grad, numeric, f"{layer!r}.{name}")


# -- Dense, activations, LayerNorm -------------------------------------------------------------
def test_dense_works_on_any_rank_and_fclayer_keeps_its_contract(backend):
    dense = Dense(4, 5, dtype="float64")
    assert tuple(dense.bias.shape) == (5,)
    check_layer(dense, x=sequences())
    check_layer(dense, x=RNG.normal(size=(3, 4)))
    assert dense.output_shape((7, 4)) == (7, 5)
    fc = FCLayer(4, 5, dtype="float64")
    assert tuple(fc.bias.shape) == (1, 5) and fc.input_shape == (4,)
    check_layer(fc, x=RNG.normal(size=(3, 4)))
    with pytest.raises(ShapeError, match="per-sample shape"):
        fc.forward(on_backend(sequences()))
    with pytest.raises(ShapeError, match="last axis"):
        dense.forward(on_backend(sequences(d=3)))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_gelu_and_silu_gradients(name, training, backend):
    """Training forwards compute the derivative with the value; after an inference forward,
    backward evaluates the derivative from the input."""
    layer = ActivationLayer(name)
    assert layer.builtin and layer.gradient_from_output is None and layer.with_backward
    check_layer(layer, x=2 * sequences(), training=training)


def test_gelu_is_close_to_its_exact_form(backend):
    x = np.linspace(-5, 5, 101)
    exact = 0.5 * x * (1 + np.array([math.erf(v / math.sqrt(2)) for v in x]))
    approximate = to_numpy(gelu(on_backend(x)))
    assert np.max(np.abs(approximate - exact)) < 1e-3
    silu = to_numpy(ActivationLayer("silu").forward(on_backend(x)))
    np.testing.assert_allclose(silu, x / (1 + np.exp(-x)), rtol=1e-12, atol=1e-12)


def test_layer_norm_normalises_each_position_and_its_gradients(backend):
    x = 3 + 2 * sequences(d=5)
    layer = LayerNorm(5, dtype="float64")
    out = to_numpy(layer.forward(on_backend(x)))
    np.testing.assert_allclose(out.mean(axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=-1), 1, rtol=1e-4)
    layer.gamma = on_backend(RNG.normal(size=5))
    layer.beta = on_backend(RNG.normal(size=5))
    check_layer(layer, x=x)
    check_layer(layer, x=x[:, 0, :])


# -- embeddings ------------------------------------------------------------------------------
def test_embedding_looks_up_rows_and_adds_the_gradients_of_repeated_ids(backend):
    layer = Embedding(6, 3, dtype="float64")
    ids = np.array([[1, 4, 1], [1, 0, 4]])  # 1 three times, 4 twice, 2, 3 and 5 never
    ids_on_backend = portanet.get_backend().asarray(ids, "int64")
    out = layer.forward(ids_on_backend)
    np.testing.assert_array_equal(to_numpy(out), to_numpy(layer.weights)[ids])
    weights = RNG.normal(size=(2, 3, 3))
    assert layer.backward(on_backend(weights)) is None  # ids have no gradient

    def objective(table):
        layer.weights = on_backend(table)
        return float(np.sum(to_numpy(layer.forward(ids_on_backend)) * weights))

    original = to_numpy(layer.weights)
    numeric = numeric_gradient(objective, original)
    assert_gradient_close(layer.grads["weights"], numeric, "the embedding's weights")
    assert np.all(numeric[[2, 3, 5]] == 0) and np.any(numeric[1] != 0)


def test_embedding_rejects_ids_out_of_range_and_float_ids(backend):
    layer = Embedding(5, 2)
    with pytest.raises(InputError, match=r"\[0, 5\)"):
        layer.forward(portanet.get_backend().asarray([[0, 5]], "int64"))
    with pytest.raises(InputError, match=r"\[0, 5\)"):
        layer.forward(portanet.get_backend().asarray([[-1, 2]], "int64"))
    with pytest.raises(InputError, match="integer token ids"):
        layer.forward(on_backend([[0.0, 1.0]]))
    net = Network([Embedding(5, 2), Dense(2, 5)])
    net.use("sparse_softmax_crossentropy")
    with pytest.raises(InputError, match="integers"):
        net.fit(np.array([[0.0, 1.0]]), np.array([[0, 1]]), epochs=1, verbose=0)
    with pytest.raises(InputError, match="classes from 0 to 7"):
        net.fit(np.array([[0, 1]]), np.array([[0, 7]]), epochs=1, verbose=0)
    with pytest.raises(ShapeError, match="one class index per row"):
        net.fit(np.array([[0, 1]]), np.array([[0, 1, 2]]), epochs=1, verbose=0)
    with pytest.raises(InputError, match=r"\[0, 5\)"):  # checked before a compiled pass
        net.predict(np.array([[0, 5]]))
    net.use("softmax_crossentropy")
    with pytest.raises(ShapeError, match="sparse_softmax_crossentropy"):
        net.fit(np.array([[0, 1]]), np.array([[0, 1]]), epochs=1, verbose=0)


def test_positional_embedding_gradients_and_its_context(backend):
    layer = PositionalEmbedding(5, 4, dtype="float64")
    check_layer(layer, x=sequences(t=3))
    check_layer(layer, x=sequences(t=5))
    with pytest.raises(ShapeError, match="up to 5"):
        layer.forward(on_backend(sequences(t=6)))


# -- self-attention ----------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_gradients(causal, backend):
    layer = SelfAttention(4, 2, causal=causal, dtype="float64")
    layer.qkv_bias = on_backend(RNG.normal(size=12) * 0.1)
    check_layer(layer, x=sequences(t=4))


def test_causal_attention_ignores_later_positions(backend):
    x = sequences(t=5)
    later = x.copy()
    later[:, 3:, :] += 1.0
    for causal in (True, False):
        layer = SelfAttention(4, 2, causal=causal, dtype="float64")
        a, b = (to_numpy(layer.forward(on_backend(v))) for v in (x, later))
        assert np.allclose(a[:, :3], b[:, :3], rtol=1e-13, atol=1e-13) == causal
        assert not np.allclose(a[:, 3:], b[:, 3:])


def test_self_attention_checks_its_heads_and_input(backend):
    with pytest.raises(InputError, match="multiple of heads"):
        SelfAttention(6, 4)
    with pytest.raises(ShapeError, match="positions, 4"):
        SelfAttention(4, 2).forward(on_backend(RNG.normal(size=(2, 4)), "float32"))


# -- containers ------------------------------------------------------------------------------
def block(dim=4):
    return Residual(Sequential([LayerNorm(dim, dtype="float64"),
                                SelfAttention(dim, 2, causal=True, dtype="float64")]))


def test_nested_containers_gradients(backend):
    check_nested_gradients(block(), sequences(t=3))
    mlp = Sequential([Dense(4, 6, dtype="float64"), ActivationLayer("gelu"),
                      Residual(Sequential([Dense(6, 6, dtype="float64"),
                                           ActivationLayer("silu")])),
                      Dense(6, 4, dtype="float64")])
    check_nested_gradients(mlp, sequences())


def test_residual_needs_a_block_that_keeps_the_shape(backend):
    with pytest.raises(ShapeError, match="keep the shape"):
        Network([FCLayer(4, 4), Residual(Dense(4, 3))])
    with pytest.raises(ShapeError, match="keep the shape"):
        Residual(Dense(4, 3)).forward(on_backend(sequences(), "float32"))
    with pytest.raises(InputError, match="list of layers"):
        Sequential(Dense(4, 4))


def test_dropout_inside_a_container_gets_its_draws(backend):
    dropout = Dropout(0.5)
    net = Network([Dense(3, 4), Residual(Sequential([Dense(4, 4), dropout]))])
    net.use("mse")
    step = TrainStep(net, SGD(0.1))
    assert step.random_layers == [dropout]
    (noise,) = step.draw((3,), 7, "float32")
    assert tuple(noise.shape) == (7, 4)
    x, y = RNG.normal(size=(8, 3)), RNG.normal(size=(8, 4))
    losses = []
    for _ in range(2):
        portanet.set_seed(3)
        dropout_net = Network([Dense(3, 4), Residual(Sequential([Dense(4, 4), Dropout(0.5)]))])
        dropout_net.use("mse")
        losses.append(dropout_net.fit(x, y, epochs=2, batch_size=4, verbose=0,
                                      compile=False).history["loss"])
    assert losses[0] == losses[1]  # the seeded draws reach the nested layer


def test_summary_lists_the_layers_of_containers(backend):
    lines = []
    net = Network([Dense(4, 4), block()])
    net.summary(print_fn=lines.append)
    text = lines[0]
    assert "Residual" in text and "  Sequential" in text and "    LayerNorm" in text
    total = sum(math.prod(getattr(layer, name).shape) for layer, name in
                parameter_slots(net.layers))
    assert f"total trainable parameters: {total:,}" in text
    assert "?" in text  # no layer declares its input shape ...
    lines.clear()
    net.summary(print_fn=lines.append, input_shape=(7, 4))  # ... unless summary is told
    assert "?" not in lines[0] and lines[0].count("(7, 4)") == 5


# -- the loss on integer targets -------------------------------------------------------------
def test_sparse_softmax_crossentropy_and_its_gradient(backend):
    logits = RNG.normal(size=(2, 3, 5)) * 3
    targets = np.array([[0, 4, 2], [4, 4, 1]])
    y = portanet.get_backend().asarray(targets, "int64")
    loss = float(sparse_softmax_crossentropy(y, on_backend(logits)))
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    expected = -np.take_along_axis(log_p, targets[..., None], axis=-1).mean()
    assert loss == pytest.approx(expected, rel=1e-12)
    assert loss == pytest.approx(float(softmax_crossentropy(on_backend(np.eye(5)[targets]),
                                                            on_backend(logits))), rel=1e-12)

    def objective(point):
        return float(sparse_softmax_crossentropy(y, on_backend(point)))

    assert_gradient_close(sparse_softmax_crossentropy_prime(y, on_backend(logits)),
                          numeric_gradient(objective, logits), "the loss's gradient")
    huge = on_backend(np.array([[1e4, 0.0, -1e4]]))
    assert math.isfinite(float(sparse_softmax_crossentropy(
        portanet.get_backend().asarray([2], "int64"), huge)))


# -- gradient clipping -----------------------------------------------------------------------
@pytest.mark.parametrize("clip, scale", [(1.0, None), (100.0, 1.0)])
def test_clip_norm_scales_all_gradients_together(clip, scale, backend):
    layers = [Dense(2, 3, dtype="float64"), Dense(3, 2, dtype="float32")]  # two dtype groups
    grads = [{name: RNG.normal(size=tuple(getattr(layer, name).shape)) for name in layer.params}
             for layer in layers]
    norm = math.sqrt(sum(float(np.sum(g * g)) for group in grads for g in group.values()))
    scale = scale or clip / norm
    before = [{name: to_numpy(getattr(layer, name)) for name in layer.params} for layer in layers]
    for layer, group in zip(layers, grads):
        layer.grads = {name: on_backend(g, dtype_name(layer.weights))
                       for name, g in group.items()}
    SGD(1.0, clip_norm=clip).step(parameter_slots(layers))
    for layer, old, group in zip(layers, before, grads):
        for name, grad in group.items():
            np.testing.assert_allclose(old[name] - to_numpy(getattr(layer, name)),
                                       scale * grad, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="clip_norm"):
        Adam(clip_norm=0)


# -- saving ------------------------------------------------------------------------------------
def transformer(vocabulary=7, dim=8, heads=2, context=6):
    """Embedding + positions, two attention blocks and an MLP block (pre-norm), a final norm
    and the scores of the next token."""
    attention = [Residual(Sequential([LayerNorm(dim), SelfAttention(dim, heads, causal=True)]))
                 for _ in range(2)]
    mlp = Residual(Sequential([LayerNorm(dim), Dense(dim, 4 * dim), ActivationLayer("gelu"),
                               Dense(4 * dim, dim)]))
    net = Network([Embedding(vocabulary, dim), PositionalEmbedding(context, dim), *attention,
                   mlp, LayerNorm(dim), Dense(dim, vocabulary)], dtype="float64")
    net.use("sparse_softmax_crossentropy")
    return net


def token_data(samples=32, vocabulary=7, context=6):
    """Sequences counting up modulo ``vocabulary``; the targets are the next tokens."""
    starts = np.random.default_rng(2).integers(0, vocabulary, size=(samples, 1))
    tokens = (starts + np.arange(context + 1)) % vocabulary
    return tokens[:, :-1], tokens[:, 1:]


@pytest.mark.parametrize("make, x", [
    (lambda: Network([Dense(4, 3), ActivationLayer("silu"), LayerNorm(3)]), sequences()),
    (lambda: Network([PositionalEmbedding(4, 4), SelfAttention(4, 2, causal=True)]),
     sequences()),
    (lambda: Network([block()]), sequences()),
    (transformer, token_data()[0]),
])
def test_save_load_gives_the_same_outputs(make, x, backend, tmp_path):
    net = make()
    for layer, name in parameter_slots(net.layers):  # not the initial values: trained ones
        value = getattr(layer, name)
        setattr(layer, name, value + on_backend(RNG.normal(size=tuple(value.shape)) * 0.1,
                                                dtype_name(value)))
    loaded = portanet.load(net.save(tmp_path / "net.npz"))
    assert repr(loaded) == repr(net)
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_saved_transformer_generates_the_same_text(suffix, backend, tmp_path):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    net = transformer()
    loaded = portanet.load(net.save(tmp_path / f"net{suffix}"))
    texts = []
    for model in (net, loaded):
        portanet.set_seed(4)
        texts.append(portanet.text.generate(model, np.array([1, 2]), steps=8, context=6,
                                            temperature=2.0, top_k=5).tolist())
    assert texts[0] == texts[1] and len(texts[0]) == 10


def test_transformer_saved_on_this_backend_loads_on_numpy(backend, tmp_path):
    net = transformer()
    x, _ = token_data(samples=3)
    expected = net.predict(x)
    path = net.save(tmp_path / "net.npz")
    portanet.set_backend("numpy")  # the fixture gives the run's backend back afterwards
    np.testing.assert_allclose(portanet.load(path).predict(x), expected, rtol=1e-12,
                               atol=1e-12)


# -- a tiny causal transformer ---------------------------------------------------------------
def train_transformer(compile, steps_per_epoch=4, epochs=3):
    portanet.set_seed(9)
    net = transformer()
    x, y = token_data(samples=8 * steps_per_epoch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)  # backends without a compiler say so
        history = net.fit(x, y, epochs=epochs, batch_size=8, shuffle=True,
                          optimizer=Adam(0.01, clip_norm=1.0), verbose=0, compile=compile)
    return net, history


def test_tiny_transformer_learns_eagerly_and_compiled(backend):
    eager, eager_history = train_transformer(compile=False)
    compiled, history = train_transformer(compile=True)
    losses = eager_history.history["loss"]
    assert losses[-1] < 0.8 * losses[0]
    assert eager_history.compiled == "eager"
    assert history.compiled == (backend.library.compiler.name
                                if backend.library.compiler else "eager")
    assert backend.name != "jax" or history.compiled == "jax.jit"
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-9)
    x, y = token_data(samples=5)
    np.testing.assert_allclose(compiled.predict(x), eager.predict(x), rtol=1e-8, atol=1e-10)
    scores = eager.evaluate(x, y)
    assert 0 <= scores["accuracy"] <= 1 and math.isfinite(scores["loss"])


def test_transformer_is_causal(backend):
    net = transformer()
    x, _ = token_data(samples=4)
    later = x.copy()
    later[:, 4] = (later[:, 4] + 3) % 7
    a, b = net.predict(x), net.predict(later)
    assert a.shape == (4, 6, 7)
    np.testing.assert_allclose(a[:, :4], b[:, :4], rtol=1e-12, atol=1e-12)
    assert not np.allclose(a[:, 4:], b[:, 4:])
