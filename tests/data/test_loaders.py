"""Data sets and loaders: streamed training equals in-memory training, batch by batch, from
every kind of data set; errors in the background thread reach the caller; nothing is left
running."""

import os
import signal
import threading
import warnings

import numpy as np
import pytest

import portanet
from portanet import ActivationLayer, Dense, Dropout, Layer, Network
from portanet.backend import namespace
from portanet.callbacks import Callback
from portanet.data import ArrayDataset, Loader, open_npy, open_npz
from portanet.errors import DataError, InputError

SAMPLES, FEATURES, CLASSES, BATCH = 70, 5, 3, 16


def data(seed=1):
    rs = np.random.default_rng(seed)
    return rs.normal(size=(SAMPLES, FEATURES)), rs.integers(0, CLASSES, SAMPLES)


def network():
    portanet.set_seed(0)
    net = Network([Dense(FEATURES, 8), ActivationLayer("tanh"), Dropout(0.2),
                   Dense(8, CLASSES)], dtype="float64")
    net.use("softmax_crossentropy")
    return net


def trained(x, y=None, compile=False, **settings):
    """A network trained on ``x`` (and ``y``) from the same seed, and its history."""
    net = network()
    portanet.set_seed(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", portanet.CompileWarning)
        history = net.fit(x, y, epochs=3, optimizer="adam", verbose=0, compile=compile,
                          **settings)
    return net, history


def weights(net):
    return [np.asarray(portanet.backend.to_numpy(w)) for layer in net.layers
            for w in layer.get_weights()]


def assert_same_training(one, other):
    (net_a, history_a), (net_b, history_b) = one, other
    assert history_a.history.keys() == history_b.history.keys()
    for key in history_a.history:
        np.testing.assert_allclose(history_b.history[key], history_a.history[key], rtol=1e-10)
    for a, b in zip(weights(net_a), weights(net_b)):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)


class Indexable:
    """A sized data set read one sample at a time, as a torch ``Dataset`` is."""

    def __init__(self, x, y):
        self.x, self.y, self.reads = x, y, 0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        self.reads += 1
        return self.x[index], self.y[index]


@pytest.fixture
def files(tmp_path):
    x, y = data()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    return tmp_path


def test_a_memory_map_and_data_sets_train_as_the_same_arrays(backend, files):
    x, y = data()
    settings = dict(batch_size=BATCH, shuffle=True, validation_split=0.2)
    in_memory = trained(x, y, **settings)
    mapped_x, mapped_y = np.load(files / "x.npy", mmap_mode="r"), np.load(files / "y.npy",
                                                                          mmap_mode="r")
    assert_same_training(in_memory, trained(mapped_x, mapped_y, **settings))
    assert_same_training(in_memory, trained(open_npy(files / "x.npy", files / "y.npy"),
                                            **settings))
    assert_same_training(in_memory, trained(open_npz(files / "xy.npz"), **settings))
    assert_same_training(in_memory, trained(Indexable(x, y), **settings))
    assert_same_training(in_memory, trained(Loader(x, y, batch_size=BATCH, shuffle=True),
                                            validation_split=0.2))


def test_a_generator_of_the_same_batches_trains_as_the_arrays(backend):
    x, y = data()

    def batches():
        for start in range(0, SAMPLES, BATCH):
            yield x[start:start + BATCH], y[start:start + BATCH]

    in_memory = trained(x, y, batch_size=BATCH, validation_data=(x[:20], y[:20]))
    assert_same_training(in_memory, trained(batches, validation_data=(x[:20], y[:20])))
    # a loader of any iterable of batches, with a streamed validation set
    assert_same_training(in_memory, trained(Loader(batches), validation_data=Loader(
        x[:20], y[:20], batch_size=7)))


def test_streamed_training_compiles_to_the_same_weights(backend, files):
    x, y = data()
    settings = dict(batch_size=BATCH, shuffle=True)
    assert_same_training(trained(x, y, compile=True, **settings),
                         trained(open_npy(files / "x.npy", files / "y.npy"), compile=True,
                                 **settings))


def test_predict_and_evaluate_read_data_sets_in_batches(backend, files):
    x, y = data()
    net, _ = trained(x, y, batch_size=BATCH)
    expected = portanet.backend.to_numpy(net.predict(x))
    mapped = np.load(files / "x.npy", mmap_mode="r")
    for source in (mapped, Loader(mapped, batch_size=9), open_npz(files / "xy.npz", y=None)):
        got = net.predict(source)
        assert isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, expected, rtol=1e-10)
    np.testing.assert_array_equal(net.predict_classes(Loader(x, batch_size=9)),
                                  net.predict_classes(x))
    scores = net.evaluate(x, y)
    for source in (Loader(x, y, batch_size=9), open_npz(files / "xy.npz"), Indexable(x, y)):
        got = net.evaluate(source)
        assert got["loss"] == pytest.approx(scores["loss"], rel=1e-10)
        assert got["accuracy"] == pytest.approx(scores["accuracy"], rel=1e-12)


def test_a_loader_cuts_shuffles_and_maps_batches():
    x, y = data()
    loader = Loader(x, y, batch_size=BATCH, drop_last=True, map=lambda a, b: (2 * a, b))
    assert len(loader) == SAMPLES // BATCH == len(list(loader))
    first_x, first_y = next(iter(loader))
    np.testing.assert_array_equal(first_x, 2 * x[:BATCH])
    np.testing.assert_array_equal(first_y, y[:BATCH])
    assert len(Loader(x, y, batch_size=BATCH)) == 5
    portanet.set_seed(3)
    order = np.random.default_rng(3).permutation(SAMPLES)
    shuffled = np.concatenate([b for b, _ in Loader(x, y, batch_size=BATCH, shuffle=True)])
    np.testing.assert_array_equal(shuffled, x[order])
    seeded = Loader(x, y, batch_size=BATCH, shuffle=True, seed=5)
    epochs = [np.concatenate([b for b, _ in seeded]) for _ in range(2)]
    again = Loader(x, y, batch_size=BATCH, shuffle=True, seed=5)
    np.testing.assert_array_equal(np.concatenate([b for b, _ in again]), epochs[0])
    assert not np.array_equal(epochs[0], epochs[1])  # a new order each epoch
    assert sorted(map(tuple, epochs[1])) == sorted(map(tuple, x))


def test_a_batch_reads_only_its_rows(backend):
    x, y = data()
    data_set = Indexable(x, y)
    loader = Loader(data_set, batch_size=BATCH, prefetch=1)
    batches = iter(loader)
    next(batches)
    # the batch given, one being made and at most one waiting: never the whole set
    assert data_set.reads <= 3 * BATCH < SAMPLES
    batches.close()


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "portanet-prefetch"]


class Failing(Indexable):
    name = "the failing set"

    def __getitem__(self, index):
        if index == 40:
            raise OSError("disk went away")
        return super().__getitem__(index)


def test_an_error_while_reading_reaches_the_caller_and_stops_the_thread(backend):
    x, y = data()
    net = network()
    with pytest.raises(DataError, match="the failing set.*OSError: disk went away"):
        net.fit(Failing(x, y), batch_size=BATCH, epochs=2, verbose=0)
    assert not prefetch_threads()
    with pytest.raises(DataError, match="the failing set"):
        list(Loader(Failing(x, y), batch_size=BATCH))
    assert not prefetch_threads()


def test_ctrl_c_during_a_streamed_epoch_stops_cleanly(backend):
    x, y = data()

    class CtrlC(Callback):
        def on_batch_end(self, batch, logs=None):
            if batch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    net = network()
    history = net.fit(Loader(x, y, batch_size=BATCH), epochs=3, verbose=0, callbacks=[CtrlC()])
    assert history.interrupted and history.epoch == [1]
    assert not prefetch_threads()


def test_a_generator_object_serves_one_epoch():
    x, y = data()
    net = network()
    batches = ((x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, SAMPLES, BATCH))
    net.fit(batches, epochs=1, verbose=0)
    batches = ((x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, SAMPLES, BATCH))
    with pytest.raises(InputError, match="generator, which can be read once"):
        net.fit(batches, epochs=2, verbose=0)
    assert not prefetch_threads()


def test_mistakes_with_data_sets_are_named(backend, tmp_path):
    x, y = data()
    net = network()
    loader = Loader(x, y, batch_size=BATCH)
    with pytest.raises(InputError, match="give batch_size and shuffle to the Loader"):
        net.fit(loader, batch_size=8, verbose=0)
    with pytest.raises(InputError, match="leave y out"):
        net.fit(Indexable(x, y), y, verbose=0)
    with pytest.raises(InputError, match="y_train is missing"):
        net.fit(x, verbose=0)
    with pytest.raises(InputError, match="not an \\(x, y\\) pair"):
        net.fit(Loader(x, batch_size=BATCH), verbose=0)
    with pytest.raises(InputError, match="not both"):
        net.fit(x, y, validation_split=0.2, validation_data=(x, y), verbose=0)
    with pytest.raises(InputError, match="cannot shuffle"):
        Loader(lambda: iter([(x, y)]), shuffle=True)
    with pytest.raises(InputError, match="validation_split needs a sized data set"):
        net.fit(lambda: iter([(x, y)]), validation_split=0.2, verbose=0)
    with pytest.raises(InputError, match="batch_size"):
        Loader(x, y, batch_size=0)
    with pytest.raises(InputError, match="is empty"):
        Loader(x[:0], y[:0])
    with pytest.raises(DataError, match="map function returned"):
        list(Loader(x, y, map=lambda a, b: a))
    ragged = [(np.zeros(3), 0), (np.zeros(4), 1)]
    with pytest.raises(DataError, match="different shapes"):
        list(Loader(ragged, batch_size=2))
    np.savez_compressed(tmp_path / "small.npz", x=x, y=y)
    with pytest.raises(DataError, match="compressed"):
        open_npz(tmp_path / "small.npz")
    np.savez(tmp_path / "plain.npz", inputs=x)
    with pytest.raises(DataError, match="no array 'x'"):
        open_npz(tmp_path / "plain.npz")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="junk.npy"):
        open_npy(tmp_path / "junk.npy")


def test_bad_batches_name_the_batch(backend):
    x, y = data()
    bad = x.copy()
    bad[50, 0] = np.nan
    with pytest.raises(InputError, match="from sample 48.*NaN"):
        network().fit(ArrayDataset(bad, y), batch_size=BATCH, verbose=0)
    with pytest.raises(InputError, match="per-sample shape"):
        network().fit(ArrayDataset(x[:, :3], y), batch_size=BATCH, verbose=0)
    assert not prefetch_threads()


def test_a_torch_dataset_and_data_loader_train_as_the_arrays(backend):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    x, y = data()
    tensors = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    in_memory = trained(x, y, batch_size=BATCH, shuffle=True)
    assert_same_training(in_memory, trained(tensors, batch_size=BATCH, shuffle=True))
    unshuffled = trained(x, y, batch_size=BATCH)
    assert_same_training(unshuffled, trained(DataLoader(tensors, batch_size=BATCH)))


class Scale(Layer):
    """A user layer keeping its input on itself, with no output_shape: checking a batch's
    targets needs a trial run of the network, which must not race with training."""

    params = ("factor",)

    def __init__(self, size):
        super().__init__()
        self.factor = portanet.get_backend().asarray(np.linspace(0.5, 1.5, size), "float64")

    def forward(self, x, training=False):
        self.input = x
        return x * self.factor

    def backward(self, grad_output):
        self.grads = {"factor": namespace(grad_output).sum(grad_output * self.input, axis=0)}
        return grad_output * self.factor


def test_a_layer_keeping_state_on_itself_trains_on_a_stream_as_on_arrays(backend):
    x, y = data()
    results = []
    for source in ((x, y), (Indexable(x, y),)):
        portanet.set_seed(0)
        net = Network([Dense(FEATURES, CLASSES), Scale(CLASSES)], dtype="float64")
        net.use("softmax_crossentropy")
        history = net.fit(*source, epochs=3, batch_size=4, shuffle=True, verbose=0)
        results.append((net, history))
    assert_same_training(*results)


class CrashIn(Callback):
    """Raise as epoch ``epoch`` begins."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("crash")


@pytest.mark.parametrize("seed", [None, 5])
def test_training_on_a_loader_resumes_where_it_stopped(backend, tmp_path, seed):
    x, y = data()

    def fit(callbacks):
        portanet.set_seed(7)
        return net.fit(Loader(x, y, batch_size=BATCH, shuffle=True, seed=seed), epochs=4,
                       optimizer="adam", verbose=0, callbacks=callbacks)

    net = network()
    straight = (net, fit([]))
    net = network()
    backup = portanet.BackupAndRestore(tmp_path / "state.npz")
    with pytest.raises(RuntimeError, match="crash"):
        fit([backup, CrashIn(3)])
    net = network()  # a new start: the state file holds the weights, optimizer and generator
    resumed = fit([portanet.BackupAndRestore(tmp_path / "state.npz")])
    assert resumed.epoch == [3, 4]
    for a, b in zip(weights(straight[0]), weights(net)):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(resumed.history["loss"], straight[1].history["loss"][2:],
                               rtol=1e-10)
