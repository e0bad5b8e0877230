"""normalize, standardize and to_categorical on the backend under test."""

import numpy as np
import pytest
from helpers import on_backend

import portanet
from portanet.backend import to_numpy
from portanet.preprocessing import normalize, standardize, to_categorical


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
