"""Data that is not what a network takes, at every entry point: arrays of another library than
the backend's, views with odd strides, complex numbers, strings, objects, things that are not
arrays, empty data and batch sizes that cannot be."""

import warnings

import numpy as np
import pytest
from helpers import assert_backend_array

import portanet
from portanet import FCLayer, Network
from portanet.models import causal_transformer

X = np.arange(24, dtype=np.float64).reshape(8, 3) / 10
Y = np.stack([X[:, 0] - X[:, 1], X[:, 2]], axis=1)


def network():
    net = Network([FCLayer(3, 2)])
    net.use("mse")
    return net


def foreign(backend, array):
    """``array`` as an array of another library than ``backend``'s (array-api-strict's, or on
    the array-api-strict backend torch's, skipping where torch is not installed)."""
    if backend.name != "array_api_strict":
        import array_api_strict

        return array_api_strict.asarray(array)
    torch = pytest.importorskip("torch")
    return torch.asarray(array)


ENTRIES = {
    "fit": lambda net, x, y: net.fit(x, y, 1, batch_size=4, verbose=0),
    "fit validation_data": lambda net, x, y: net.fit(X, Y, 1, verbose=0,
                                                     validation_data=(x, y)),
    "evaluate": lambda net, x, y: net.evaluate(x, y),
    "predict": lambda net, x, y: net.predict(x),
    "predict_classes": lambda net, x, y: net.predict_classes(x),
}


@pytest.mark.parametrize("entry", ENTRIES)
def test_another_librarys_arrays_are_copied_through_the_host_with_one_warning(backend, entry):
    net = network()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = ENTRIES[entry](net, foreign(backend, X), foreign(backend, Y))
    said = [str(w.message) for w in caught if issubclass(w.category, portanet.InputWarning)]
    assert said and all("copied through the host" in text for text in said)
    assert any("portanet.set_backend" in text for text in said)
    if entry.startswith("predict"):
        want = ENTRIES[entry](net, X, Y)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)


@pytest.mark.parametrize("view", [
    lambda x: x[::-1], lambda x: x[:, ::-1], lambda x: x[::2], lambda x: np.asfortranarray(x),
])
def test_strided_and_negative_stride_views_work_everywhere(backend, view):
    net = network()
    got = net.predict(view(X))
    np.testing.assert_allclose(got, net.predict(np.ascontiguousarray(view(X))), rtol=1e-6)
    assert_backend_array(net.predict(backend.asarray(np.ascontiguousarray(view(X)))), backend,
                         "float32")


@pytest.mark.parametrize("bad, says", [
    (X + 1j, "holds complex numbers"),
    (np.array([["a", "b", "c"]] * 8), "holds strings"),
    (np.array([[object()] * 3] * 8), "holds objects"),
    ({"x": X}, "is a dict, not an array"),
    (np.zeros((0, 3)), "is empty"),
])
@pytest.mark.parametrize("entry", ENTRIES)
def test_data_that_is_not_real_numbers_is_refused_naming_it(backend, bad, says, entry):
    with pytest.raises(portanet.InputError, match=says):
        ENTRIES[entry](network(), bad, Y[:len(bad)] if hasattr(bad, "__len__") else Y)


@pytest.mark.parametrize("labels, says", [
    (np.array(["cat", "dog"] * 4), "y_train holds strings.*numpy.unique"),
    (np.array([0, 1] * 4) + 0j, "y_train holds complex numbers"),
])
def test_labels_that_are_not_numbers_are_refused_naming_them(backend, labels, says):
    with pytest.raises(portanet.InputError, match=says):
        network().fit(X, labels, 1, verbose=0)


def test_a_complex_backend_array_is_refused(backend):
    xp = backend.xp
    complex_x = xp.astype(backend.asarray(X, "float64"), xp.complex128)
    with pytest.raises(portanet.InputError, match="x holds complex numbers"):
        network().predict(complex_x)


@pytest.mark.parametrize("entry", [
    lambda net: net.predict(X, batch_size=0),
    lambda net: net.predict_proba(X, batch_size=-1),
    lambda net: net.evaluate(X, Y, batch_size=2.5),
])
def test_a_batch_size_that_cannot_be_is_named(backend, entry):
    with pytest.raises(portanet.InputError, match="batch_size must be an integer >= 1"):
        entry(network())


@pytest.mark.parametrize("make, data", [
    (lambda: network(), np.zeros((4, 0))),
    (lambda: Network([pn_conv()]), np.zeros((2, 1, 0, 0))),
    (lambda: causal_transformer(10, 4, width=8, heads=2, blocks=1),
     np.zeros((3, 0), dtype=np.int64)),
])
def test_samples_without_values_are_refused(backend, make, data):
    with pytest.raises(portanet.InputError, match=r"x has samples of shape \(.*\), which hold no"):
        make().predict(data)


def pn_conv():
    return portanet.Conv2D(1, 2, 3)
