"""Bad input gets a clear portanet error that names the problem and the fix."""

import warnings

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
    with pytest.raises(portanet.InputError, match="integer >= 1"):
        FCLayer(0, 3)
    with pytest.raises(portanet.InputError, match="learning_rate must be a positive"):
        small_net().fit(X, Y, epochs=1, learning_rate=-1, verbose=0)
    with pytest.raises(portanet.InputError, match="holds strings"):
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


def test_network_takes_a_list_of_layers():
    layers = [FCLayer(4, 3), ActivationLayer("tanh"), FCLayer(3, 2)]
    net = Network(layers)
    assert net.layers == layers
    with pytest.raises(portanet.ShapeError, match="cannot follow"):
        Network([FCLayer(4, 3), FCLayer(5, 2)])
    with pytest.raises(portanet.InputError, match=r"Network\(dtype='float64'\)"):
        Network("float64")
    with pytest.raises(portanet.InputError, match=r"list of layers, got 'tanh'.*Network\(\["):
        Network("tanh")


def test_one_sample_given_as_a_1d_array_is_named():
    net = small_net()
    with pytest.raises(portanet.ShapeError, match=r"one sample of 4 values.*reshape\(1, -1\)"):
        net.predict(np.zeros(4))
    assert net.predict(np.zeros(4).reshape(1, -1)).shape == (1, 2)


def test_a_network_on_another_backend_is_named_and_can_be_moved(backend):
    net = small_net()
    other = "array_api_strict" if backend.name != "array_api_strict" else "numpy"  # in .[test]
    portanet.set_backend(other)
    with pytest.raises(portanet.InputError, match=r"selected backend is .*net\.to_backend\(\)"):
        net.fit(X, Y, epochs=1, verbose=0)
    with pytest.raises(portanet.InputError, match="to_backend"):
        net.predict(X)
    portanet.set_backend(backend.name)  # (the run's own device comes with it from the env)
    expected = net.predict(X)
    portanet.set_backend(other)
    np.testing.assert_allclose(net.to_backend().predict(X), expected, rtol=1e-6)
    net.fit(X, Y, epochs=1, verbose=0)


def classifier():
    portanet.set_seed(2)
    net = Network([FCLayer(4, 8), ActivationLayer("tanh"), FCLayer(8, 3)])
    net.use("softmax_crossentropy")
    return net


def test_integer_class_labels_score_as_one_hot_everywhere(backend):
    gen = np.random.default_rng(0)
    x, labels = gen.normal(size=(30, 4)), gen.integers(0, 3, 30)
    one_hot = np.eye(3)[labels]
    nets = {}
    for kind, y in (("labels", labels), ("column", labels[:, None]), ("one-hot", one_hot)):
        net = classifier()
        history = net.fit(x, y, epochs=2, batch_size=8, verbose=0,
                          validation_data=(x[:10], y[:10]))
        nets[kind] = (net, history)
    reference, history = nets["one-hot"]
    for kind in ("labels", "column"):
        net, other = nets[kind]
        np.testing.assert_allclose(net.predict(x), reference.predict(x), rtol=1e-6)
        assert other.history["val_accuracy"] == history.history["val_accuracy"]
        assert net.evaluate(x, labels) == pytest.approx(reference.evaluate(x, one_hot))
    with pytest.raises(portanet.InputError, match=r"labels must lie in \[0, num_classes\)"):
        reference.evaluate(x, labels + 1)


def test_evaluate_checks_targets_like_fit():
    net = classifier()
    with pytest.raises(portanet.ShapeError, match="one target per output"):
        net.evaluate(np.zeros((5, 4)), np.zeros((5, 1)))  # float (N, 1): not class labels


@pytest.mark.parametrize("loss", ["categorical_crossentropy", "binary_crossentropy"])
def test_a_probability_loss_on_raw_scores_is_refused_when_fit_starts(loss):
    net = classifier()  # its last layer is an FCLayer: logits
    net.use(loss)
    y = np.eye(3)[np.arange(6) % 3]
    for call in (lambda: net.fit(X, y, epochs=1, verbose=0), lambda: net.evaluate(X, y)):
        with pytest.raises(portanet.InputError, match="raw scores.*softmax_crossentropy"):
            call()
    net.add(ActivationLayer("softmax"))
    assert net.fit(X, y, epochs=1, verbose=0).epoch == [1]


class Doubled(portanet.Layer):
    """A user layer whose backward leaves a bias gradient of the wrong (broadcastable) shape."""

    params = ("scale", "bias")

    def __init__(self):
        super().__init__()
        backend = portanet.get_backend()
        self.scale = backend.asarray(np.ones((1, 3)), "float32")
        self.bias = backend.asarray(np.zeros((1, 3)), "float32")

    def forward(self, x, training=False):
        self.input = x
        return x * self.scale + self.bias

    def backward(self, grad_output):
        xp = portanet.backend.namespace(grad_output)
        self.grads = {"scale": xp.sum(grad_output * self.input, axis=0, keepdims=True),
                      "bias": xp.sum(grad_output)}  # a scalar, not (1, 3)
        return grad_output * self.scale


@pytest.mark.parametrize("compile", [False, True])
def test_a_gradient_of_the_wrong_shape_is_named(backend, compile):
    net = Network([FCLayer(4, 3), Doubled()])
    net.use("mse")
    before = [layer.get_weights() for layer in net.layers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", portanet.CompileWarning)  # backends without a compiler
        with pytest.raises(portanet.ShapeError, match=r"Doubled\(\).*'bias' of shape \(1, 3\)"):
            net.fit(np.ones((8, 4)), np.ones((8, 3)), epochs=1, batch_size=4, verbose=0,
                    compile=compile)
    for layer, weights in zip(net.layers, before):  # nothing was updated
        for now, then in zip(layer.get_weights(), weights):
            np.testing.assert_array_equal(now, then)
