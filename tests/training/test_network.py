"""Network behaviour on the backend under test: the tutorial's algorithm, mini-batches, outputs."""

import os
import re
import signal

import numpy as np
import pytest
from helpers import assert_backend_array, on_backend

import portanet
from portanet import ActivationLayer, FCLayer, Layer, Network
from portanet.activations import softmax, softmax_prime, tanh, tanh_prime
from portanet.backend import namespace, to_numpy
from portanet.losses import (
    categorical_crossentropy,
    categorical_crossentropy_prime,
    mse,
    mse_prime,
    softmax_crossentropy,
    softmax_crossentropy_prime,
)
from portanet.optimizers import SGD
from portanet.training import evaluation
from portanet.training import step as step_module

XOR_X = np.array([[[0, 0]], [[0, 1]], [[1, 0]], [[1, 1]]])
XOR_Y = np.array([[[0]], [[1]], [[1]], [[0]]])


def tutorial_net(sizes=(2, 3, 1), dtype=None, init="glorot_uniform"):
    net = Network(dtype=dtype)
    for n_in, n_out in zip(sizes, sizes[1:]):
        net.add(FCLayer(n_in, n_out, init=init))
        net.add(ActivationLayer(tanh, tanh_prime))
    net.use(mse, mse_prime)
    return net


def test_xor_trains_to_every_target():
    net = tutorial_net()
    net.fit(XOR_X, XOR_Y, epochs=1000, learning_rate=0.1, verbose=0)
    out = net.predict(XOR_X)
    assert isinstance(out, np.ndarray) and out.shape == (4, 1, 1)
    assert np.max(np.abs(out - XOR_Y)) < 0.1


def reference_per_sample(weights, x, y, epochs, learning_rate):
    """The tutorial's algorithm in plain NumPy: one sample at a time, in order, tanh + MSE."""
    weights = [w.copy() for w in weights]
    errors = []
    for _ in range(epochs):
        err = 0.0
        for xj, yj in zip(x, y):
            inputs, outputs = [], xj
            for w, b in zip(weights[::2], weights[1::2]):
                inputs.append(outputs)
                z = outputs @ w + b
                inputs.append(z)
                outputs = np.tanh(z)
            err += np.mean((yj - outputs) ** 2)
            grad = 2 * (outputs - yj) / yj.size
            for k in range(len(weights) // 2 - 1, -1, -1):
                a, z = inputs[2 * k], inputs[2 * k + 1]
                grad = (1 - np.tanh(z) ** 2) * grad
                w = weights[2 * k]
                grad_in = grad @ w.T
                weights[2 * k] = w - learning_rate * (a.T @ grad)
                weights[2 * k + 1] = weights[2 * k + 1] - learning_rate * grad
                grad = grad_in
        errors.append(err / len(x))
    return weights, errors


def test_batch_of_one_reproduces_the_tutorial_exactly():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 1, 4))
    y = rng.uniform(-0.9, 0.9, size=(12, 1, 3))
    initial = [rng.uniform(-0.5, 0.5, size=s) for s in ((4, 5), (1, 5), (5, 3), (1, 3))]
    net = tutorial_net((4, 5, 3), dtype="float64")
    for layer, (w, b) in zip(net.layers[::2], zip(initial[::2], initial[1::2])):
        layer.set_weights([w, b])
    history = net.fit(x, y, epochs=4, learning_rate=0.1, verbose=0)
    expected, errors = reference_per_sample(initial, x, y, epochs=4, learning_rate=0.1)
    got = [w for layer in net.layers[::2] for w in layer.get_weights()]
    for mine, theirs in zip(got, expected):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(history.history["loss"], errors, rtol=1e-10)


def test_default_fit_prints_the_tutorial_line(capsys):
    history = tutorial_net().fit(XOR_X, XOR_Y, epochs=3, learning_rate=0.1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert all(re.fullmatch(r"epoch \d/3   error=\d+\.\d{6}", line) for line in lines)
    errors = [float(line.split("error=")[1]) for line in lines]  # the tutorial's name for it
    assert errors == pytest.approx(history.history["loss"], abs=5e-7)
    assert "\r" not in "".join(lines)  # captured output is not a terminal: plain lines


def train_small(dtype, steps_data):
    """A seeded 6-8-3 network trained a few mini-batch steps on the selected backend."""
    portanet.set_seed(42)
    x, y = steps_data
    net = tutorial_net((6, 8, 3), dtype=dtype)
    net.fit(x, y, epochs=3, learning_rate=0.05, batch_size=4, shuffle=True, verbose=0)
    return net


@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-4), ("float64", 1e-10)])
def test_same_seed_same_training_as_numpy(backend, dtype, tolerance):
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(10, 6)), rng.uniform(-0.5, 0.5, size=(10, 3)))
    with portanet.using_backend("numpy"):
        reference = train_small(dtype, data)
        expected = [w for layer in reference.layers[::2] for w in layer.get_weights()]
        expected_out = reference.predict(data[0])
    net = train_small(dtype, data)
    got = [w for layer in net.layers[::2] for w in layer.get_weights()]
    for mine, theirs in zip(got, expected):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=tolerance)
    out = net.predict(on_backend(data[0], dtype))
    assert_backend_array(out, backend, dtype)
    np.testing.assert_allclose(to_numpy(out), expected_out, atol=tolerance * 10)


def test_predict_returns_numpy_for_numpy_and_backend_for_backend(backend):
    net = tutorial_net((2, 3, 1))
    plain = net.predict(np.ones((5, 2)))
    assert isinstance(plain, np.ndarray) and plain.shape == (5, 1) and plain.dtype == np.float32
    assert_backend_array(net.predict(on_backend(np.ones((5, 2)), "float32")), backend, "float32")
    assert net.predict(np.ones((1, 2))).shape == (1, 1)  # tutorial: predict one (1, n) sample


def test_fit_does_not_modify_callers_arrays():
    x = np.random.default_rng(1).normal(size=(8, 2))
    y = np.random.default_rng(2).normal(size=(8, 1))
    x.flags.writeable = y.flags.writeable = False
    x_copy, y_copy = x.copy(), y.copy()
    net = tutorial_net()
    net.fit(x, y, epochs=2, learning_rate=0.1, batch_size=3, shuffle=True, verbose=0)
    net.predict(x)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(y, y_copy)


def blobs(n=120, seed=0):
    """Three well-separated Gaussian clusters in 2-D, one-hot labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    centres = np.array([[2.0, 0.0], [-2.0, 2.0], [0.0, -2.5]])
    x = centres[labels] + rng.normal(scale=0.5, size=(n, 2))
    return x, np.eye(3)[labels]


def test_minibatch_softmax_crossentropy_with_validation():
    x, y = blobs()
    net = Network()
    net.add(FCLayer(2, 16, init="he_uniform"))
    net.add(ActivationLayer("relu"))
    net.add(FCLayer(16, 3))
    net.use(softmax_crossentropy, softmax_crossentropy_prime)
    history = net.fit(x, y, epochs=30, learning_rate=0.1, batch_size=16, shuffle=True,
                      validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "val_loss", "val_accuracy"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.95
    scores = net.evaluate(x, y)
    assert scores["accuracy"] > 0.95 and np.isfinite(scores["loss"])


def test_softmax_output_layer_trains_with_categorical_crossentropy():
    x, y = blobs(seed=1)
    net = Network()
    net.add(FCLayer(2, 3))
    net.add(ActivationLayer(softmax, softmax_prime))
    net.use(categorical_crossentropy, categorical_crossentropy_prime)
    net.fit(x, y, epochs=20, learning_rate=0.2, batch_size=8, verbose=0)
    out = net.predict(x)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert net.evaluate(x, y)["accuracy"] > 0.95


def test_fused_loss_is_finite_for_huge_logits(backend):
    logits = on_backend([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]])
    target = on_backend([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    loss = float(softmax_crossentropy(target, logits))
    assert np.isfinite(loss) and loss == pytest.approx(0.5 * (0.0 + 1.0 + np.log1p(np.exp(-1))))
    grad = to_numpy(softmax_crossentropy_prime(target, logits))
    assert np.all(np.isfinite(grad))
    assert np.all(np.isfinite(to_numpy(softmax(logits))))


class TutorialDense(Layer):
    """A layer in the tutorial's own style: it updates itself in backward_propagation."""

    def __init__(self, weights, bias):
        super().__init__()
        self.weights, self.bias = weights, bias

    def forward_propagation(self, input_data):
        self.input = input_data
        return input_data @ self.weights + self.bias

    def backward_propagation(self, output_error, learning_rate):
        input_error = output_error @ self.weights.T
        self.weights = self.weights - learning_rate * (self.input.T @ output_error)
        self.bias = self.bias - learning_rate * output_error
        return input_error


class ComparableScale(Layer):
    """A user layer that defines ``__eq__``, which makes its instances unhashable."""

    params = ("factor",)

    def __init__(self, size):
        super().__init__()
        self.factor = portanet.get_backend().asarray(np.full(size, 0.5), "float32")

    def __eq__(self, other):
        return type(other) is type(self) and self.factor.shape == other.factor.shape

    def forward(self, x, training=False):
        self.input = x
        return x * self.factor

    def backward(self, grad_output):
        self.grads = {"factor": namespace(grad_output).sum(grad_output * self.input, axis=0)}
        return grad_output * self.factor


def test_an_unhashable_user_layer_trains(backend):
    net = Network([FCLayer(3, 2), ComparableScale(2), ComparableScale(2)])
    net.use("mse")
    x = np.random.default_rng(0).random((16, 3))
    history = net.fit(x, x[:, :2], epochs=5, batch_size=4, learning_rate=0.1, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert not np.allclose(net.layers[1].get_weights()[0], 0.5)


def test_tutorial_style_layer_plugs_in_and_matches_fclayer():
    ours = tutorial_net((2, 3, 1), dtype="float64")
    first, *rest = ours.layers
    mixed = Network()
    mixed.add(TutorialDense(*(on_backend(w) for w in first.get_weights())))
    for layer in rest:
        if isinstance(layer, FCLayer):
            clone = FCLayer(layer.input_size, layer.output_size, dtype="float64")
            clone.set_weights(layer.get_weights())
        else:
            clone = ActivationLayer(tanh, tanh_prime)
        mixed.add(clone)
    mixed.use(mse, mse_prime)
    ours.fit(XOR_X, XOR_Y, epochs=5, learning_rate=0.1, verbose=0)
    mixed.fit(XOR_X, XOR_Y, epochs=5, learning_rate=0.1, verbose=0)
    np.testing.assert_allclose(mixed.predict(XOR_X), ours.predict(XOR_X), atol=1e-12)


def interrupting_schedule(at_iteration, rate=0.1):
    """A learning-rate schedule that sends this process a Ctrl-C before step ``at_iteration``
    (0-based): the host asks for the rate before every step, compiled or not."""

    def schedule(iteration):
        if iteration == at_iteration:
            os.kill(os.getpid(), signal.SIGINT)
        return rate

    return schedule


@pytest.mark.filterwarnings("ignore::portanet.CompileWarning")  # backends without a compiler
@pytest.mark.parametrize("compile", [False, True])
def test_ctrl_c_stops_after_the_batch_and_keeps_the_network(compile):
    net = tutorial_net()
    optimizer = SGD(0.1, schedule=interrupting_schedule(6))
    history = net.fit(XOR_X, XOR_Y, epochs=50, optimizer=optimizer, verbose=0, compile=compile)
    assert history.interrupted and len(history.epoch) == 2  # 4 batches per epoch: stops in 2nd
    assert history.stop_reason == "interrupted (Ctrl-C)" and history.stopped_epoch == 2
    assert optimizer.iterations == 7  # the step under way when Ctrl-C came was finished
    assert np.all(np.isfinite(net.predict(XOR_X)))
    assert net.fit(XOR_X, XOR_Y, epochs=1, learning_rate=0.1, verbose=0).epoch == [1]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_stops_with_a_clear_error():
    net = Network()
    net.add(FCLayer(2, 1))
    net.use(mse, mse_prime)
    x = np.random.default_rng(0).normal(scale=1e3, size=(32, 2))
    with pytest.raises(portanet.TrainingError, match=r"epoch \d+.*learning rate"):
        net.fit(x, x[:, :1] * 5, epochs=50, learning_rate=10.0, batch_size=8, verbose=0)


def test_float64_network_and_namespace_of_parameters(backend):
    net = tutorial_net(dtype="float64")
    for layer in net.layers[::2]:
        assert_backend_array(layer.weights, backend, "float64")
    assert namespace(net.layers[0].weights) is backend.xp


def test_predict_goes_in_passes_that_bound_layer_outputs(monkeypatch):
    net = tutorial_net((3, 4, 2))
    x = np.random.default_rng(0).normal(size=(10, 3))
    whole = net.predict(x)
    np.testing.assert_allclose(net.predict(x, batch_size=3), whole, rtol=1e-5, atol=1e-6)
    passes = []
    call = step_module.Inference.__call__
    monkeypatch.setenv("PORTANET_COMPILE", "0")  # every pass runs the Python forward
    monkeypatch.setattr(step_module.Inference, "__call__", lambda self, weights, rows:
                        passes.append(rows.shape[0]) or call(self, weights, rows))
    monkeypatch.setattr(evaluation, "PREDICT_VALUES", 8)  # widest output: 4 values a row
    np.testing.assert_allclose(net.predict(x), whole, rtol=1e-5, atol=1e-6)
    assert passes == [2, 2, 2, 2, 2]


def test_class_probabilities_and_indices_whatever_the_output_layer(backend):
    gen = np.random.default_rng(4)
    x = gen.normal(size=(7, 3))
    logits = Network([FCLayer(3, 4)])
    logits.use("softmax_crossentropy")
    probabilities = Network([FCLayer(3, 4), ActivationLayer("softmax")])
    probabilities.use("categorical_crossentropy")
    binary = Network([FCLayer(3, 1), ActivationLayer("sigmoid")])
    binary.use("binary_crossentropy")
    scores = tutorial_net((3, 4))  # tanh outputs and MSE: scores, not probabilities
    for net in (logits, probabilities, binary):
        proba = net.predict_proba(x)
        assert isinstance(proba, np.ndarray) and proba.shape == (7, max(2, net.predict(x).shape[1]))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
        assert np.all(proba >= 0)
        np.testing.assert_array_equal(net.predict_classes(x), np.argmax(proba, axis=1))
    np.testing.assert_allclose(logits.predict_proba(x), to_numpy(softmax(on_backend(
        logits.predict(x)))), rtol=1e-5)
    np.testing.assert_allclose(probabilities.predict_proba(x), probabilities.predict(x))
    np.testing.assert_array_equal(scores.predict_classes(x), np.argmax(scores.predict(x), axis=1))
    with pytest.raises(portanet.InputError, match="not probabilities.*predict_classes"):
        scores.predict_proba(x)
    classes = logits.predict_classes(on_backend(x, "float32"))  # backend in, backend out
    assert namespace(classes) is backend.xp and classes.shape == (7,)


def test_training_accuracy_is_recorded_on_request(backend):
    gen = np.random.default_rng(5)
    x, labels = gen.normal(size=(24, 3)), gen.integers(0, 2, 24)
    net = Network([FCLayer(3, 2)])
    net.use("softmax_crossentropy")
    history = net.fit(x, labels, epochs=1, batch_size=24, metrics=["accuracy"], verbose=0,
                      compile=False)
    assert set(history.history) == {"loss", "accuracy"}
    portanet.set_seed(1234)  # the same initial network, scored before its one step
    before = Network([FCLayer(3, 2)])
    before.use("softmax_crossentropy")
    assert history.history["accuracy"][0] == pytest.approx(before.evaluate(x, labels)["accuracy"])
    with pytest.raises(portanet.InputError, match="metrics may name 'accuracy' only"):
        net.fit(x, labels, epochs=1, metrics=["f1"])
