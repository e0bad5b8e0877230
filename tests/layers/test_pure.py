"""Pure layers: nothing is written on a layer during predict, evaluate or fit; one network
serves many threads at once; a layer used at two places shares its weights and sums its
gradients (compiled and eager, saved and loaded shared)."""

import threading
import warnings

import numpy as np
import pytest

import portanet
from portanet import (
    ActivationLayer,
    BatchNorm,
    CompileWarning,
    Conv2D,
    Dense,
    Dropout,
    FCLayer,
    Flatten,
    MaxPool2D,
    Network,
    Residual,
    Sequential,
    TrainingError,
)
from portanet.backend import compilers, to_numpy
from portanet.callbacks import Callback
from portanet.models import causal_transformer
from portanet.optimizers import SGD, Adam
from portanet.testing import assert_gradient_close, numeric_gradient
from portanet.training.step import TrainStep


def mlp():
    net = Network([FCLayer(4, 16), ActivationLayer("relu"), FCLayer(16, 3)])
    net.use("softmax_crossentropy")
    return net


def cnn():
    net = Network([Conv2D(1, 4, 3, padding="same", input_shape=(1, 6, 6)),
                   ActivationLayer("relu"), BatchNorm(4), MaxPool2D(2), Flatten(), Dropout(0.3),
                   FCLayer(36, 3)])
    net.use("softmax_crossentropy")
    return net


def transformer():
    net = causal_transformer(11, 8, width=16, heads=2, blocks=1)
    net.use("sparse_softmax_crossentropy")
    return net


MODELS = {"mlp": mlp, "cnn": cnn, "transformer": transformer}


def data(model, samples=32, seed=0):
    gen = np.random.default_rng(seed)
    if model == "transformer":
        ids = gen.integers(0, 11, (samples, 9))
        return ids[:, :-1], ids[:, 1:]
    x = gen.normal(size=(samples, 1, 6, 6) if model == "cnn" else (samples, 4))
    return x, np.eye(3)[gen.integers(0, 3, samples)]


def quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)
        return function(*args, **kwargs)


@pytest.mark.parametrize("model", MODELS)
def test_predict_evaluate_and_fit_write_nothing_on_the_layers(model, backend):
    net = MODELS[model]()
    x, y = data(model)
    layers = list(portanet.layers.base.walk(net.layers))
    weights = {id(layer): set(layer.params + layer.buffers) for layer in layers}
    before = [dict(vars(layer)) for layer in layers]
    net.predict(x)
    net.evaluate(x, y)
    quietly(net.fit, x, y, epochs=1, batch_size=len(x) // 3, optimizer="adam", verbose=0)
    for layer, old in zip(layers, before):
        now = vars(layer)
        assert set(now) == set(old), layer
        for name, value in old.items():  # the same objects, but the trained weights: new ones
            if name not in weights[id(layer)]:
                assert now[name] is value, (layer, name)
            else:
                assert now[name].shape == value.shape and now[name].dtype == value.dtype


@pytest.mark.parametrize("model", MODELS)
def test_threads_share_one_network_for_predict(model, backend):
    net = MODELS[model]()
    x, _ = data(model, 12)
    expected = to_numpy(net.predict(x))
    results, errors = [], []

    def serve():
        try:
            for _ in range(20):
                results.append(to_numpy(net.predict(x)))
        except Exception as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=serve) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors[0]
    assert len(results) == 160
    for result in results:
        np.testing.assert_array_equal(result, expected)


class RecordWeights(Callback):
    """Keeps a copy of the weights at every step boundary."""

    def __init__(self):
        self.sets = []

    def on_train_begin(self, logs):
        self.sets.append(self.network_weights())

    def on_batch_end(self, batch):
        self.sets.append(self.network_weights())

    def network_weights(self):
        return [layer.get_weights() for layer in self.network.layers]


def test_predict_during_fit_sees_the_weights_of_one_step(backend):
    net = mlp()
    x, y = data("mlp", 64)
    probe = x[:5]
    recorder = RecordWeights()
    seen, errors = [], []
    done = threading.Event()

    def serve():
        try:
            while not done.is_set() or not seen:
                seen.append(to_numpy(net.predict(probe)))
        except Exception as exc:  # reported below
            errors.append(exc)

    server = threading.Thread(target=serve)
    server.start()
    try:
        quietly(net.fit, x, y, epochs=20, batch_size=4, optimizer="adam", verbose=0,
                callbacks=[recorder])
    finally:
        done.set()
        server.join()
    assert not errors, errors[0]
    twin = mlp()  # the output of each recorded weight set
    outputs = []
    for weights in recorder.sets:
        for layer, values in zip(twin.layers, weights):
            if values:
                layer.set_weights(values)
        outputs.append(to_numpy(twin.predict(probe)))
    assert len(outputs) == 20 * 16 + 1
    for output in seen:
        assert any(np.array_equal(output, known) for known in outputs)


def test_a_second_fit_on_the_same_network_is_refused(backend):
    net = mlp()
    x, y = data("mlp", 16)
    refused = []

    class FitAgain(Callback):
        def on_batch_end(self, batch):
            if batch == 1:
                for target in (self.fit_here, self.fit_in_a_thread):
                    try:
                        target()
                    except TrainingError as exc:
                        refused.append(str(exc))

        def fit_here(self):
            self.network.fit(x, y, epochs=1, verbose=0)

        def fit_in_a_thread(self):
            failure = []
            thread = threading.Thread(target=lambda: self.catch(failure))
            thread.start()
            thread.join()
            raise failure[0]

        def catch(self, failure):
            try:
                self.fit_here()
            except Exception as exc:  # handed to the callback's thread
                failure.append(exc)

    history = quietly(net.fit, x, y, epochs=1, batch_size=4, verbose=0, callbacks=[FitAgain()])
    assert len(refused) == 2 and all("fit is already running" in text for text in refused)
    assert history.stop_reason == "completed"
    quietly(net.fit, x, y, epochs=1, batch_size=4, verbose=0)  # free again afterwards


# -- a layer used at several places -----------------------------------------------------------
def shared_dense():
    dense = Dense(4, 4, dtype="float64")
    net = Network([dense, ActivationLayer("tanh"), dense, Dense(4, 2, dtype="float64")])
    net.use("mse")
    return net


def shared_container():
    block = Residual(Sequential([Dense(4, 4, dtype="float64"), ActivationLayer("tanh")]))
    net = Network([block, Dropout(0.2), block, Dense(4, 2, dtype="float64")])
    net.use("mse")
    return net


SHARED = {"dense": shared_dense, "container": shared_container}


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("model", SHARED)
def test_a_shared_layer_gets_the_sum_of_its_gradients(model, compiled, backend):
    net = SHARED[model]()
    gen = np.random.default_rng(2)
    x = backend.asarray(gen.normal(size=(5, 4)), "float64")
    y = backend.asarray(gen.normal(size=(5, 2)), "float64")
    step = TrainStep(net, SGD(0.1), eager=not compiled)
    compiler = quietly(compilers.choose, backend, True) if compiled else compilers.EAGER
    gradients = quietly(compilers.compiled, compiler, step.gradients, "the gradient step")
    params = step.layout.gather()
    noise = step.draw((4,), 5, "float64")  # the same dropout masks for every evaluation

    def loss_at(flat):
        point = [backend.asarray(flat, "float64")]
        _, _, sums = quietly(gradients, point, [], (x, y), None, noise)
        return float(to_numpy(sums)) / 5

    (grads,), _, _ = quietly(gradients, params, [], (x, y), None, noise)
    grads = to_numpy(grads).copy()  # an eager step reuses its gradient buffer
    assert len(step.layout.slots) == 4  # each parameter once
    assert_gradient_close(grads, numeric_gradient(loss_at, to_numpy(params[0])),
                          f"the gradient of the network with a shared {model}")


@pytest.mark.parametrize("model", SHARED)
def test_a_shared_layer_counts_trains_and_loads_once(model, backend, tmp_path):
    net = SHARED[model]()
    unique = net.layers[0]
    assert net.layers[2] is unique
    lines = []
    net.summary(print_fn=lines.append, input_shape=(4,))
    text = lines[0]
    assert f"total trainable parameters: {20 + 10:,}" in text and "(shared)" in text
    gen = np.random.default_rng(3)
    x, y = gen.normal(size=(32, 4)), gen.normal(size=(32, 2))
    before = net.evaluate(x, y)["loss"]
    quietly(net.fit, x, y, epochs=20, batch_size=8, optimizer=Adam(0.01), verbose=0)
    assert net.layers[2] is unique and net.evaluate(x, y)["loss"] < before
    path = net.save(tmp_path / "shared.npz")
    loaded = portanet.load(path)
    assert loaded.layers[2] is loaded.layers[0] and loaded.layers[0] is not loaded.layers[1]
    np.testing.assert_allclose(loaded.predict(x), net.predict(x), rtol=1e-12)
    lines.clear()
    loaded.summary(print_fn=lines.append, input_shape=(4,))
    assert f"total trainable parameters: {20 + 10:,}" in lines[0]


def test_a_copy_of_a_layer_leaves_out_its_last_forward(backend):
    """A network used through the stateful form (forward, then backward) still predicts with
    compile (which copies the architecture), and its copies hold no per-call state."""
    import copy

    layer = portanet.Dropout(0.5)
    layer.forward(backend.asarray(np.ones((4, 3))), training=True)
    copied = copy.deepcopy(layer)
    assert "_last_pass" in vars(layer) and "_last_pass" not in vars(copied)
    with pytest.raises(portanet.InputError, match="needs a forward"):
        copied.backward(backend.asarray(np.ones((4, 3))))
