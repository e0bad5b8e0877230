"""The training loop (portanet.training), called directly rather than through Network.fit:
History, stopping from callbacks, fit's argument checks, the weights handed back to the layers,
and the composed step."""

import math
import warnings

import numpy as np
import pytest

import portanet
from portanet import BatchNorm, Dense, Network
from portanet.backend import compilers, to_numpy
from portanet.callbacks import Callback, CallbackList
from portanet.optimizers import SGD
from portanet.training import feed
from portanet.training import loop as training
from portanet.training import world as distributed
from portanet.training.step import TrainStep

SAMPLES, FEATURES, OUTPUTS = 10, 3, 2
RATE = 0.1


def start():
    gen = np.random.default_rng(0)
    return gen.normal(size=(FEATURES, OUTPUTS)), gen.normal(size=(OUTPUTS,))


def data(seed=1, samples=SAMPLES):
    gen = np.random.default_rng(seed)
    x = gen.normal(size=(samples, FEATURES))
    return x, x @ np.array([[1.0, -2.0], [0.5, 0.0], [-1.0, 1.5]]) + 0.3


def linear():
    """A float64 Dense(3, 2) with mse, its weights those of :func:`start`."""
    layer = Dense(FEATURES, OUTPUTS, dtype="float64")
    layer.set_weights(list(start()))
    net = Network([layer])
    net.use("mse")
    return net


def reference(x, y, epochs, batch_size, batches=None, orders=None):
    """Mini-batch SGD of the linear model with mse, by hand: each epoch's mean loss over the
    samples trained and the weights after it. ``batches`` stops after that many steps;
    ``orders`` gives each epoch's order of the samples."""
    w, b = start()
    losses, weights, steps = [], [], 0
    for epoch in range(epochs):
        order = np.arange(len(x)) if orders is None else orders[epoch]
        total = seen = 0
        for lo in range(0, len(x), batch_size):
            if batches is not None and steps == batches:
                break
            picked = order[lo:lo + batch_size]
            xb, yb = x[picked], y[picked]
            out = xb @ w + b
            total += np.mean((out - yb) ** 2) * len(xb)
            seen += len(xb)
            grad = 2 * (out - yb) / out.size
            w, b = w - RATE * (xb.T @ grad), b - RATE * grad.sum(axis=0)
            steps += 1
        losses.append(total / seen)
        weights.append((w, b))
    return losses, weights


def loop_for(net, compile=False, accuracy=False):
    return training.Loop(net, SGD(RATE), distributed.SINGLE, compile, accuracy)


def rows(backend, *arrays):
    return tuple(backend.asarray(array, "float64") for array in arrays)


def held(backend, x, y, batch_size, shuffle):
    """Rows ``x``, ``y`` on the backend, as the loop's batches."""
    return feed.Held(*rows(backend, x, y), batch_size, shuffle)


def quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", portanet.CompileWarning)
        return function(*args, **kwargs)


class EpochWeights(Callback):
    """Records the layers' weights at the end of every epoch, and the logs it is given."""

    def __init__(self):
        self.weights, self.logs, self.ended = [], [], []

    def on_epoch_end(self, epoch, logs):
        self.weights.append(self.network.layers[0].get_weights())
        self.logs.append(logs)

    def on_train_end(self, logs):
        self.ended.append(logs)


# -- History ------------------------------------------------------------------------------
@pytest.mark.parametrize("compile", [False, "auto"])
def test_history_records_every_epochs_loss_and_the_layers_get_each_epochs_weights(
        backend, compile):
    x, y = data()
    net = linear()
    recorder = EpochWeights()
    loop = loop_for(net, compile)
    history = quietly(loop.run, held(backend, x, y, 4, False), 3, None, False,
                      CallbackList([recorder]))
    losses, weights = reference(x, y, 3, 4)
    assert history.epoch == [1, 2, 3] and list(history.history) == ["loss"]
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-10)
    assert history.stop_reason == "completed" and history.stopped_epoch == 3
    assert not history.interrupted
    assert history.compiled == compilers.choose(backend, compile).name
    if history.compiled == "eager":  # every step runs the Python body
        assert history.step_traces == 3 * math.ceil(SAMPLES / 4)
    else:  # once per batch shape (4 and 2 rows), or not at all if an earlier test traced it
        assert history.step_traces <= 2
    for (mine_w, mine_b), (w, b) in zip(recorder.weights, weights):  # after every epoch
        np.testing.assert_allclose(mine_w, w, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(mine_b, b, rtol=1e-10, atol=1e-12)
    assert [logs["loss"] for logs in recorder.logs] == history.history["loss"]
    assert recorder.ended == [recorder.logs[-1]]
    np.testing.assert_allclose(to_numpy(net.layers[0].weights), weights[-1][0], rtol=1e-10,
                               atol=1e-12)


def test_history_records_validation_and_accuracy(backend):
    x, y = data()
    x_val, y_val = data(seed=2, samples=4)
    labels = np.eye(OUTPUTS)[(y[:, 0] > y[:, 1]).astype(int)]  # mse on one-hot targets
    labels_val = np.eye(OUTPUTS)[(y_val[:, 0] > y_val[:, 1]).astype(int)]
    net = linear()
    loop = loop_for(net, accuracy=True)
    recorder = EpochWeights()
    history = loop.run(held(backend, x, labels, 5, False), 2, rows(backend, x_val, labels_val),
                       False, CallbackList([recorder]))
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert all(len(values) == 2 for values in history.history.values())
    for epoch, (w, b) in enumerate(recorder.weights):
        out = x_val @ w + b
        np.testing.assert_allclose(history.history["val_loss"][epoch],
                                   np.mean((out - labels_val) ** 2), rtol=1e-10)
        hits = np.mean(np.argmax(out, axis=1) == np.argmax(labels_val, axis=1))
        assert history.history["val_accuracy"][epoch] == pytest.approx(hits)
    w, b = start()  # the first epoch's training accuracy: its two batches as they were trained
    first = x[:5] @ w + b
    hits_first = np.sum(np.argmax(first, axis=1) == np.argmax(labels[:5], axis=1))
    grad = 2 * (first - labels[:5]) / first.size
    w, b = w - RATE * (x[:5].T @ grad), b - RATE * grad.sum(axis=0)
    second = x[5:] @ w + b
    hits_second = np.sum(np.argmax(second, axis=1) == np.argmax(labels[5:], axis=1))
    assert history.history["accuracy"][0] == pytest.approx((hits_first + hits_second) / 10)


def test_shuffle_trains_each_epoch_in_the_seeded_generators_order(backend):
    x, y = data()
    net = linear()
    portanet.set_seed(7)
    history = loop_for(net).run(held(backend, x, y, 4, True), 2, None, False)
    gen = np.random.default_rng(7)
    losses, weights = reference(x, y, 2, 4, orders=[gen.permutation(SAMPLES) for _ in range(2)])
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-10)
    np.testing.assert_allclose(to_numpy(net.layers[0].weights), weights[-1][0], rtol=1e-10,
                               atol=1e-12)
    in_order, _ = reference(x, y, 2, 4)
    assert not np.allclose(losses, in_order, rtol=1e-6)  # the order matters here


# -- stopping -----------------------------------------------------------------------------
class StopAfter(Callback):
    """Sets network.stop_training at the end of epoch ``epoch`` (or batch ``batch`` of the first
    epoch), with ``reason`` as history.stop_reason if given."""

    def __init__(self, epoch=None, batch=None, reason=None):
        self.epoch, self.batch, self.reason = epoch, batch, reason

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch:
            self.stop()

    def stop(self):
        if self.reason:
            self.history.stop_reason = self.reason
        self.network.stop_training = True


class StopAtBatch(StopAfter):
    def on_batch_end(self, batch):
        if batch == self.batch:
            self.stop()


def test_a_callback_stops_training_after_its_epoch(backend):
    x, y = data()
    net = linear()
    loop = loop_for(net)
    history = loop.run(held(backend, x, y, 4, False), 5, None, False,
                       CallbackList([StopAfter(epoch=2)]))
    assert history.epoch == [1, 2] and len(history.history["loss"]) == 2
    assert history.stopped_epoch == 2
    assert history.stop_reason == "stopped by a callback (network.stop_training) in epoch 2"
    assert history.step_traces == 2 * 3
    _, weights = reference(x, y, 2, 4)
    np.testing.assert_allclose(to_numpy(net.layers[0].weights), weights[-1][0], rtol=1e-10,
                               atol=1e-12)
    again = loop.run(held(backend, x, y, 4, False), 3, None, False)  # the flag starts False
    assert again.epoch == [1, 2, 3] and again.stop_reason == "completed"


def test_a_callback_stop_keeps_the_reason_it_gives(backend):
    x, y = data()
    history = loop_for(linear()).run(held(backend, x, y, 4, False), 5, None, False,
                                     CallbackList([StopAfter(epoch=1, reason="good enough")]))
    assert history.epoch == [1] and history.stop_reason == "good enough"


def test_a_stop_from_a_batch_hook_ends_the_epoch_after_that_batch(backend):
    x, y = data()
    net = linear()
    history = loop_for(net).run(held(backend, x, y, 4, False), 3, None, False,
                                CallbackList([StopAtBatch(batch=2)]))
    losses, weights = reference(x, y, 1, 4, batches=2)
    assert history.epoch == [1] and history.step_traces == 2
    assert history.stop_reason == "stopped by a callback (network.stop_training) in epoch 1"
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-10)  # the 8 rows seen
    np.testing.assert_allclose(to_numpy(net.layers[0].weights), weights[-1][0], rtol=1e-10,
                               atol=1e-12)


# -- fit's argument checks ----------------------------------------------------------------
@pytest.mark.parametrize("arguments, message", [
    ({"epochs": -1}, "epochs must be an integer >= 0, got -1"),
    ({"epochs": 2.0}, "epochs must be an integer >= 0, got 2.0"),
    ({"epochs": True}, "epochs must be an integer >= 0, got True"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"batch_size": None}, "batch_size must be an integer >= 1, got None"),
    ({"validation_split": 1.0}, "validation_split must be a number in [0, 1), got 1.0"),
    ({"validation_split": -0.1}, "validation_split must be a number in [0, 1), got -0.1"),
    ({"metrics": ["mse"]}, "metrics may name 'accuracy' only, got ('mse',)"),
    ({"metrics": ("accuracy", "loss")}, "metrics may name 'accuracy' only, got ('accuracy', "
                                        "'loss')"),
])
def test_fit_refuses_bad_arguments_naming_them(backend, arguments, message):
    x, y = data()
    net = linear()
    settings = {"epochs": 1, "batch_size": 4, **arguments}
    epochs = settings.pop("epochs")
    with pytest.raises(portanet.InputError) as info:
        training.fit(net, x, y, epochs, verbose=0, **settings)
    assert str(info.value) == message
    w, b = start()
    np.testing.assert_array_equal(net.layers[0].get_weights()[0], w)  # nothing trained
    assert training.fit(net, x, y, 1, batch_size=4, verbose=0).epoch == [1]  # not left busy


def test_fit_takes_numpy_integers_for_epochs_and_batch_size(backend):
    x, y = data()
    history = training.fit(linear(), x, y, np.int64(2), batch_size=np.int64(5), verbose=0)
    assert history.epoch == [1, 2]


def test_fit_refuses_a_validation_split_that_leaves_nothing_to_train(backend):
    x, y = data(samples=1)
    with pytest.raises(portanet.InputError, match="^validation_split leaves no training samples$"):
        training.fit(linear(), x, y, 1, validation_split=0.5, verbose=0)


def test_fit_for_zero_epochs_trains_nothing(backend):
    x, y = data()
    net = linear()
    history = training.fit(net, x, y, 0, verbose=0)
    assert history.epoch == [] and history.history == {} and history.stop_reason == "completed"
    np.testing.assert_array_equal(net.layers[0].get_weights()[0], start()[0])


# -- handing the weights back -------------------------------------------------------------
def test_give_back_hands_the_layers_copies_of_the_state(backend):
    net = linear()
    loop = loop_for(net)
    params = loop.flatten([backend.asarray(w * 3, "float64") for w in start()])
    state = [params, [], [()]]
    loop._give_back(state)
    layer = net.layers[0]
    np.testing.assert_array_equal(to_numpy(layer.weights), start()[0] * 3)
    np.testing.assert_array_equal(to_numpy(layer.bias), start()[1] * 3)
    assert tuple(layer.weights.shape) == (FEATURES, OUTPUTS)
    assert loop.optimizer.state is state[2]
    if backend.name != "jax":  # mutable arrays: the step goes on updating its own buffer
        params[0][...] = 0.0
        np.testing.assert_array_equal(to_numpy(layer.weights), start()[0] * 3)


def test_running_statistics_come_back_to_the_layer_after_fit(backend):
    norm = BatchNorm(FEATURES, momentum=0.9, dtype="float64")
    net = Network([norm, Dense(FEATURES, OUTPUTS, dtype="float64")])
    net.use("mse")
    x, y = data()
    training.fit(net, x, y, 2, batch_size=5, verbose=0)
    mean, var = np.zeros(FEATURES), np.ones(FEATURES)
    for _ in range(2):
        for lo in (0, 5):
            part = x[lo:lo + 5]
            mean, var = 0.9 * mean + 0.1 * part.mean(axis=0), 0.9 * var + 0.1 * part.var(axis=0)
    np.testing.assert_allclose(to_numpy(norm.running_mean), mean, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(norm.running_var), var, rtol=1e-12)


# -- the composed step --------------------------------------------------------------------
@pytest.mark.parametrize("stop", [False, True])
def test_compose_gives_a_step_of_five_results(backend, stop):
    x, y = data()
    optimizer = SGD(RATE)
    step = TrainStep(linear(), optimizer, eager=True)
    run = training.compose(step, compilers.EAGER, distributed.SINGLE)
    assert len(run.parts) == 1
    params = step.layout.gather()
    state = optimizer.state_for(step.layout, params)
    asked = []

    def wants_stop():
        asked.append(True)
        return stop

    total = backend.asarray(2.0, "float64")
    result = run(params, [], state, total, rows(backend, x, y), SAMPLES, optimizer.scalars(), [],
                 1.0, wants_stop)
    assert len(result) == 5 and result[4] is stop and asked == [True]
    new_params, buffers, new_state, new_total, _ = result
    assert buffers == [] and new_state == [()]
    losses, weights = reference(x, y, 1, SAMPLES)
    np.testing.assert_allclose(float(to_numpy(new_total)), 2.0 + losses[0] * SAMPLES, rtol=1e-12)
    w, b = step.layout.split(new_params)
    np.testing.assert_allclose(to_numpy(w), weights[0][0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(to_numpy(b), weights[0][1], rtol=1e-12, atol=1e-14)


# -- non-finite weights ---------------------------------------------------------------------
def overflowing_at(iteration):
    """SGD at RATE whose step ``iteration`` (from 0) has a rate that overflows the weights."""
    return SGD(RATE, schedule=lambda step: 1e308 if step == iteration else RATE)


class BatchWeights(Callback):
    """Records the layers' weights after every batch (a batch hook: they get them each batch)."""

    def __init__(self):
        self.weights = []

    def on_batch_end(self, batch):
        self.weights.append(self.network.layers[0].get_weights())


OVERFLOWS = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # NumPy's


@OVERFLOWS
@pytest.mark.parametrize("compile", [False, True])
def test_an_overflowing_last_update_stops_training_and_keeps_the_last_finite_weights(
        backend, compile):
    x, y = data()
    y = y * 1e3  # gradients of ~1e3: 1e308 times them overflows
    after_two = linear()
    quietly(after_two.fit, x, y, 2, batch_size=SAMPLES, optimizer=SGD(RATE), verbose=0,
            compile=compile)
    net = linear()
    with pytest.raises(portanet.TrainingError, match="NaN or infinite in epoch 3"):
        quietly(net.fit, x, y, 3, batch_size=SAMPLES, optimizer=overflowing_at(2), verbose=0,
                compile=compile)  # the loss of epoch 3 is finite: it comes before the update
    for mine, expected in zip(net.layers[0].get_weights(), after_two.layers[0].get_weights()):
        np.testing.assert_allclose(mine, expected, rtol=1e-12)
    assert np.isfinite(net.predict(x)).all()


@OVERFLOWS
def test_with_batch_hooks_the_layers_keep_the_last_finite_batchs_weights(backend):
    x, y = data()
    y = y * 1e3
    net, recorder = linear(), BatchWeights()
    with pytest.raises(portanet.TrainingError, match="in epoch 2, batch 2"):
        net.fit(x, y, 3, batch_size=5, optimizer=overflowing_at(3), verbose=0,
                callbacks=[recorder])
    assert len(recorder.weights) == 3  # batches 1 and 2 of epoch 1, batch 1 of epoch 2
    for mine, expected in zip(net.layers[0].get_weights(), recorder.weights[-1]):
        np.testing.assert_array_equal(mine, expected)
        assert np.isfinite(mine).all()
