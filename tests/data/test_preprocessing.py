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
    scaler_from_config,
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


def test_constant_data_are_refused_even_where_rounding_gives_a_nonzero_std(backend):
    constant = on_backend(np.full(1000, 0.1), "float32")  # np.std gives 1.5e-8, not 0
    with pytest.raises(portanet.InputError, match="all values are equal"):
        Standardizer().fit(constant)


def test_a_constant_feature_among_varying_ones_is_kept(backend):
    x = np.stack([np.full(10, 3.0), np.arange(10.0)], axis=1)  # statistics of the whole array
    scaled = to_numpy(Standardizer().fit_transform(on_backend(x)))
    np.testing.assert_allclose(scaled, (x - x.mean()) / x.std())


@pytest.mark.parametrize("kind", [Normalizer, Standardizer])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_data_with_nan_or_infinities_are_refused_by_fit(backend, kind, bad):
    with pytest.raises(portanet.InputError, match="NaN or infinite values"):
        kind().fit(on_backend(np.array([1.0, bad, 3.0])))


@pytest.mark.parametrize("config, says", [
    ({"type": "Standardizer", "low": 0, "high": 1, "mean": 0.5, "std": 0}, "std must be a pos"),
    ({"type": "Standardizer", "low": 0, "high": 1, "mean": 0.5, "std": float("nan")},
     "std must be a finite number"),
    ({"type": "Standardizer", "low": 0, "high": 1, "mean": float("inf"), "std": 1},
     "mean must be a finite number"),
    ({"type": "Normalizer", "low": 2, "high": 2}, "all values are equal"),
    ({"type": "Normalizer", "low": 0}, "needs the statistics low, high, got low"),
    ({"type": "Normalizer", "low": 0, "high": 1, "std": 1}, "needs the statistics low, high"),
    ({"type": "Robust"}, "must name its type"),
    (["Normalizer"], "must name its type"),
])
def test_scaler_configs_are_checked_as_fitted_statistics_are(config, says):
    with pytest.raises(portanet.InputError, match=says):
        scaler_from_config(config)


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
