"""The user's own tutorial-style code, portable: ``import portanet.numpy as np``."""

import numpy
import pytest

import portanet
import portanet.numpy as np
from portanet import ActivationLayer, FCLayer, Network

XOR_X = numpy.array([[[0, 0]], [[0, 1]], [[1, 0]], [[1, 1]]], dtype=float)
XOR_Y = numpy.array([[[0]], [[1]], [[1]], [[0]]], dtype=float)


# the tutorial's activations.py and losses.py, from its formulas, with the one changed import
def tanh(x):
    return np.tanh(x)


def tanh_prime(x):
    return 1 - np.tanh(x) ** 2


def mse(y_true, y_pred):
    return np.mean(np.power(y_true - y_pred, 2))


def mse_prime(y_true, y_pred):
    return 2 * (y_pred - y_true) / np.size(y_true)


def test_the_tutorials_own_functions_train_xor_on_every_backend(backend):
    portanet.set_seed(0)
    net = Network()
    net.add(FCLayer(2, 3))
    net.add(ActivationLayer(tanh, tanh_prime))
    net.add(FCLayer(3, 1))
    net.add(ActivationLayer(tanh, tanh_prime))
    net.use(mse, mse_prime)
    net.fit(XOR_X, XOR_Y, epochs=1000, learning_rate=0.1, verbose=0)
    assert numpy.max(numpy.abs(net.predict(XOR_X) - XOR_Y)) < 0.1


def test_functions_follow_their_arguments_backend(backend):
    x = backend.asarray([[-1.0, 0.5], [2.0, -3.0]], "float64")
    for value in (np.tanh(x), np.maximum(x, 0.0), np.where(x > 0, x, 0.0), np.dot(x, x),
                  np.mean(x, axis=0), np.power(x, 2), np.clip(x, -1, 1), np.transpose(x)):
        assert np._namespace(value) is backend.xp
    assert np.size(x) == 4
    numpy.testing.assert_allclose(portanet.backend.to_numpy(np.sum(np.square(x))), 14.25)


def numpy_mse(y_true, y_pred):  # the tutorial's code, unchanged: NumPy calls
    return numpy.mean(numpy.power(y_true - y_pred, 2))


def numpy_mse_prime(y_true, y_pred):
    return 2 * (y_pred - y_true) / y_true.size


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # NumPy wrapping torch tensors
def test_a_function_that_fails_or_leaves_the_backend_is_named(backend):
    net = Network([FCLayer(2, 1), ActivationLayer("tanh")])
    net.use(numpy_mse, numpy_mse_prime)
    if backend.name == "numpy":  # NumPy code on NumPy arrays is fine
        net.fit(XOR_X, XOR_Y, epochs=1, verbose=0)
        return
    with pytest.raises(portanet.InputError, match="numpy_mse.*import portanet.numpy as np"):
        net.fit(XOR_X, XOR_Y, epochs=1, verbose=0)
