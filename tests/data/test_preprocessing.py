"""normalize, standardize, fitted scalers and to_categorical on the backend under test."""

import numpy as np
import pytest
from helpers import on_backend

import portanet
from portanet import FCLayer, Network
from portanet.backend import to_numpy
from portanet.preprocessing import (
    Normalizer,
    Standardizer,
    normalize,
    standardize,
    to_categorical,
)


def test_normalize_maps_to_unit_range():
    values = on_backend(np.array([[2.0, 4.0], [6.0, 10.0]]))
    np.testing.assert_allclose(to_numpy(normalize(values)), [[0, 0.25], [0.5, 1.0]])


def test_standardize_gives_zero_mean_unit_std():
    values = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 3))
    out = to_numpy(standardize(on_backend(values)))
    assert abs(out.mean()) < 1e-12 and abs(out.std() - 1) < 1e-12


def test_integer_images_become_floats():
    images = np.array([[0, 128, 255]], dtype=np.uint8)
    np.testing.assert_allclose(normalize(images), [[0, 128 / 255, 1]], rtol=1e-6)


def test_constant_data_is_refused():
    with pytest.raises(portanet.InputError, match="all values are equal"):
        normalize(np.ones(4))
    with pytest.raises(portanet.InputError, match="all values are equal"):
        standardize(np.ones(4))


def test_to_categorical(backend):
    labels = backend.xp.asarray(np.array([2, 0, 1, 2]), device=backend.device)
    out = to_categorical(labels)
    np.testing.assert_array_equal(to_numpy(out), np.eye(3)[[2, 0, 1, 2]])
    assert to_categorical(np.array([1, 0]), num_classes=4).shape == (2, 4)
    with pytest.raises(portanet.InputError, match="integer class labels"):
        to_categorical(np.array([0.5, 1.0]))
    with pytest.raises(portanet.InputError, match="num_classes"):
        to_categorical(np.array([0, 5]), num_classes=3)


@pytest.mark.parametrize("kind", [Normalizer, Standardizer])
def test_fitted_scalers_reuse_the_training_statistics(kind, backend):
    gen = np.random.default_rng(0)
    train, test = gen.uniform(0, 255, (50, 4)), gen.uniform(0, 255, (20, 4))
    scaler = kind().fit(on_backend(train))
    expected = (test - train.min()) / (train.max() - train.min()) if kind is Normalizer else \
        (test - train.mean()) / train.std()
    np.testing.assert_allclose(to_numpy(scaler.transform(on_backend(test))), expected,
                               rtol=1e-6)
    with pytest.raises(portanet.InputError, match="not fitted"):
        kind().transform(on_backend(test))


def test_a_network_scales_its_inputs_warns_on_rescaled_data_and_saves_its_scaler(
        backend, tmp_path):
    gen = np.random.default_rng(1)
    raw = gen.integers(0, 256, (40, 6)).astype(np.float64)
    labels = gen.integers(0, 3, 40)
    net = Network([FCLayer(6, 3)])
    net.use("softmax_crossentropy")
    net.scaler = Standardizer().fit(raw)
    net.fit(raw, labels, epochs=2, batch_size=8, verbose=0)
    bare = Network([FCLayer(6, 3)])  # the same weights, no scaler, on scaled inputs
    bare.layers[0].set_weights(net.layers[0].get_weights())
    scaled = (raw - raw.mean()) / raw.std()
    np.testing.assert_allclose(net.predict(raw), bare.predict(scaled), rtol=1e-5, atol=1e-6)
    for wrong in (raw / 255, raw * 1000):  # already scaled, or other units
        with pytest.warns(portanet.InputWarning, match="scaler was fitted on data in"):
            net.predict(wrong)
    loaded = portanet.load(net.save(tmp_path / "net.npz"))
    assert loaded.scaler.config() == net.scaler.config()
    np.testing.assert_allclose(loaded.predict(raw), net.predict(raw), rtol=1e-6)
