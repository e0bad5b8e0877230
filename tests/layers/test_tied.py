"""The output projection tied to an embedding (TiedDense): one parameter used twice, its
gradients summed, trained once per step by every optimizer, eager and compiled, saved once and
reloaded tied; bad ties are portanet errors."""

import copy
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import on_backend

import portanet
from portanet import (
    CompileWarning,
    Dense,
    Embedding,
    InputError,
    LayerNorm,
    ModelFileError,
    Network,
    Sequential,
    ShapeError,
    TiedDense,
)
from portanet.backend import to_numpy
from portanet.layers import Pass
from portanet.losses import with_prime
from portanet.models import causal_transformer
from portanet.optimizers import OPTIMIZERS, Adam
from portanet.testing import assert_gradient_close, check_layer, numeric_gradient
from portanet.training.step import parameter_slots

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from torch_models import cross_entropy, torch_transformer, transformer_weights  # noqa: E402

RNG = np.random.default_rng(3)


def tied_layers(bias):
    embedding = Embedding(6, 4, dtype="float64")
    embedding.weights = on_backend(RNG.normal(size=(6, 4)))
    tied = TiedDense(embedding, bias=bias, dtype="float64")
    if bias:
        tied.bias = on_backend(RNG.normal(size=(6,)))
    return [embedding, LayerNorm(4, dtype="float64"), tied]


def ids_on_backend(ids):
    return portanet.get_backend().asarray(ids, "int64")


@pytest.mark.parametrize("bias", [False, True])
def test_tied_projection_input_and_bias_gradients(bias, backend):
    check_layer(tied_layers(bias)[-1], (3, 4))


@pytest.mark.parametrize("bias", [False, True])
def test_embedding_matrix_gets_the_gradients_of_both_uses(bias, backend):
    layers = tied_layers(bias)
    embedding, tied = layers[0], layers[-1]
    ids = ids_on_backend(np.array([[1, 4, 1], [0, 5, 4]]))  # 2 and 3 only in the projection
    weights = RNG.normal(size=(2, 3, 6))

    def objective(matrix):
        run = Pass.of(layers)
        run.states[id(embedding)]["weights"] = on_backend(matrix)
        return float(np.sum(to_numpy(run.output(layers, ids)) * weights))

    for need_input in (True, False):
        run = Pass.of(layers, training=True)
        _, backprop = run.chain(layers, ids)
        backprop(on_backend(weights), need_input)
        assert set(run.grads[id(embedding)]) == {"weights"}
        numeric = numeric_gradient(objective, to_numpy(embedding.weights))
        assert_gradient_close(run.grads[id(embedding)]["weights"], numeric,
                              "the tied embedding's weights")
        assert (id(tied) in run.grads) == bias  # the projection has no parameter of its own
    assert np.all(numeric[[2, 3]] != 0)  # rows only the projection uses have a gradient


def tied_transformer(dtype="float64"):
    portanet.set_seed(4)
    net = causal_transformer(7, 6, width=8, heads=2, blocks=1, dtype=dtype,
                             tie_embeddings=True)
    starts = np.random.default_rng(2).integers(0, 7, size=(16, 1))
    tokens = (starts + np.arange(7)) % 7
    return net, tokens[:, :-1], tokens[:, 1:]


def test_tied_transformer_holds_one_matrix_and_learns_eagerly_and_compiled(backend):
    histories, nets = [], []
    for compile in (False, True):
        net, x, y = tied_transformer()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CompileWarning)  # backends without a compiler
            histories.append(net.fit(x, y, epochs=4, batch_size=8, verbose=0, compile=compile,
                                     optimizer=OPTIMIZERS["adam"](0.01)))
        nets.append(net)
    embedding, tied = nets[0].layers[0], nets[0].layers[-1]
    assert tied.embedding is embedding and tied.params == ()
    assert [name for layer, name in parameter_slots(nets[0].layers)
            if layer is embedding] == ["weights"]
    losses = histories[0].history["loss"]
    assert losses[-1] < 0.9 * losses[0]
    assert histories[1].compiled == (backend.library.compiler.name
                                     if backend.library.compiler else "eager")
    assert backend.name != "jax" or histories[1].compiled == "jax.jit"
    np.testing.assert_allclose(histories[1].history["loss"], losses, rtol=1e-9)
    np.testing.assert_allclose(to_numpy(nets[1].layers[0].weights), to_numpy(embedding.weights),
                               rtol=1e-8, atol=1e-10)


def test_tied_transformer_trains_as_its_pytorch_twin_in_float64(backend):
    """Three steps of Adam with clipping on the tied transformer and on its torch.nn twin (one
    nn.Parameter as embedding and output matrix) from the same weights: every loss and, after
    the steps, the parameters agree to 1e-10 relative. The twin clips as portanet does, by
    ``clip / max(norm, clip)``: PyTorch's clip_grad_norm_ divides by the norm plus 1e-6, which
    alone makes the losses differ by 2e-10 relative at the third step, tied or not."""
    if backend.name != "torch":
        pytest.skip("compares with PyTorch modules: runs on the torch backend")
    torch = pytest.importorskip("torch")
    net, x, y = tied_transformer()
    model = torch_transformer(torch, transformer_weights(net), heads=2)
    assert model.head[1].weight is model.embedding.weight
    parameters = list(model.parameters())  # the tied matrix once
    torch_adam = torch.optim.Adam(parameters, lr=0.01, eps=1e-7)
    optimizer = Adam(0.01, clip_norm=0.5)
    ours, theirs, scales = [], [], []
    for _ in range(3):
        ours.append(net.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0,
                            compile=False, optimizer=optimizer).history["loss"][-1])
        torch_adam.zero_grad()
        loss = cross_entropy(torch, model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        norm = float(torch.sqrt(sum(torch.sum(p.grad ** 2) for p in parameters)))
        scales.append(0.5 / max(norm, 0.5))
        for parameter in parameters:
            parameter.grad *= scales[-1]
        torch_adam.step()
        theirs.append(loss.item())
    assert theirs[-1] < theirs[0] and min(scales) < 1  # it learns; clipping is active
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    trained = transformer_weights(net)
    expected = {"0.weights": model.embedding.weight, "1.weights": model.positions,
                "2.0.0.gamma": model.norms[0].weight,
                "2.0.1.qkv_weights": model.attentions[0].in_proj_weight.T,
                "3.0.1.weights": model.mlps[0][1].weight.T, "4.beta": model.head[0].bias}
    for key, value in expected.items():
        value = value.detach().numpy()
        np.testing.assert_allclose(trained[key], value, rtol=1e-10,
                                   atol=1e-10 * np.max(np.abs(value)), err_msg=key)
    assert not np.allclose(trained["0.weights"], transformer_weights(tied_transformer()[0])[
        "0.weights"])  # the steps moved the tied matrix


# every optimizer eagerly; compiled (one parameter per array there) with and without state
@pytest.mark.parametrize("name, compile", [(name, False) for name in sorted(OPTIMIZERS)]
                         + [("sgd", True), ("adamw", True)])
def test_every_optimizer_updates_the_tied_matrix_once_with_the_summed_gradient(name, compile,
                                                                               backend):
    net, x, y = tied_transformer()
    reference = copy.deepcopy(net)  # the tie is kept: deepcopy copies the embedding once
    assert reference.layers[-1].embedding is reference.layers[0]
    run = Pass.of(reference.layers, training=True)
    out, backprop = run.chain(reference.layers, ids_on_backend(x))
    _, grad = with_prime(net.loss, net.loss_prime)(ids_on_backend(y), out)
    backprop(grad, need_input=False)
    slots = parameter_slots(reference.layers)
    for layer, _ in slots:
        layer.grads = run.grads[id(layer)]
    OPTIMIZERS[name](0.01).step(slots)  # one update of each parameter, summed gradients
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)  # backends without a compiler
        history = net.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0,
                          compile=compile, optimizer=OPTIMIZERS[name](0.01))
    compiler = backend.library.compiler
    assert history.compiled == (compiler.name if compile and compiler else "eager")
    for (layer, param), (twin, _) in zip(parameter_slots(net.layers), slots):
        np.testing.assert_allclose(to_numpy(getattr(layer, param)),
                                   to_numpy(getattr(twin, param)), rtol=1e-9, atol=1e-12,
                                   err_msg=f"{layer!r}.{param}")


@pytest.mark.parametrize("bias", [False, True])
def test_saved_once_and_loaded_tied(bias, backend, tmp_path):
    layers = tied_layers(bias)
    net = Network([*layers[:2], Sequential([Dense(4, 4, dtype="float64"), layers[-1]])])
    path = net.save(tmp_path / "net.npz")
    with np.load(path) as archive:
        assert sorted(name for name in archive.files if name.endswith("weights")) == [
            "0/weights", "2.0/weights"]  # the embedding's matrix once
        header = json.loads(archive["__portanet__.json"].tobytes())
    assert header["layers"][2]["sublayers"][1]["config"] == {"embedding": {"layer": "0"},
                                                             "bias": bias}
    loaded = portanet.load(path)
    assert loaded.layers[2].sublayers[1].embedding is loaded.layers[0]
    assert repr(loaded) == repr(net)
    ids = np.array([[1, 2, 3], [5, 0, 4]])
    np.testing.assert_array_equal(loaded.predict(ids), net.predict(ids))


def test_bad_ties_are_portanet_errors(backend, tmp_path):
    embedding = Embedding(5, 4)
    with pytest.raises(InputError, match="ties to an Embedding"):
        TiedDense(Dense(4, 5))
    with pytest.raises(InputError, match="not before it in the network"):
        Network([Dense(4, 4), TiedDense(embedding)])
    with pytest.raises(InputError, match="not before it in the network"):
        Network([Sequential([TiedDense(embedding), Dense(5, 4)]), embedding])
    with pytest.raises(ShapeError, match="embedding's 4 features"):  # the width differs
        Network([embedding, Dense(4, 3), TiedDense(embedding)]).predict(np.array([[1, 2]]))
    net = Network([embedding, TiedDense(embedding)])
    net.use("sparse_softmax_crossentropy")
    net.layers.insert(0, net.layers.pop())  # the tie now comes first: predict says so
    with pytest.raises(InputError, match="not before it in the network"):
        net.predict(np.array([[1, 2]]))
    with pytest.raises(ModelFileError, match="uses the weights of Embedding.* not before it"):
        net.save(tmp_path / "net.npz")
    assert not (tmp_path / "net.npz").exists()
    lone = TiedDense(embedding)
    with pytest.raises(InputError, match="not in this network"):
        Pass({}).apply(lone, on_backend(np.ones((1, 4)), "float32"))


def test_a_file_whose_tie_points_nowhere_is_a_model_file_error(backend, tmp_path):
    embedding = Embedding(5, 4)
    path = Network([embedding, Dense(4, 4), TiedDense(embedding)]).save(tmp_path / "net.npz")
    with np.load(path) as archive:
        arrays = dict(archive)
    header = json.loads(arrays.pop("__portanet__.json").tobytes())
    for target, message in (("7", "comes before it nowhere"),
                            ("1", "cannot be made from its saved settings")):  # a Dense
        header["layers"][2]["config"]["embedding"] = {"layer": target}
        broken = tmp_path / f"broken{target}.npz"
        np.savez(broken, **arrays, **{"__portanet__.json": np.frombuffer(
            json.dumps(header).encode(), dtype=np.uint8)})
        with pytest.raises(ModelFileError, match=message):
            portanet.load(broken)


def test_training_resumed_from_a_saved_state_equals_the_uninterrupted_run(backend, tmp_path):
    def fit(net, optimizer, epochs, initial_epoch=0):
        net.fit(x, y, epochs, batch_size=8, shuffle=True, optimizer=optimizer, verbose=0,
                initial_epoch=initial_epoch, compile=False)

    straight, x, y = tied_transformer()
    fit(straight, OPTIMIZERS["adam"](0.01), epochs=3)
    net, _, _ = tied_transformer()
    optimizer = OPTIMIZERS["adam"](0.01)
    fit(net, optimizer, epochs=2)
    path = portanet.save_training(tmp_path / "state.npz", net, optimizer, 2)
    resumed, optimizer, epoch = portanet.load_training(path)
    assert resumed.layers[-1].embedding is resumed.layers[0]
    fit(resumed, optimizer, epochs=3, initial_epoch=epoch)
    np.testing.assert_allclose(to_numpy(resumed.layers[0].weights),
                               to_numpy(straight.layers[0].weights), rtol=1e-10, atol=1e-12)


def test_the_tutorials_step_updates_the_tied_matrix(backend):
    embedding = Embedding(5, 3, dtype="float64")
    tied = TiedDense(embedding, bias=True, dtype="float64")
    x, grad = RNG.normal(size=(2, 3)), RNG.normal(size=(2, 5))
    before = to_numpy(embedding.weights)
    tied.forward_propagation(on_backend(x))
    grad_input = tied.backward_propagation(on_backend(grad), 0.1)
    np.testing.assert_allclose(to_numpy(grad_input), grad @ before, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(embedding.weights), before - 0.1 * grad.T @ x,
                               rtol=1e-12)
    np.testing.assert_allclose(to_numpy(tied.bias), -0.1 * grad.sum(axis=0), rtol=1e-12)
