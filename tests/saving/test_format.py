"""Saving and loading networks: portable across backends, atomic, and strict about bad files."""

import numpy as np
import pytest
from helpers import assert_backend_array, on_backend

import portanet
from portanet import ActivationLayer, FCLayer, Network


def trained_net(dtype=None):
    net = Network(dtype=dtype)
    net.add(FCLayer(4, 6))
    net.add(ActivationLayer("relu"))
    net.add(FCLayer(6, 3))
    net.use("softmax_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 4)), np.eye(3)[rng.integers(0, 3, 20)]
    net.fit(x, y, epochs=2, batch_size=5, verbose=0)
    net.metadata = {"note": "kept"}
    return net, x


def test_saved_on_this_backend_loads_on_numpy_and_back(backend, tmp_path):
    net, x = trained_net()
    expected = net.predict(x)
    path = net.save(tmp_path / "net.npz")
    with portanet.using_backend("numpy"):
        on_numpy = portanet.load(path)
        np.testing.assert_allclose(on_numpy.predict(x), expected, rtol=1e-5, atol=1e-6)
        on_numpy.save(tmp_path / "again.npz")
    back = portanet.load(tmp_path / "again.npz")
    np.testing.assert_array_equal(back.predict(x), expected)
    assert back.metadata == {"note": "kept"} and back.loss is net.loss
    assert_backend_array(back.layers[0].weights, backend, "float32")


def test_float64_stays_float64(backend, tmp_path):
    net, _ = trained_net(dtype="float64")
    loaded = portanet.load(net.save(tmp_path / "net64.npz"))
    assert_backend_array(loaded.layers[2].bias, backend, "float64")
    for mine, theirs in zip(loaded.layers[0].get_weights(), net.layers[0].get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_failed_save_keeps_the_existing_file(tmp_path, monkeypatch):
    net, _ = trained_net()
    path = net.save(tmp_path / "net.npz")
    before = path.read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(portanet.saving.format.np, "savez", broken_savez)
    with pytest.raises(portanet.WriteError, match="disk full.*net.npz is unchanged"):
        net.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["net.npz"]  # no temporary file left


def test_custom_functions_cannot_be_saved(tmp_path):
    net = Network()
    net.add(FCLayer(2, 2))
    net.add(ActivationLayer(lambda x: x, lambda x: x))
    target = tmp_path / "net.npz"
    target.write_bytes(b"precious")
    with pytest.raises(portanet.ModelFileError, match="not registered.*register_activation"):
        net.save(target)
    assert target.read_bytes() == b"precious"


class Scale(portanet.Layer):
    """A user's layer in the stateful form (storing its input): one learned factor per
    feature."""

    params = ("factor",)

    def __init__(self, features):
        super().__init__()
        self.features = features
        self.factor = portanet.get_backend().asarray(np.linspace(0.5, 1.5, features))

    def forward(self, x, training=False):
        self.input = x
        return x * self.factor

    def backward(self, grad_output):
        xp = portanet.backend.namespace(grad_output)
        self.grads = {"factor": xp.sum(grad_output * self.input, axis=0)}
        return grad_output * self.factor

    def config(self):
        return {"features": self.features}


class PureScale(portanet.Layer):
    """Scale written in the documented pure form."""

    params = ("factor",)
    config = Scale.config

    def __init__(self, features):
        super().__init__()
        self.features = features
        self.factor = portanet.get_backend().asarray(np.linspace(0.5, 1.5, features))

    def apply(self, state, x, run):
        factor = state["factor"]

        def backprop(grad_output, need_input=True):
            xp = portanet.backend.namespace(grad_output)
            return grad_output * factor, {"factor": xp.sum(grad_output * x, axis=0)}
        return x * factor, backprop


def swish(x):
    return x * portanet.activations.sigmoid(x)


def swish_prime(x):
    s = portanet.activations.sigmoid(x)
    return s + x * s * (1 - s)


@pytest.fixture(params=[Scale, PureScale])
def registered(request):
    """A Scale layer (stateful or pure form) and swish registered for one test (the registries
    are global)."""
    portanet.register_layer(request.param)
    portanet.register_activation("swish", swish, swish_prime)
    yield request.param
    del portanet.layers.LAYERS[request.param.__name__]
    del portanet.activations.ACTIVATIONS["swish"]


def test_registered_custom_layers_and_functions_save_and_load_on_another_backend(
        backend, tmp_path, registered):
    net = Network([FCLayer(4, 6), registered(6), ActivationLayer("swish"), FCLayer(6, 3)])
    net.use("softmax_crossentropy")
    x = np.random.default_rng(1).normal(size=(10, 4))
    net.fit(x, np.arange(10) % 3, epochs=2, batch_size=5, verbose=0)
    expected = net.predict(x)
    path = net.save(tmp_path / "custom.npz")
    portanet.set_backend("numpy")
    loaded = portanet.load(path)
    assert type(loaded.layers[1]) is registered and loaded.layers[2].activation is swish
    assert np.any(loaded.layers[1].get_weights()[0] != np.linspace(0.5, 1.5, 6))  # trained
    np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-5, atol=1e-6)
    taken = f"another layer is registered as '{registered.__name__}'"
    with pytest.raises(portanet.InputError, match=taken):
        portanet.register_layer(type(registered.__name__, (portanet.Layer,), {}))


class Offset(portanet.Layer):
    """A user's layer whose config() does not say how to rebuild it (by default: none)."""

    def __init__(self, features, shift=0.5):
        super().__init__()
        self.features, self.shift = features, shift

    def apply(self, state, x, run):
        return x + self.shift, lambda grad_output, need_input=True: (grad_output, {})


@pytest.mark.parametrize("config, reason", [
    (None, "Offset has no config\\(\\) of its own"),
    ({"shift": 0.5}, "missing a required argument: 'features'"),
    ({"features": 3, "size": 3}, "got an unexpected keyword argument 'size'"),
])
def test_a_layer_whose_config_cannot_rebuild_it_is_refused_at_save(tmp_path, config, reason):
    kind = Offset if config is None else type("Offset", (Offset,), {"config": lambda self: config})
    portanet.register_layer(kind)
    try:
        net = Network([FCLayer(3, 3), kind(3, shift=2.0)])
        target = tmp_path / "net.npz"
        with pytest.raises(portanet.ModelFileError, match=(
                rf"layer 1 \(Offset\) cannot be saved: config\(\) gives .*which would not rebuild "
                rf"it when loaded \({reason}.*def config\(self\): return \{{'features': "
                r"self.features, 'shift': self.shift\}")):
            net.save(target)
        assert not target.exists()
    finally:
        del portanet.layers.LAYERS["Offset"]


def test_bad_save_paths_name_the_fix(tmp_path, monkeypatch):
    net, _ = trained_net()
    with pytest.raises(portanet.InputError, match="does not exist .create it first"):
        net.save(tmp_path / "no" / "such" / "net.npz")
    monkeypatch.chdir(tmp_path)
    for folder in (".", tmp_path):
        with pytest.raises(portanet.InputError, match="it is a folder; give a file name"):
            net.save(folder)
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("damage", ["truncated", "text", "plain_npz", "object_array", "missing"])
def test_bad_files_give_clear_errors(tmp_path, damage):
    path = tmp_path / "bad.npz"
    if damage == "truncated":
        good = trained_net()[0].save(tmp_path / "good.npz").read_bytes()
        path.write_bytes(good[: len(good) // 2])
    elif damage == "text":
        path.write_text("not a network")
    elif damage == "plain_npz":
        np.savez(path, weights=np.ones(3))
    elif damage == "object_array":
        np.savez(path, **{"__portanet__.json": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(portanet.ModelFileError):
        portanet.load(path)


def test_weights_that_do_not_match_the_architecture(tmp_path):
    net, _ = trained_net()
    path = net.save(tmp_path / "net.npz")
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["0/weights"] = np.ones((5, 6), dtype=np.float32)
    np.savez(path, **arrays)
    with pytest.raises(portanet.ModelFileError, match="do not match"):
        portanet.load(path)
    del arrays["0/weights"]
    np.savez(path, **arrays)
    with pytest.raises(portanet.ModelFileError, match="missing"):
        portanet.load(path)


def test_backend_arrays_in_predict_after_load(backend, tmp_path):
    net, x = trained_net()
    loaded = portanet.load(net.save(tmp_path / "n.npz"))
    assert_backend_array(loaded.predict(on_backend(x, "float32")), backend, "float32")
