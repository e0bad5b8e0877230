"""Bad input gets a clear portanet error that names the problem and the fix."""

import numpy as np
import pytest

import portanet
from portanet import ActivationLayer, FCLayer, Network
from portanet.losses import mse, mse_prime


def small_net():
    net = Network()
    net.add(FCLayer(4, 3))
    net.add(ActivationLayer("tanh"))
    net.add(FCLayer(3, 2))
    net.use(mse, mse_prime)
    return net


X, Y = np.zeros((6, 4)), np.zeros((6, 2))


def test_layers_that_do_not_chain_are_refused_at_add():
    net = Network()
    net.add(FCLayer(4, 3))
    net.add(ActivationLayer("tanh"))
    with pytest.raises(portanet.ShapeError) as info:
        net.add(FCLayer(5, 2))
    message = str(info.value)
    assert "FCLayer(input_size=5" in message and "FCLayer(input_size=4" not in message
    assert "ActivationLayer" in message and "(3,)" in message and "5" in message


def test_length_mismatch():
    with pytest.raises(portanet.InputError, match="6 samples but y_train has 5"):
        small_net().fit(X, Y[:5], epochs=1, verbose=0)


def test_wrong_feature_count_in_fit_and_predict():
    with pytest.raises(portanet.ShapeError, match=r"per-sample shape \(5,\).*expects \(4,\)"):
        small_net().fit(np.zeros((6, 5)), Y, epochs=1, verbose=0)
    with pytest.raises(portanet.ShapeError, match="expects"):
        small_net().predict(np.zeros((2, 7)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs(bad):
    x = X.copy()
    x[2, 1] = bad
    with pytest.raises(portanet.InputError, match="NaN or infinity"):
        small_net().fit(x, Y, epochs=1, verbose=0)
    y = Y.copy()
    y[0, 0] = bad
    with pytest.raises(portanet.InputError, match="NaN or infinity"):
        small_net().fit(X, y, epochs=1, verbose=0)


def test_empty_data():
    with pytest.raises(portanet.InputError, match="empty"):
        small_net().fit(np.zeros((0, 4)), np.zeros((0, 2)), epochs=1, verbose=0)
    with pytest.raises(portanet.InputError, match="empty"):
        small_net().predict(np.zeros((0, 4)))


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_bad_batch_size(batch_size):
    with pytest.raises(portanet.InputError, match="batch_size must be an integer >= 1"):
        small_net().fit(X, Y, epochs=1, batch_size=batch_size, verbose=0)


def test_targets_that_do_not_fit_the_output_suggest_one_hot():
    with pytest.raises(portanet.ShapeError, match="to_categorical"):
        small_net().fit(X, np.zeros(6), epochs=1, verbose=0)


def test_unusable_arguments():
    with pytest.raises(portanet.InputError, match="no loss"):
        Network().add(FCLayer(2, 2)).fit(X, Y, epochs=1)
    with pytest.raises(portanet.InputError, match="no layers"):
        Network().predict(X)
    with pytest.raises(portanet.InputError, match="unknown loss 'msq'"):
        Network().use("msq")
    with pytest.raises(portanet.InputError, match="unknown activation"):
        ActivationLayer("swishy")
    with pytest.raises(portanet.InputError, match="positive integer"):
        FCLayer(0, 3)
    with pytest.raises(portanet.InputError, match="learning_rate must be a positive"):
        small_net().fit(X, Y, epochs=1, learning_rate=-1, verbose=0)
    with pytest.raises(portanet.InputError, match="cannot be read as an array"):
        small_net().predict([["a", "b", "c", "d"]])
    with pytest.raises(portanet.InputError, match="unknown initialiser"):
        FCLayer(2, 2, init="gaussian-ish")


def test_errors_are_portanet_errors():
    for kind in (portanet.InputError, portanet.ShapeError, portanet.BackendError,
                 portanet.TrainingError, portanet.DataError, portanet.ModelFileError):
        assert issubclass(kind, portanet.PortanetError)


def test_dense_after_conv_without_flatten_is_refused():
    net = Network()
    net.add(portanet.Conv2D(1, 2, 3, padding="same", input_shape=(1, 5, 5)))
    with pytest.raises(portanet.ShapeError, match="Flatten"):
        net.add(FCLayer(5, 3))


def test_channels_last_images_get_the_nchw_hint():
    net = Network()
    net.add(portanet.Conv2D(1, 2, 3, input_shape=(1, 6, 6)))
    with pytest.raises(portanet.ShapeError, match="NCHW"):
        net.predict(np.zeros((2, 6, 6, 1)))
