"""Finite-difference gradient checks (float64) of every activation, loss and layer, on the
backend under test."""

import numpy as np
import pytest
from helpers import on_backend

from portanet import ActivationLayer, AvgPool1D, Conv1D, FCLayer, MaxPool1D
from portanet.activations import ACTIVATIONS, tanh, tanh_prime
from portanet.backend import to_numpy
from portanet.losses import LOSSES, with_prime
from portanet.testing import (
    assert_gradient_close,
    check_layer,
    check_loss,
    numeric_gradient,
)

RNG = np.random.default_rng(7)


def away_from_kinks(shape):
    """Random inputs with |x| in [0.2, 2]: no finite difference straddles relu's kink."""
    magnitude = RNG.uniform(0.2, 2.0, size=shape)
    return magnitude * RNG.choice([-1.0, 1.0], size=shape)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_layer_gradient(name):
    check_layer(ActivationLayer(name), x=away_from_kinks((4, 5)))


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "relu", "leaky_relu", "identity"])
def test_elementwise_derivative_matches_difference_quotient(name):
    f, f_prime = ACTIVATIONS[name]
    x, weights = away_from_kinks((3, 4)), RNG.normal(size=(3, 4))
    numeric = numeric_gradient(lambda p: float(np.sum(to_numpy(f(on_backend(p))) * weights)), x)
    assert_gradient_close(f_prime(on_backend(x)) * on_backend(weights), numeric, f"{name}_prime")


def test_fc_layer_gradient():
    layer = FCLayer(5, 3, dtype="float64")
    check_layer(layer, (5,), batch=4)


def test_fc_layer_gradient_tutorial_row():
    """The tutorial's per-sample (1, n) rows and its uniform initialiser."""
    layer = FCLayer(3, 2, init="uniform", dtype="float64")
    check_layer(layer, (3,), batch=1)


@pytest.mark.parametrize("kernel, stride, padding, dilation, length", [
    (3, 1, "valid", 1, 9), (4, 2, "same", 1, 9), (3, 1, "same", 2, 10), (3, 3, "valid", 2, 14),
    (2, 2, "same", 3, 11)], ids=str)
def test_conv1d_gradient(kernel, stride, padding, dilation, length):
    layer = Conv1D(2, 3, kernel, stride=stride, padding=padding, dilation=dilation,
                   dtype="float64")
    layer.bias = on_backend(RNG.normal(size=(3,)))
    check_layer(layer, x=RNG.normal(size=(2, 2, length)))


@pytest.mark.parametrize("kind, size, stride", [(MaxPool1D, 2, None), (MaxPool1D, 3, 2),
                                                (AvgPool1D, 2, None), (AvgPool1D, 3, 2)],
                         ids=str)
def test_pool1d_gradient(kind, size, stride):
    """Distinct values at least 0.1 apart: no finite difference changes a window's maximum."""
    x = RNG.permutation(np.arange(2 * 3 * 9) * 0.1 - 1.0).reshape(2, 3, 9)
    check_layer(kind(size, stride), x=x)


def loss_inputs(name):
    if name == "sparse_softmax_crossentropy":  # class indices of every position of a sequence
        return RNG.integers(0, 5, size=(4, 3)), RNG.normal(scale=3.0, size=(4, 3, 5))
    if name == "binary_crossentropy":
        return RNG.integers(0, 2, size=(4, 3)).astype(float), RNG.uniform(0.1, 0.9, size=(4, 3))
    if name in ("categorical_crossentropy", "softmax_crossentropy"):
        y_true = np.eye(5)[RNG.integers(0, 5, size=4)]
        scores = RNG.uniform(0.05, 1.0, size=(4, 5))
        if name == "categorical_crossentropy":
            scores = scores / scores.sum(axis=1, keepdims=True)
        else:
            scores = RNG.normal(scale=3.0, size=(4, 5))
        return y_true, scores
    return RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_gradient(name):
    check_loss(*LOSSES[name], *loss_inputs(name))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_fused_loss_and_prime_equal_the_separate_functions(name):
    loss, loss_prime = LOSSES[name]
    y_true, y_pred = (on_backend(a) for a in loss_inputs(name))
    value, grad = with_prime(loss, loss_prime)(y_true, y_pred)
    np.testing.assert_allclose(float(value), float(loss(y_true, y_pred)), rtol=1e-14)
    np.testing.assert_allclose(to_numpy(grad), to_numpy(loss_prime(y_true, y_pred)), rtol=1e-14,
                               atol=1e-16)


def test_user_activation_pair_keeps_its_own_derivative():
    calls = []

    def doubled_prime(x):
        calls.append(1)
        return 2.0 * tanh_prime(x)

    layer = ActivationLayer(tanh, doubled_prime)
    x = away_from_kinks((3, 2))
    layer.forward(on_backend(x))
    grad = to_numpy(layer.backward(on_backend(np.ones((3, 2)))))
    np.testing.assert_allclose(grad, 2.0 * (1 - np.tanh(x) ** 2), rtol=1e-12)
    assert calls == [1]
