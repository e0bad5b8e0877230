"""Initialisers: their spread, their draws from the seeded generator, and what they buy on XOR."""

import math

import numpy as np
import pytest

import portanet
from portanet import ActivationLayer, FCLayer, Network, initializers

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
XOR_Y = np.array([[0], [1], [1], [0]], dtype=float)


@pytest.mark.parametrize("name,std", [
    ("glorot_uniform", math.sqrt(2 / (300 + 200))), ("glorot_normal", math.sqrt(2 / 500)),
    ("he_uniform", math.sqrt(2 / 300)), ("he_normal", math.sqrt(2 / 300)),
    ("uniform", math.sqrt(1 / 12)),
])
def test_spread_matches_the_rule(name, std):
    draws = initializers.get(name)((300, 200), 300, 200)
    assert draws.shape == (300, 200)
    assert abs(draws.std() - std) < 0.03 * std and abs(draws.mean()) < 0.05 * std


def test_bias_starts_at_zero_except_for_the_tutorial_initialiser(backend):
    assert not np.any(FCLayer(3, 4).get_weights()[1])
    bias = FCLayer(3, 4, init="uniform").get_weights()[1]
    assert np.all(np.abs(bias) <= 0.5) and np.any(bias)


def xor_network(init, seed):
    portanet.set_seed(seed)
    net = Network()
    net.add(FCLayer(2, 3, init=init))
    net.add(ActivationLayer("tanh"))
    net.add(FCLayer(3, 1, init=init))
    net.add(ActivationLayer("tanh"))
    net.use("mse")
    return net


def initial_weights(net):
    """``[w1, b1, w2, b2]`` of a network made by :func:`xor_network` (NumPy copies)."""
    return [w for layer in net.layers[::2] for w in layer.get_weights()]


def train_xor(weights, epochs, learning_rate=0.1):
    """What ``fit(XOR_X, XOR_Y, epochs, learning_rate)`` (one sample at a time, in order, SGD
    on each sample's mse) does to the 2-3-1 tanh networks that start from ``weights`` (a list
    of ``[w1, b1, w2, b2]``), for all of them at once in NumPy, in their dtype. Returns each
    one's predictions for XOR_X: shape (networks, 4, 1)."""
    w1, b1, w2, b2 = (np.stack(arrays) for arrays in zip(*weights))  # axis 0: the network
    dtype = w1.dtype
    x = XOR_X.astype(dtype)[:, None, None, :]  # sample j as a (1, 2) row, for every network
    y = XOR_Y.astype(dtype)[:, None, None, :]
    rate = dtype.type(learning_rate)
    for _ in range(epochs):
        for xj, yj in zip(x, y):
            hidden = np.tanh(xj @ w1 + b1)
            out = np.tanh(hidden @ w2 + b2)
            grad_out = 2 * (out - yj) * (1 - out * out)  # through the output tanh
            grad_hidden = (grad_out @ np.swapaxes(w2, 1, 2)) * (1 - hidden * hidden)
            w2 -= rate * (np.swapaxes(hidden, 1, 2) * grad_out)
            b2 -= rate * grad_out
            w1 -= rate * (np.swapaxes(xj, 1, 2) * grad_hidden)
            b1 -= rate * grad_hidden
    return np.tanh(np.tanh(XOR_X.astype(dtype) @ w1 + b1) @ w2 + b2)


@pytest.mark.backend_independent
def test_batched_xor_training_is_what_fit_does():
    """The batched NumPy training below is fit's: same predictions, seed by seed."""
    portanet.set_backend("numpy")
    nets = [xor_network("glorot_uniform", seed) for seed in (0, 13)]
    predictions = train_xor([initial_weights(net) for net in nets], epochs=200)
    assert predictions.dtype == np.float32
    for net, predicted in zip(nets, predictions):
        net.fit(XOR_X, XOR_Y, epochs=200, learning_rate=0.1, verbose=0)
        np.testing.assert_allclose(predicted, net.predict(XOR_X), rtol=0, atol=1e-6)


@pytest.mark.backend_independent
def test_default_initialiser_solves_xor_for_19_of_20_seeds():
    """Each seed's network as portanet initialises it, trained as fit would train it (1000
    epochs, one sample at a time, learning rate 0.1: see the test above), all 20 at once."""
    portanet.set_backend("numpy")
    weights = [initial_weights(xor_network("glorot_uniform", seed)) for seed in range(20)]
    predictions = train_xor(weights, epochs=1000)
    errors = np.max(np.abs(predictions - XOR_Y), axis=(1, 2))
    assert np.sum(errors < 0.2) >= 19, errors


def test_draws_are_made_in_the_layers_dtype(backend):
    for dtype in ("float32", "float64"):
        draws = initializers.get("he_normal")((40, 30), 40, 30, dtype)
        assert draws.dtype == np.dtype(dtype)
        assert FCLayer(4, 3, dtype=dtype).weights.dtype == getattr(backend.xp, dtype)
    portanet.set_seed(3)
    float64 = FCLayer(50, 40, dtype="float64").get_weights()[0]
    portanet.set_seed(3)  # float64 keeps the values of Generator.uniform
    np.testing.assert_array_equal(float64, portanet.backend.rng().uniform(
        -math.sqrt(6 / 90), math.sqrt(6 / 90), size=(50, 40)))


@pytest.mark.parametrize("make, shape, need", [
    (lambda: FCLayer(10**6, 10**6), (10**6, 10**6), "3.64 TiB"),
    (lambda: FCLayer(10**6, 10**6, dtype="float64"), (10**6, 10**6), "7.28 TiB"),
    (lambda: portanet.Conv2D(3, 10**6, 1000), (10**6, 3, 1000, 1000), "10.91 TiB"),
])
def test_a_layer_too_big_for_memory_is_refused_before_allocating(make, shape, need, monkeypatch,
                                                                 backend):
    def no_draw():
        raise AssertionError("the weights were drawn before the memory check")

    monkeypatch.setattr(initializers, "rng", no_draw)
    with pytest.raises(portanet.InputError) as info:
        make()
    message = str(info.value)
    assert message.startswith(("FCLayer(input_size=1000000", "Conv2D(in_channels=3"))
    assert f"of shape {shape}" in message and f"would need {need}, more than this machine's" \
        in message


def test_a_failed_allocation_is_a_portanet_error(monkeypatch, backend):
    def exhausted(shape, fan_in, fan_out):
        raise MemoryError(f"Unable to allocate array with shape {shape}")

    with pytest.raises(portanet.InputError, match=r"FCLayer\(input_size=300, output_size=200, "
                       r"init=<function .*\(300, 200\) in float32 would need 234.38 KiB, and "
                       "there is not enough free memory"):
        FCLayer(300, 200, init=exhausted)
