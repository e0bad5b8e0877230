"""Callbacks on the backend under test: hooks, early stopping, checkpoints, schedules, CSV logs."""

import csv
import math
import re

import numpy as np
import pytest
from helpers import assert_backend_array

import portanet
from portanet import (
    ActivationLayer,
    BatchNorm,
    Callback,
    CSVLogger,
    EarlyStopping,
    FCLayer,
    Layer,
    LearningRateScheduler,
    ModelCheckpoint,
    Network,
)
from portanet.cli import main
from portanet.optimizers import SGD
from portanet.training import cache


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return x, (x[:, 0] + x[:, 1] > 0).astype(int)


def network(batch_norm=False, dtype="float64"):
    portanet.set_seed(3)
    layers = [FCLayer(3, 6), *([BatchNorm(6)] if batch_norm else []), ActivationLayer("tanh"),
              FCLayer(6, 2)]
    net = Network(layers, dtype=dtype)
    net.use("softmax_crossentropy")
    return net


def weights(net):
    """Copies of the network's parameters and buffers (NumPy's may be views of live arrays)."""
    return [np.array(w) for layer in net.layers for w in layer.get_weights()]


class Score(Callback):
    """Puts a made-up monitored value into each epoch's logs (callbacks after it see it)."""

    def __init__(self, values, name="score"):
        self.values, self.name = values, name

    def on_epoch_end(self, epoch, logs):
        logs[self.name] = self.values[epoch - 1]


class Recorder(Callback):
    """Records every hook call, and a copy of the network's weights at each epoch's end."""

    def __init__(self):
        self.calls, self.weights = [], []

    def on_train_begin(self, logs):
        self.calls.append(("train_begin", logs))
        self.bound = (self.network, self.optimizer, self.history, self.world.is_root)

    def on_train_end(self, logs):
        self.calls.append(("train_end", sorted(logs)))

    def on_epoch_begin(self, epoch):
        self.calls.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch_end", epoch, sorted(logs)))
        self.weights.append(weights(self.network))

    def on_batch_begin(self, batch):
        self.calls.append(("batch_begin", batch))

    def on_batch_end(self, batch):
        self.calls.append(("batch_end", batch))


def test_a_callback_sees_the_hooks_in_order_and_the_current_weights():
    net, (x, y) = network(), data(10)
    recorder, optimizer = Recorder(), SGD(0.1)
    history = net.fit(x, y, epochs=2, batch_size=4, optimizer=optimizer, verbose=0,
                      callbacks=[recorder])
    assert recorder.bound == (net, optimizer, history, True)
    batches = [call for b in (1, 2, 3) for call in (("batch_begin", b), ("batch_end", b))]
    assert recorder.calls == [("train_begin", {}),
                              ("epoch_begin", 1), *batches, ("epoch_end", 1, ["loss"]),
                              ("epoch_begin", 2), *batches, ("epoch_end", 2, ["loss"]),
                              ("train_end", ["loss"])]
    first, last = recorder.weights  # no validation: the layers got the weights for the callbacks
    for after_fit, at_end, after_one in zip(weights(net), last, first):
        np.testing.assert_array_equal(at_end, after_fit)
        assert not np.array_equal(after_one, after_fit)
    assert history.stop_reason == "completed" and history.stopped_epoch == 2


@pytest.mark.parametrize("scores, options, stopped, reason", [
    ([5, 4, 4.5, 3.9, 4.1, 4.2, 4.0, 3.95, 1, 1], {"patience": 3}, 7,
     "score did not improve for 3 epochs (best 3.9 in epoch 4)"),
    ([5, 4, 4.5, 3.9, 4.1, 4.2, 4.0, 3.95, 1, 1], {"patience": 3, "min_delta": 0.15}, 5,
     "score did not improve for 3 epochs (best 4 in epoch 2)"),
    ([5, 4, 4.5, 3.9, 4.1, 4.2, 4.0, 3.95, 1, 1], {"patience": 0}, 3,
     "score did not improve for 1 epoch (best 4 in epoch 2)"),
    ([0.1, 0.5, 0.4, 0.45, 0.3, 0.2, 0, 0, 0, 0], {"patience": 2, "monitor": "fake_acc"}, 4,
     "fake_acc did not improve for 2 epochs (best 0.5 in epoch 2)"),  # "acc": higher is better
    ([0.1, 0.5, 0.4, 0.45, 0.3, 0.2, 0, 0, 0, 0], {"patience": 2, "monitor": "fake_acc",
                                                    "mode": "min"}, 3,
     "fake_acc did not improve for 2 epochs (best 0.1 in epoch 1)"),
    ([5, 4, 3, 2, 1, 0.5, 0.4, 0.3, 0.2, 0.1], {"patience": 1}, 10, None),
])
def test_early_stopping_stops_at_the_right_epoch(scores, options, stopped, reason):
    net, (x, y) = network(), data()
    monitor = options.get("monitor", "score")
    stopping = EarlyStopping(**{"monitor": "score", **options})
    history = net.fit(x, y, epochs=10, batch_size=8, verbose=0,
                      callbacks=[Score(scores, monitor), stopping])
    assert history.epoch == list(range(1, stopped + 1)) and history.stopped_epoch == stopped
    if reason is None:
        assert history.stop_reason == "completed" and stopping.stopped_epoch == 0
    else:
        assert history.stop_reason == f"early stopping: {reason}"
        assert stopping.stopped_epoch == stopped
    assert net.fit(x, y, epochs=2, verbose=0).stop_reason == "completed"  # the flag was reset


def test_restore_best_weights_gives_back_the_best_epochs_parameters_and_buffers(backend,
                                                                                tmp_path):
    net, (x, y) = network(batch_norm=True), data()
    every_epoch = ModelCheckpoint(tmp_path / "net-{epoch}.npz")
    stopping = EarlyStopping("score", patience=2, restore_best_weights=True)
    history = net.fit(x, y, epochs=10, batch_size=8, optimizer="adam", verbose=0,
                      callbacks=[Score([3, 1, 2, 2.5, 0]), every_epoch, stopping])
    assert history.epoch == [1, 2, 3, 4]
    assert history.stop_reason.endswith("restoring the weights of epoch 2")
    best, last = (portanet.load(tmp_path / f"net-{epoch}.npz") for epoch in (2, 4))
    assert net.layers[1].buffers  # BatchNorm's running statistics: restored too
    for mine, at_best, at_last in zip(weights(net), weights(best), weights(last)):
        np.testing.assert_array_equal(mine, at_best)
        assert not np.array_equal(mine, at_last)
    for layer in net.layers:
        for name in layer.params + layer.buffers:
            assert_backend_array(getattr(layer, name), backend, "float64")
    np.testing.assert_allclose(net.predict(x), best.predict(x), rtol=1e-12)
    net.fit(x, y, epochs=1, batch_size=8, verbose=0)  # the restored arrays train on
    assert not np.array_equal(weights(net)[0], weights(best)[0])


def test_model_checkpoint_writes_on_improvement_only_and_the_files_load(tmp_path):
    net, (x, y) = network(), data()
    best = ModelCheckpoint(tmp_path / "best.npz", monitor="score", save_best_only=True)
    numbered = ModelCheckpoint(str(tmp_path / "best-{epoch}.npz"), "score", save_best_only=True)
    history = net.fit(x, y, epochs=5, batch_size=8, verbose=0,
                      callbacks=[Score([3, 1, 2, 0.5, 0.7]), best, numbered])
    assert sorted(path.name for path in tmp_path.glob("best-*")) == [
        "best-1.npz", "best-2.npz", "best-4.npz"]
    assert (best.best, best.best_epoch) == (0.5, 4) and history.stop_reason == "completed"
    for saved, at_4 in zip(weights(portanet.load(tmp_path / "best.npz")),
                           weights(portanet.load(tmp_path / "best-4.npz"))):
        np.testing.assert_array_equal(saved, at_4)
    assert not np.array_equal(weights(portanet.load(tmp_path / "best-2.npz"))[0],
                              weights(portanet.load(tmp_path / "best-4.npz"))[0])
    assert not list(tmp_path.glob(".*tmp"))  # written atomically: no temporary left


def test_checkpoint_path_may_hold_the_epoch_and_its_values(tmp_path):
    net, (x, y) = network(), data()
    path = str(tmp_path / "net-{epoch:02d}-{val_accuracy:.2f}-{val_loss:.3f}.npz")
    history = net.fit(x, y, epochs=3, batch_size=8, verbose=0, validation_split=0.25,
                      callbacks=[ModelCheckpoint(path, save_best_only=False)])
    expected = [path.format(epoch=epoch, val_loss=loss, val_accuracy=accuracy) for epoch, loss,
                accuracy in zip(history.epoch, history.history["val_loss"],
                                history.history["val_accuracy"])]
    assert sorted(str(p) for p in tmp_path.glob("net-*.npz")) == expected
    assert portanet.load(expected[-1]).predict(x[:2]).shape == (2, 2)


@pytest.mark.parametrize("name, says", [
    ("{nope}.npz", r"has the field \{nope\}"),
    ("{epoch.x}.npz", "cannot be filled in"),
    ("{epoch[0]}.npz", "cannot be filled in"),
    ("{loss:03d}.npz", "cannot be filled in"),
    ("{epoch.npz", "cannot be filled in"),
])
def test_a_checkpoint_path_that_cannot_be_filled_in_is_refused_when_given(tmp_path, name, says):
    with pytest.raises(portanet.InputError, match=says):
        ModelCheckpoint(str(tmp_path / name), "loss")


def test_a_checkpoint_path_naming_a_value_training_lacks_is_refused_before_training(tmp_path):
    net, (x, y) = network(), data()
    before = weights(net)
    checkpoint = ModelCheckpoint(str(tmp_path / "net-{val_loss:.2f}.npz"), "loss")
    with pytest.raises(portanet.InputError, match="path names 'val_loss'.*validation_split"):
        net.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint])
    for now, then in zip(weights(net), before):
        np.testing.assert_array_equal(now, then)  # refused before any step
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("takes_rate", [False, True])
def test_a_schedule_of_the_epoch_alone_or_with_the_rate_is_used_keras_style(takes_rate):
    net, (x, y) = network(), data()
    optimizer = SGD(0.1)
    seen = []
    if takes_rate:
        def schedule(epoch, rate):
            seen.append((epoch, rate))
            return rate / 2
    else:
        def schedule(epoch):
            seen.append((epoch,))
            return 0.1 / 2 ** (epoch + 1)
    net.fit(x, y, epochs=3, verbose=0, optimizer=optimizer,
            callbacks=[LearningRateScheduler(schedule)])
    assert optimizer.learning_rate == pytest.approx(0.0125)
    assert seen == ([(0, 0.1), (1, 0.05), (2, 0.025)] if takes_rate else [(0,), (1,), (2,)])


@pytest.mark.parametrize("rate", [math.nan, -0.1, 0.0, "0.1", None, math.inf])
def test_a_schedule_giving_no_positive_rate_stops_before_its_epoch(rate):
    net, (x, y) = network(), data()
    before = weights(net)
    for callbacks, optimizer in (([LearningRateScheduler(lambda epoch: rate)], SGD(0.1)),
                                 ([], SGD(0.1, schedule=lambda iteration: rate))):
        with pytest.raises(portanet.InputError, match="learning rate from the schedule"):
            net.fit(x, y, epochs=2, verbose=0, optimizer=optimizer, callbacks=callbacks)
        for now, then in zip(weights(net), before):
            np.testing.assert_array_equal(now, then)


class Unsaveable(Layer):
    """A layer that is not registered: a network holding it cannot be saved."""

    def forward(self, x, training=False):
        return x

    def backward(self, grad_output):
        return grad_output


@pytest.mark.parametrize("make, error, says", [
    (lambda tmp: ModelCheckpoint(tmp / "missing" / "net.npz"), portanet.InputError,
     "does not exist"),
    (lambda tmp: ModelCheckpoint(tmp), portanet.InputError, "it is a folder"),
    (lambda tmp: CSVLogger(tmp / "missing" / "log.csv"), portanet.InputError, "does not exist"),
    (lambda tmp: ModelCheckpoint(tmp / "net.npz"), portanet.ModelFileError, "not a registered"),
    (lambda tmp: LearningRateScheduler(lambda epoch, lr: lr), portanet.InputError,
     "has its own schedule"),
])
def test_callbacks_check_what_they_need_before_training(tmp_path, make, error, says):
    net, (x, y) = network(), data()
    if error is portanet.ModelFileError:
        net.layers.insert(1, Unsaveable())
    recorder = Recorder()
    with pytest.raises(error, match=says):
        net.fit(x, y, epochs=2, verbose=0, callbacks=[recorder, make(tmp_path)],
                optimizer=SGD(0.1, schedule=lambda iteration: 0.1))
    assert recorder.calls == [("train_begin", {})]  # refused before the first epoch


@pytest.mark.parametrize("make, fix", [
    (lambda tmp: EarlyStopping(), r"validation_data=\(x, y\) or validation_split"),
    (lambda tmp: ModelCheckpoint(tmp / "net.npz", "accuracy", save_best_only=True),
     r"metrics=\['accuracy'\]"),
])
def test_a_monitored_value_that_training_lacks_is_named_with_the_fix(tmp_path, make, fix):
    net, (x, y) = network(), data()
    with pytest.raises(portanet.InputError, match=r"values per epoch: loss\)") as caught:
        net.fit(x, y, epochs=3, verbose=0, callbacks=[make(tmp_path)])
    assert re.search(fix, str(caught.value)) and not list(tmp_path.iterdir())


def test_csv_logger_writes_a_row_per_epoch_as_it_goes(tmp_path):
    net, (x, y) = network(), data()
    log = tmp_path / "log.csv"

    class Crash(Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 2:
                raise RuntimeError("crash")

    history = net.fit(x, y, epochs=3, batch_size=8, verbose=0, validation_split=0.25,
                      metrics=["accuracy"], callbacks=[CSVLogger(log)])
    with open(log, newline="") as stream:
        rows = list(csv.reader(stream))
    keys = ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert rows[0] == ["epoch", *keys] and len(rows) == 4
    for row, epoch in zip(rows[1:], history.epoch):
        assert int(row[0]) == epoch
        assert [float(v) for v in row[1:]] == [history.history[k][epoch - 1] for k in keys]

    with pytest.raises(RuntimeError, match="crash"):  # a fresh log, then a crash in epoch 2
        net.fit(x, y, epochs=3, verbose=0, callbacks=[CSVLogger(log), Crash()])
    assert [row[0] for row in csv.reader(log.open())] == ["epoch", "1", "2"]
    net.fit(x, y, epochs=1, verbose=0, callbacks=[CSVLogger(log, append=True)])
    assert [row[0] for row in csv.reader(log.open())] == ["epoch", "1", "2", "1"]


def test_learning_rate_scheduler_sets_the_rate_the_steps_use(backend):
    cache.clear_shared()  # compiled steps are shared by networks alike: count afresh
    (x, y), seen = data(10), []

    class Rates(Callback):
        def on_epoch_begin(self, epoch):
            seen.append((epoch, self.optimizer.current_learning_rate))

    def halve(epoch, rate):
        return 0.2 * 0.5 ** epoch

    net, optimizer = network(), SGD(0.2)
    history = net.fit(x, y, epochs=3, batch_size=4, optimizer=optimizer, verbose=0,
                      compile=True if backend.name == "jax" else "auto",
                      callbacks=[LearningRateScheduler(halve), Rates()])
    assert seen == [(1, 0.2), (2, 0.1), (3, 0.05)]  # the schedule's epoch counts from 0
    # batches of 4, 4 and 2: two shapes, traced once each however the rate changes
    assert history.step_traces == (2 if history.compiled != "eager" else 9)
    if backend.name == "jax":
        assert history.compiled == "jax.jit"
    by_hand = network()
    for rate in (0.2, 0.1, 0.05):  # the same steps, one fit per rate
        by_hand.fit(x, y, epochs=1, batch_size=4, optimizer=SGD(rate), verbose=0)
    for mine, theirs in zip(weights(net), weights(by_hand)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan"), "fast"])
def test_a_schedule_must_return_a_positive_rate(rate):
    net, (x, y) = network(), data()
    with pytest.raises(portanet.InputError, match=r"learning rate from the schedule \(epoch 0\)"):
        net.fit(x, y, epochs=2, verbose=0,
                callbacks=[LearningRateScheduler(lambda epoch, lr: rate)])


def test_a_callback_stops_training_with_network_stop_training():
    net, (x, y) = network(), data(16)
    optimizer = SGD(0.1)

    class StopAfterTwoBatches(Callback):
        def on_batch_end(self, batch):
            if batch == 2:
                self.network.stop_training = True

    history = net.fit(x, y, epochs=5, batch_size=4, optimizer=optimizer, verbose=0,
                      callbacks=StopAfterTwoBatches())  # a single callback is fine too
    assert history.epoch == [1] and optimizer.iterations == 2 and history.stopped_epoch == 1
    assert history.stop_reason == "stopped by a callback (network.stop_training) in epoch 1"
    assert net.fit(x, y, epochs=2, verbose=0).stop_reason == "completed"


@pytest.mark.parametrize("callbacks, says", [
    ([object()], "holds <object object"),
    ([EarlyStopping(), "csv"], "holds 'csv', which is not a portanet.callbacks.Callback"),
    ([EarlyStopping], r"the class EarlyStopping, not an object: write EarlyStopping\(...\)"),
    ("log.csv", "must be a list of portanet.callbacks.Callback"),
])
def test_bad_callbacks_are_refused_by_name(callbacks, says):
    net, (x, y) = network(), data()
    with pytest.raises(portanet.InputError, match=says):
        net.fit(x, y, epochs=1, verbose=0, callbacks=callbacks)


@pytest.mark.parametrize("make, says", [
    (lambda: EarlyStopping(patience=-1), "patience must be an integer >= 0"),
    (lambda: EarlyStopping(patience=1.5), "patience must be an integer >= 0"),
    (lambda: EarlyStopping(mode="median"), "mode must be one of 'auto', 'min', 'max'"),
    (lambda: EarlyStopping(min_delta=-0.1), "min_delta must be a number >= 0"),
    (lambda: EarlyStopping(monitor=3), "monitor must name one of the epoch's values"),
    (lambda: ModelCheckpoint(None), "ModelCheckpoint needs a file path"),
    (lambda: CSVLogger(3), "CSVLogger needs a file path"),
    (lambda: LearningRateScheduler(0.1), r"needs a function schedule\(epoch\) or schedule"),
])
def test_bad_callback_settings_are_refused(make, says):
    with pytest.raises(portanet.InputError, match=says):
        make()


def test_cli_early_stopping_keeps_and_checkpoints_the_best_network(backend, tmp_path, capsys):
    best, final = tmp_path / "best.npz", tmp_path / "final.npz"
    argv = ["train", "--epochs", "60", "--limit", "200", "--learning-rate", "0.01",
            "--early-stopping", "1", "--checkpoint", str(best), "--save", str(final),
            "--backend", backend.name]
    assert main(argv) == 0
    out = capsys.readouterr().out
    losses = [float(v) for v in re.findall(r"^epoch \d+/60 .*val_loss=([\d.]+)", out, re.M)]
    assert 1 < len(losses) < 60 and losses[-1] >= min(losses[:-1])  # stopped early, no gain
    epoch = losses.index(min(losses)) + 1
    assert "early stopping: val_loss did not improve for 1 epoch" in out
    assert f"saved the best network (val_loss={min(losses):f}, epoch {epoch})" in out
    (x, labels), _ = portanet.datasets.load_digits()
    checkpoint = portanet.load(best)
    scores = checkpoint.evaluate(x[180:200].reshape(20, -1).astype(np.float32),
                                 labels[180:200])  # the validation split: the last 10 %
    assert scores["loss"] == pytest.approx(min(losses), abs=2e-6)
    for kept, checked in zip(weights(portanet.load(final)), weights(checkpoint)):
        np.testing.assert_array_equal(kept, checked)  # the best epoch's weights restored


def test_cli_refuses_a_bad_checkpoint_path_before_training(tmp_path, capsys):
    assert main(["train", "--checkpoint", str(tmp_path / "missing" / "best.npz")]) == 2
    captured = capsys.readouterr()
    assert "cannot save the checkpoint" in captured.err and "training" not in captured.out
    assert main(["train", "--early-stopping", "-1"]) == 2
    assert "--early-stopping must be an integer >= 0, got -1" in capsys.readouterr().err


def test_callbacks_are_exported():
    assert portanet.callbacks.EarlyStopping is EarlyStopping
    assert {"Callback", "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler",
            "CSVLogger"} <= set(portanet.__all__)


def test_weights_taken_in_a_callback_do_not_change_as_training_goes_on():
    """get_weights gives copies: training updates the parameters in place on NumPy and torch,
    and arrays a callback took must keep the values of their epoch."""

    class Keep(Callback):
        def __init__(self):
            self.taken = []

        def on_epoch_end(self, epoch, logs):
            self.taken.append((self.network.layers[0].get_weights(),
                               [np.array(w) for w in self.network.layers[0].get_weights()]))

    net, keep = network(), Keep()
    net.fit(*data(), epochs=3, batch_size=4, learning_rate=0.1, callbacks=[keep], verbose=0)
    for arrays, copies in keep.taken:
        for array, copy in zip(arrays, copies):
            np.testing.assert_array_equal(array, copy)
    assert not np.array_equal(keep.taken[0][1][0], keep.taken[-1][1][0])  # training did move
