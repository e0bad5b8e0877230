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


def xor_solved(init, seed):
    portanet.set_seed(seed)
    net = Network()
    net.add(FCLayer(2, 3, init=init))
    net.add(ActivationLayer("tanh"))
    net.add(FCLayer(3, 1, init=init))
    net.add(ActivationLayer("tanh"))
    net.use("mse")
    net.fit(XOR_X, XOR_Y, epochs=1000, learning_rate=0.1, verbose=0)
    return np.max(np.abs(net.predict(XOR_X) - XOR_Y)) < 0.2


@pytest.mark.backend_independent
def test_default_initialiser_solves_xor_for_19_of_20_seeds():
    """Computed on NumPy: the cross-backend tests show every backend trains identically."""
    portanet.set_backend("numpy")
    assert sum(xor_solved("glorot_uniform", seed) for seed in range(20)) >= 19


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
