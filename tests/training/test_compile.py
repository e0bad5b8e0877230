"""The training step compiled (jax.jit on JAX) against the same step run eagerly, on every
backend; compile settings, fallbacks, and optimizer state that belongs to its network."""

import functools
import threading
import warnings

import numpy as np
import pytest
from helpers import assert_backend_array

import portanet
from portanet import (
    ActivationLayer,
    AvgPool1D,
    BatchNorm,
    CompileWarning,
    Conv1D,
    Conv2D,
    Dropout,
    FCLayer,
    Flatten,
    InputError,
    Layer,
    MaxPool1D,
    MaxPool2D,
    Network,
)
from portanet.backend import compilers, to_numpy, writes_into
from portanet.models import causal_transformer
from portanet.optimizers import SGD, Adam, cosine_decay
from portanet.training import cache
from portanet.training import step as step_module

STEPS = 20
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


def tutorial_network(dtype):
    net = Network(dtype=dtype)
    for n_in, n_out in ((4, 6), (6, 3)):
        net.add(FCLayer(n_in, n_out, init="uniform"))
        net.add(ActivationLayer("tanh"))
    net.use("mse")
    return net, SGD(0.1), 1


def modern_mlp(dtype):
    net = Network(dtype=dtype)
    net.add(FCLayer(4, 16, init="he_uniform"))
    net.add(ActivationLayer("relu"))
    net.add(FCLayer(16, 8, init="he_uniform"))
    net.add(ActivationLayer("relu"))
    net.add(FCLayer(8, 3))
    net.use("softmax_crossentropy")
    return net, Adam(0.01, schedule=cosine_decay(0.01, STEPS)), 8


def cnn(dtype):
    net = Network(dtype=dtype)
    net.add(Conv2D(1, 4, 3, padding="same", input_shape=(1, 6, 6)))
    net.add(ActivationLayer("relu"))
    net.add(BatchNorm(4))  # after the ReLU: before it, BatchNorm cancels the conv's bias, whose
    # gradient is then rounding noise that Adam's normalised steps turn into unequal weights
    net.add(MaxPool2D(2))
    net.add(Flatten())
    net.add(Dropout(0.3))
    net.add(FCLayer(36, 3))
    net.use("softmax_crossentropy")
    return net, Adam(0.01), 8


def cnn1d(dtype):
    """1-D convolutions (same padding and dilation; valid with a stride) and pools on (N, 2, 12)
    sequences."""
    net = Network(dtype=dtype)
    net.add(Conv1D(2, 4, 3, padding="same", dilation=2, input_shape=(2, 12)))
    net.add(ActivationLayer("relu"))
    net.add(MaxPool1D(2))
    net.add(Conv1D(4, 4, 3, stride=2))
    net.add(AvgPool1D(2, stride=1))
    net.add(Flatten())
    net.add(FCLayer(4, 3))
    net.use("softmax_crossentropy")
    return net, Adam(0.01), 8


def transformer(dtype):
    net = causal_transformer(7, 6, width=16, heads=2, blocks=1, dtype=dtype)
    net.use("sparse_softmax_crossentropy")
    return net, Adam(3e-4, clip_norm=1.0), 8  # the benchmark's recipe


MODELS = {"tutorial": tutorial_network, "modern-mlp": modern_mlp, "cnn-batchnorm-dropout": cnn,
          "cnn1d": cnn1d, "transformer": transformer}
SHAPES = {"cnn-batchnorm-dropout": (1, 6, 6), "cnn1d": (2, 12)}  # per sample; others: (4,)


def data(model, samples):
    gen = np.random.default_rng(3)
    if model == "transformer":
        ids = gen.integers(0, 7, (samples, 7))
        return ids[:, :-1], ids[:, 1:]
    x = gen.normal(size=(samples, *SHAPES.get(model, (4,))))
    labels = gen.integers(0, 3, samples)
    return x, np.eye(3)[labels]


def train(model, dtype, compile):
    """The model after STEPS steps (shuffled batches), its history and optimizer."""
    portanet.set_seed(7)
    net, optimizer, batch = MODELS[model](dtype)
    x, y = data(model, STEPS * batch // 2)  # two epochs of STEPS / 2 steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)  # backends without a compiler say so
        history = net.fit(x, y, epochs=2, batch_size=batch, shuffle=True, optimizer=optimizer,
                          verbose=0, compile=compile)
    return net, history, optimizer


def has_compiler(backend):
    return backend.library.compiler is not None


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("model", MODELS)
def test_compiled_step_equals_eager_step(model, dtype, backend):
    eager, eager_history, eager_optimizer = train(model, dtype, compile=False)
    compiled, history, optimizer = train(model, dtype, compile=True)
    assert eager_history.compiled == "eager"
    assert history.compiled == (backend.library.compiler.name
                                if has_compiler(backend) else "eager")
    assert optimizer.iterations == eager_optimizer.iterations == STEPS
    tolerance = TOLERANCE[dtype]
    np.testing.assert_allclose(history.history["loss"], eager_history.history["loss"],
                               rtol=tolerance)
    for mine, theirs in zip(compiled.layers, eager.layers):
        for name in mine.params + mine.buffers:
            assert_backend_array(getattr(mine, name), backend, dtype)
            np.testing.assert_allclose(to_numpy(getattr(mine, name)),
                                       to_numpy(getattr(theirs, name)), rtol=tolerance,
                                       atol=tolerance, err_msg=f"{mine!r}.{name}")
    for k in range(optimizer.state_buffers):  # compiled: one array per parameter; eager: flat
        mine = eager_optimizer.layout.relaid([group[k] for group in optimizer.state],
                                             optimizer.layout)
        for a, b in zip(mine, [group[k] for group in eager_optimizer.state]):
            np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=tolerance, atol=tolerance)
    x, _ = data(model, 5)
    np.testing.assert_allclose(compiled.predict(x), eager.predict(x), rtol=tolerance,
                               atol=tolerance)


@pytest.mark.parametrize("compile", ["auto", True])
def test_compiled_step_is_traced_once_per_batch_shape(compile, backend):
    cache.clear_shared()  # compiled steps are shared by networks alike: start afresh
    net, optimizer, _ = modern_mlp("float32")
    x, y = data("modern-mlp", 50)  # batches of 16, 16, 16 and 2: two shapes
    fit = functools.partial(fit_quietly, x=x, y=y, batch_size=16, shuffle=True, compile=compile)
    history = fit(net, epochs=3, optimizer=optimizer)
    steps = 3 * 4
    traces = 2 if history.compiled != "eager" else steps
    assert history.compiled == ("eager" if compile == "auto" and not auto_compiles(backend)
                                or not has_compiler(backend) else
                                backend.library.compiler.name)
    assert history.step_traces == traces
    again = fit(net, epochs=1, optimizer=optimizer)
    assert again.step_traces == (0 if history.compiled != "eager" else 4)  # cached across fits
    twin, optimizer, _ = modern_mlp("float32")  # another network of the same layers: shared
    shared = fit(twin, epochs=1, optimizer=optimizer)
    assert shared.step_traces == (0 if history.compiled != "eager" else 4)


def fit_quietly(net, x, y, **settings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)  # backends without a compiler say so
        return net.fit(x, y, verbose=0, **settings)


def auto_compiles(backend):
    return (backend.name, compilers.device_kind(backend)) in compilers.AUTO


def test_networks_alike_share_one_compiled_prediction_with_their_own_weights(backend,
                                                                           monkeypatch):
    cache.clear_shared()
    x, _ = data("modern-mlp", 8)
    portanet.set_seed(1)
    first = modern_mlp("float32")[0]
    portanet.set_seed(2)
    second = modern_mlp("float32")[0]
    predictions = [first.predict(x), second.predict(x)]
    compiled = [key for key in cache.SHARED if key[0][0] == "inference-run"]
    assert len(compiled) == (1 if auto_compiles(backend) else 0)
    ours = {id(layer) for layer in first.layers + second.layers}  # made from neither network
    assert not any(id(layer) in ours for architecture in cache.ARCHITECTURES.values()
                   for layer in architecture.layers)
    monkeypatch.setenv("PORTANET_COMPILE", "0")  # each network's own forward, eagerly
    for net, predicted in zip((first, second), predictions):
        np.testing.assert_allclose(predicted, net.predict(x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(predictions[0], predictions[1])


def test_a_network_trains_with_its_own_loss_after_one_alike_without_a_loss_predicted(backend):
    """The shared architecture comes from the network that compiled first (here one without a
    loss): the step of another network alike is still made with that network's loss."""
    cache.clear_shared()
    x, y = data("modern-mlp", 16)
    Network(modern_mlp("float32")[0].layers).predict(x)  # no loss
    net, optimizer, _ = modern_mlp("float32")
    history = net.fit(x, y, epochs=1, batch_size=8, optimizer=optimizer, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_compiled_prediction_is_traced_once_per_batch_shape(backend, monkeypatch):
    net = modern_mlp("float64")[0]
    x, _ = data("modern-mlp", 10)
    monkeypatch.setenv("PORTANET_COMPILE", "0")
    expected = net.predict(x)
    cache.clear_shared()
    monkeypatch.setenv("PORTANET_COMPILE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)  # backends without a compiler say so
        outputs = [net.predict(x), net.predict(x), net.predict(x[:3])]
    for output in outputs:
        np.testing.assert_allclose(output, expected[:len(output)], rtol=1e-12, atol=1e-14)
    compiled = [run for key, run in cache.SHARED.items() if key[0][0] == "inference-run"]
    assert len(compiled) == has_compiler(backend)
    if compiled:  # the Python forward ran once per batch shape
        assert compiled[0].eager.traces == 2 and not compiled[0].failed


def test_threads_that_first_predict_at_once_compile_once(backend, monkeypatch):
    net = modern_mlp("float64")[0]
    x, _ = data("modern-mlp", 10)
    expected = net.predict(x)
    cache.clear_shared()
    monkeypatch.setenv("PORTANET_COMPILE", "1")
    outputs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)  # backends without a compiler say so
        workers = [threading.Thread(target=lambda: outputs.append(net.predict(x)))
                   for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert len(outputs) == 4
    for output in outputs:
        np.testing.assert_allclose(output, expected, rtol=1e-12, atol=1e-14)
    compiled = [run for key, run in cache.SHARED.items() if key[0][0] == "inference-run"]
    if compiled:  # compiled without a failure; torch.compile (portanet's tracing): once
        assert not compiled[0].failed
        assert compiled[0].eager.traces == 1 or backend.name != "torch"


def test_backend_auto_compiles_only_where_measured_faster(backend):
    history = train("tutorial", "float64", compile="auto")[1]
    expected = (backend.name, compilers.device_kind(backend)) in compilers.AUTO
    assert (history.compiled != "eager") == expected


class HostNumberLayer(Layer):
    """Scales by a number it reads back to the host: fine eagerly, not traceable by jax.jit."""

    def apply(self, state, x, run):
        scale = 1.0 + 0.0 * float(to_numpy(x).sum())
        return x * scale, lambda grad_output, need_input=True: (grad_output * scale, {})


def test_a_step_that_cannot_compile_runs_eagerly_after_one_warning(backend):
    def fit(compile):
        portanet.set_seed(1)
        net, optimizer, batch = modern_mlp("float64")
        net.layers.insert(1, HostNumberLayer())
        x, y = data("modern-mlp", 24)
        history = net.fit(x, y, epochs=2, batch_size=batch, optimizer=optimizer, verbose=0,
                          compile=compile)
        return net, history

    eager, _ = fit(False)
    compilers.WARNED.clear()
    with pytest.warns(CompileWarning) as caught:
        compiled, history = fit(True)
    assert len(caught) == 1
    assert "eager" in str(caught[0].message)
    assert history.compiled == "eager"
    x, _ = data("modern-mlp", 4)
    with warnings.catch_warnings():  # compiling predict fails the same way (said once)
        warnings.simplefilter("ignore", CompileWarning)
        np.testing.assert_allclose(compiled.predict(x), eager.predict(x), rtol=1e-12)


def test_compile_settings_are_checked(monkeypatch):
    net, _, _ = modern_mlp("float32")
    x, y = data("modern-mlp", 8)
    with pytest.raises(InputError, match="compile must be True, False or 'auto'"):
        net.fit(x, y, epochs=1, compile="yes")
    monkeypatch.setenv("PORTANET_COMPILE", "sometimes")
    with pytest.raises(InputError, match="PORTANET_COMPILE must be auto, 1 or 0"):
        net.fit(x, y, epochs=1, verbose=0)
    monkeypatch.setenv("PORTANET_COMPILE", "0")  # one batch of 8, as the eager MLP runs above
    assert net.fit(x, y, epochs=1, batch_size=8, verbose=0).compiled == "eager"


def test_tutorial_style_layers_run_eagerly_when_compiling_is_asked(backend):
    class SelfUpdating(FCLayer):
        def forward_propagation(self, input_data):
            return self.forward(input_data, training=True)

        def backward_propagation(self, output_error, learning_rate):
            return Layer.backward_propagation(self, output_error, learning_rate)

    net = Network()
    net.add(SelfUpdating(2, 1))
    net.use("mse")
    compilers.WARNED.clear()
    with pytest.warns(CompileWarning, match="updates its own weights"):
        history = net.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=1, verbose=0, compile=True)
    assert history.compiled == "eager"


def test_layers_keep_no_arrays_of_the_step(backend):
    net, optimizer, batch = cnn("float32")
    before = {id(layer): set(vars(layer)) for layer in net.layers}
    x, y = data("cnn-batchnorm-dropout", 16)
    net.fit(x, y, epochs=1, batch_size=batch, optimizer=optimizer, verbose=0)
    for layer in net.layers:  # no tracer or batch array left behind: only the state it had
        assert set(vars(layer)) - before[id(layer)] <= {"training", "scale"}, layer
        for name in layer.params + layer.buffers:
            assert_backend_array(getattr(layer, name), backend, "float32")


def test_eager_gradients_written_in_place_equal_the_pure_steps(backend):
    """Layers that write their gradients into the eager step's flat gradient buffer (FCLayer on
    NumPy) and layers that do not (Conv2D, BatchNorm) give the gradients of the pure step, call
    after call (the buffer is reused)."""
    portanet.set_seed(5)
    net, optimizer, batch = cnn("float64")
    eager = step_module.TrainStep(net, optimizer, eager=True)
    pure = step_module.TrainStep(net, optimizer, eager=False)
    params = eager.layout.gather()
    buffers = [getattr(layer, name) for layer, name in eager.buffers]
    first = None
    for seed in (1, 2):
        x, y = data("cnn-batchnorm-dropout", batch)
        x = np.roll(x, seed, axis=0)  # another batch each call
        batch_arrays = tuple(backend.asarray(a, "float64") for a in (x, y))
        noise = eager.draw(x.shape[1:], batch, "float64")  # the same dropout masks for both
        grads, _, _ = eager.gradients(params, buffers, batch_arrays, None, noise)
        got = [to_numpy(g).copy() for g in grads]
        expected, _, _ = pure.gradients(params, buffers, batch_arrays, None, noise)
        for mine, theirs in zip(got, expected):
            np.testing.assert_allclose(mine, to_numpy(theirs), rtol=1e-12, atol=1e-14)
        first = first or grads
        if writes_into(params[0]):  # the same buffer each call, the FCLayer's places in it
            assert grads[0] is first[0]
            places = eager._places.places[id(net.layers[-1])]
            assert all(np.shares_memory(to_numpy(grads[0]), to_numpy(place))
                       for place in places.values())


# -- optimizer state belongs to its network ----------------------------------------------------
def test_an_optimizer_is_not_shared_between_networks():
    x, y = data("modern-mlp", 16)
    first, optimizer, _ = modern_mlp("float32")
    first.fit(x, y, epochs=1, batch_size=8, optimizer=optimizer, verbose=0)
    wider = Network()
    wider.add(FCLayer(4, 32))
    wider.add(FCLayer(32, 3))
    wider.use("softmax_crossentropy")
    twin, _, _ = modern_mlp("float32")  # the same shapes: silently reusing moments is wrong too
    for other in (wider, twin):
        with pytest.raises(InputError, match="another network's parameters.*optimizer.reset"):
            other.fit(x, y, epochs=1, batch_size=8, optimizer=optimizer, verbose=0)
    optimizer.reset()
    assert optimizer.iterations == 0
    twin.fit(x, y, epochs=1, batch_size=8, optimizer=optimizer, verbose=0)
    assert optimizer.iterations == 2
    first_again = first.fit  # and the first network's state is gone with the reset
    with pytest.raises(InputError, match="another network's parameters"):
        first_again(x, y, epochs=1, batch_size=8, optimizer=optimizer, verbose=0)


def test_optimizer_state_continues_across_fits_of_one_network(backend):
    x, y = data("modern-mlp", 32)
    portanet.set_seed(5)
    once, optimizer, _ = modern_mlp("float64")
    once.fit(x, y, epochs=2, batch_size=8, optimizer=optimizer, verbose=0)
    portanet.set_seed(5)
    twice, optimizer, _ = modern_mlp("float64")
    twice.fit(x, y, epochs=1, batch_size=8, optimizer=optimizer, verbose=0)
    twice.fit(x, y, epochs=1, batch_size=8, optimizer=optimizer, verbose=0)
    assert optimizer.iterations == 8
    np.testing.assert_allclose(twice.predict(x), once.predict(x), rtol=1e-10)
