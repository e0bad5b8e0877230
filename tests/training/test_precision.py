"""Precision policies (portanet.precision): 16-bit compute, float32 master weights, dynamic
loss scaling. On backends without the policy's dtype (NumPy, array-api-strict) the tests assert
the clear error instead."""

import numpy as np
import pytest

import portanet as pn
from portanet import (
    ActivationLayer,
    BatchNorm,
    Dropout,
    FCLayer,
    InputError,
    Layer,
    LayerNorm,
    Network,
)
from portanet.backend import cast, softmax, to_numpy
from portanet.layers.base import Pass
from portanet.models import causal_transformer, tutorial_mlp
from portanet.optimizers import SGD, Adam
from portanet.precision import POLICIES, LossScale

STEPS = 200  # training steps compared with float32
# A 16-bit policy's final loss after STEPS steps is within this fraction of float32's (the
# MLP's differed by about 1e-4 of it, the transformer's by 2 %)
LOSS_TOLERANCE = 0.05


def supports(backend, name):
    return POLICIES[name].compute in backend.library.half_dtypes


def mlp_data(samples=800):
    gen = np.random.default_rng(5)
    x = gen.normal(size=(samples, 16)).astype("float32")
    return x, np.eye(4)[np.argmax(x @ gen.normal(size=(16, 4)), axis=1)]


def sequence_data(samples=400, vocabulary=11, context=6):
    """Sequences counting up by 1 or 2 (mod ``vocabulary``): after the first token the step
    shows, so the loss falls well below log(vocabulary) but not to 0."""
    gen = np.random.default_rng(5)
    start = gen.integers(0, vocabulary, (samples, 1))
    stride = gen.integers(1, 3, (samples, 1))
    ids = (start + stride * np.arange(context + 1)) % vocabulary
    return ids[:, :-1], ids[:, 1:]


def model(kind, precision):
    pn.set_seed(7)
    if kind == "tutorial-mlp":
        net, optimizer, batch, data = tutorial_mlp((16,), 4), SGD(0.1), 16, mlp_data()
    else:  # sequence models: a transformer (tied: its output projection is the embedding's)
        net = (Network([pn.Embedding(11, 16), pn.LSTM(16, 16, return_sequences=True),
                        pn.Dense(16, 11)]) if kind == "lstm"
               else causal_transformer(11, 6, width=16, heads=2, blocks=1,
                                       tie_embeddings=kind == "tied-transformer"))
        net.use("sparse_softmax_crossentropy")
        net, optimizer, batch, data = net, Adam(3e-3), 8, sequence_data()
    net.precision = precision
    return net, optimizer, batch, data


def small_mlp(precision=None):
    pn.set_seed(3)
    net = Network([FCLayer(8, 16), ActivationLayer("tanh"), FCLayer(16, 2)], precision=precision)
    net.use("mse")
    return net


# -- choosing a policy -----------------------------------------------------------------------
@pytest.mark.backend_independent
@pytest.mark.parametrize("name", ["float16", "bfloat16", "mixed", 16, ["mixed_float16"]])
def test_an_unknown_policy_is_refused(name):
    with pytest.raises(InputError, match="precision must be one of 'mixed_bfloat16'"):
        Network(precision=name)


@pytest.mark.backend_independent
def test_a_16_bit_dtype_fails_at_once_pointing_to_the_policies():
    with pytest.raises(InputError, match="precision='mixed_float16'"):
        Network(dtype="float16")
    with pytest.raises(InputError, match="precision="):
        FCLayer(2, 3).astype("bfloat16")


@pytest.mark.backend_independent
def test_the_summary_names_the_policy():
    lines = []
    small_mlp("mixed_float16").summary(print_fn=lines.append)
    assert lines[0].endswith("dtype: float32   precision: mixed_float16")
    small_mlp().summary(print_fn=lines.append)
    assert lines[1].endswith("dtype: float32")


@pytest.mark.backend_independent
def test_a_policy_keeps_float32_weights():
    with pytest.raises(InputError, match="keeps float32 weights"):
        Network(dtype="float64", precision="mixed_bfloat16")
    net = small_mlp("mixed_bfloat16")
    net.layers[0].astype("float64")
    with pytest.raises(InputError, match=r"float32 master weights.*is float64"):
        net.fit(np.zeros((4, 8)), np.zeros((4, 2)), verbose=0)


@pytest.mark.backend_independent
def test_layers_in_the_stateful_forms_are_refused():
    class SelfUpdating:
        def forward_propagation(self, x):
            return x

        def backward_propagation(self, error, rate):
            return error

    class Stateful(Layer):  # keeps its call on itself (and would keep 16-bit copies)
        def forward(self, x, training=False):
            return x

        def backward(self, grad_output):
            return grad_output

    for layer in (SelfUpdating(), Stateful()):
        net = Network([FCLayer(2, 2), layer], precision="mixed_bfloat16")
        net.use("mse")
        with pytest.raises(InputError, match="needs layers written with apply: .*"):
            net.fit(np.zeros((4, 2)), np.zeros((4, 2)), verbose=0)
        with pytest.raises(InputError, match="needs layers written with apply"):
            net.predict(np.zeros((4, 2)))


@pytest.mark.parametrize("name", list(POLICIES))
def test_each_backend_runs_a_policy_or_names_those_that_do(backend, name):
    net = small_mlp(name)
    x, y = np.ones((4, 8), "float32"), np.zeros((4, 2), "float32")
    if supports(backend, name):
        history = net.fit(x, y, verbose=0, compile=False)
        assert np.isfinite(history.history["loss"][0])
        return
    able = " or ".join(n for n, lib in pn.backend.libraries.LIBRARIES.items()
                       if POLICIES[name].compute in lib.half_dtypes)
    for call in (lambda: net.fit(x, y, verbose=0), lambda: net.predict(x),
                 lambda: net.evaluate(x, y)):
        with pytest.raises(InputError, match=f"does not support.*select {able} "):
            call()


# -- what computes in which dtype --------------------------------------------------------------
def test_softmax_of_16_bit_arrays_sums_in_float32(backend):
    if not backend.library.half_dtypes:
        pytest.skip(f"{backend.name} has no 16-bit float dtype")
    values = np.random.default_rng(0).normal(size=(3, 500)) * 4
    for name in backend.library.half_dtypes:
        x = cast(backend.asarray(values, "float32"), name)
        wide = softmax(cast(x, "float32"))  # the same 16-bit values, in float32
        assert str(softmax(x).dtype).endswith(name)
        np.testing.assert_array_equal(to_numpy(cast(softmax(x), "float32")),
                                      to_numpy(cast(cast(wide, name), "float32")))


def test_layer_norm_runs_in_float32_under_a_policy(backend):
    if "bfloat16" not in backend.library.half_dtypes:
        pytest.skip(f"{backend.name} has no bfloat16 dtype")
    norm = LayerNorm(64)
    x = cast(backend.asarray(np.random.default_rng(1).normal(size=(5, 64)) + 50, "float32"),
             "bfloat16")  # 16-bit inputs; the mean is large, the spread small
    out = Pass.of([norm], compute="bfloat16").output([norm], x)
    wide = Pass.of([norm]).output([norm], cast(x, "float32"))
    assert str(out.dtype).endswith("bfloat16")
    np.testing.assert_array_equal(to_numpy(cast(out, "float32")),
                                  to_numpy(cast(cast(wide, "bfloat16"), "float32")))


# -- training ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["tutorial-mlp", "transformer", "tied-transformer", "lstm"])
def test_mixed_bfloat16_ends_near_float32(backend, kind):
    if not supports(backend, "mixed_bfloat16"):
        with pytest.raises(InputError, match="does not support"):
            model(kind, "mixed_bfloat16")[0].fit(*model(kind, None)[3], verbose=0)
        return
    results = {}
    for precision in (None, "mixed_bfloat16"):
        net, optimizer, batch, (x, y) = model(kind, precision)
        epochs = STEPS * batch // x.shape[0]
        history = net.fit(x, y, epochs=epochs, batch_size=batch, optimizer=optimizer,
                          shuffle=True, verbose=0, compile=backend.name == "jax")
        assert optimizer.iterations == STEPS
        results[precision] = history.history["loss"][0], net.evaluate(x, y)["loss"]
        for layer in pn.layers.base.walk(net.layers):  # the masters stay float32
            for name in layer.params:
                assert str(getattr(layer, name).dtype).endswith("float32")
    first, last = results[None]
    assert last < 0.7 * first  # float32 learned: the comparison says something
    assert abs(results["mixed_bfloat16"][1] - last) <= LOSS_TOLERANCE * last


def test_batch_norm_and_dropout_train_under_a_policy(backend):
    if not supports(backend, "mixed_bfloat16"):
        pytest.skip(f"{backend.name} has no bfloat16 dtype (the error: test above)")
    pn.set_seed(5)
    norm = BatchNorm(16)
    net = Network([FCLayer(8, 16), norm, Dropout(0.2), ActivationLayer("relu"), FCLayer(16, 2)],
                  precision="mixed_bfloat16")
    net.use("mse")
    x = np.random.default_rng(2).normal(size=(64, 8)).astype("float32")
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0], axis=1).astype("float32")
    losses = net.fit(x, y, epochs=10, batch_size=16, optimizer="adam", learning_rate=0.01,
                     verbose=0, compile=False).history["loss"]
    assert losses[-1] < 0.7 * losses[0]
    for name in ("running_mean", "running_var"):  # kept in float32, and updated
        statistic = to_numpy(getattr(norm, name))
        assert statistic.dtype == np.float32 and np.isfinite(statistic).all()
        assert not np.allclose(statistic, 0.0 if name == "running_mean" else 1.0)


def test_predict_and_evaluate_compute_under_the_policy_and_return_float32(backend):
    if not supports(backend, "mixed_bfloat16"):
        pytest.skip(f"{backend.name} has no bfloat16 dtype (the error: test above)")
    x = np.random.default_rng(2).normal(size=(6, 8)).astype("float32")
    full, mixed = small_mlp(), small_mlp("mixed_bfloat16")
    out, expected = mixed.predict(x), full.predict(x)
    assert out.dtype == np.float32
    assert not np.array_equal(out, expected)  # computed in bfloat16 ...
    np.testing.assert_allclose(out, expected, rtol=0.05, atol=0.02)  # ... to its precision
    loss = mixed.evaluate(x, np.zeros((6, 2)))["loss"]
    assert loss == pytest.approx(float(np.mean(out ** 2)), rel=1e-6)


# -- loss scaling ------------------------------------------------------------------------------
def overflowing(compile=False):
    """A mixed_float16 network trained one batch an epoch on targets so large that its scaled
    gradients overflow float16 until the scale has come down: ``(net, history, weights before,
    weights after the first epoch)``."""
    net = small_mlp("mixed_float16")
    x = np.random.default_rng(4).normal(size=(16, 8)).astype("float32")
    y = np.full((16, 2), 1000.0, "float32")
    before = net.layers[0].get_weights()
    first = net.fit(x, y, epochs=1, batch_size=16, optimizer=(optimizer := Adam(0.01)),
                    verbose=0, compile=compile)
    after_first = net.layers[0].get_weights()
    history = net.fit(x, y, epochs=20, batch_size=16, optimizer=optimizer, verbose=0,
                      compile=compile, initial_epoch=1)
    history.history = {key: first.history[key] + values
                       for key, values in history.history.items()}
    history.step_traces += first.step_traces
    return net, history, before, after_first


def test_float16_overflow_lowers_the_scale_and_skips_the_step(backend):
    if not supports(backend, "mixed_float16"):
        with pytest.raises(InputError, match="does not support"):
            overflowing()
        return
    net, history, before, after_first = overflowing()
    skipped, scales = history.history["skipped_steps"], history.history["loss_scale"]
    assert skipped[0] == 1 and scales[0] == LossScale.INITIAL / 2  # skipped: nothing changed
    for mine, theirs in zip(after_first, before):
        np.testing.assert_array_equal(mine, theirs)
    assert sum(skipped) < len(skipped)  # then the scale came down far enough to train
    assert min(scales) < LossScale.INITIAL / 2 and scales[-1] == min(scales)
    assert history.history["loss"][-1] < history.history["loss"][0]
    for layer in net.layers:
        for weights in layer.get_weights():
            assert weights.dtype == np.float32 and np.isfinite(weights).all()


def test_loss_scaling_compiled_equals_eager(backend):
    if backend.library.compiler is None or not supports(backend, "mixed_float16"):
        pytest.skip(f"{backend.name} has no compiler or no float16")
    eager, compiled = overflowing(compile=False), overflowing(compile=True)
    assert compiled[1].compiled != "eager"
    assert compiled[1].step_traces == 1  # not again as the scale changed
    assert compiled[1].history["skipped_steps"] == eager[1].history["skipped_steps"]
    assert compiled[1].history["loss_scale"] == eager[1].history["loss_scale"]
    for mine, theirs in zip(compiled[0].layers[0].get_weights(), eager[0].layers[0].get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-3, atol=1e-5)


def test_the_scale_doubles_after_enough_good_steps(backend):
    interval, scale = LossScale.GROWTH_INTERVAL, 1024.0
    state = backend.asarray([scale, interval - 2, 3.0], "float32")
    yes, no = (backend.xp.asarray(flag, device=backend.device) for flag in (True, False))
    assert to_numpy(LossScale.next(state, yes)).tolist() == [scale, interval - 1, 3]
    state = LossScale.next(state, yes)
    assert to_numpy(LossScale.next(state, yes)).tolist() == [2 * scale, 0, 3]
    assert to_numpy(LossScale.next(state, no)).tolist() == [scale / 2, 0, 4]


def test_no_loss_scale_entries_without_loss_scaling(backend):
    if not supports(backend, "mixed_bfloat16"):
        pytest.skip(f"{backend.name} has no bfloat16 dtype (the error: test above)")
    history = small_mlp("mixed_bfloat16").fit(np.ones((4, 8)), np.ones((4, 2)), verbose=0)
    assert list(history.history) == ["loss"]


# -- saving ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(POLICIES))
def test_saved_networks_keep_float32_weights_and_the_policy(backend, tmp_path, name):
    net = small_mlp(name)
    x = np.random.default_rng(6).normal(size=(5, 8)).astype("float32")
    path = net.save(tmp_path / "net.npz")
    loaded = pn.load(path)
    assert loaded.precision == name
    assert all(w.dtype == np.float32 for layer in loaded.layers for w in layer.get_weights())
    with np.load(path) as arrays:
        stored = [arrays[key].dtype for key in arrays if arrays[key].dtype.kind == "f"]
    assert stored == [np.float32] * 4
    if supports(backend, name):
        np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    else:  # loaded anywhere; predicting needs the policy's dtype, or no policy
        with pytest.raises(InputError, match="does not support"):
            loaded.predict(x)
        loaded.precision = None
        assert loaded.predict(x).dtype == np.float32


def test_a_training_state_keeps_the_loss_scale(backend, tmp_path):
    if not supports(backend, "mixed_float16"):
        pytest.skip(f"{backend.name} has no float16 (the error: tests above)")
    net, optimizer = small_mlp("mixed_float16"), Adam(0.01)
    x = np.random.default_rng(4).normal(size=(16, 8)).astype("float32")
    net.fit(x, np.full((16, 2), 1000.0, "float32"), epochs=2, batch_size=16,
            optimizer=optimizer, verbose=0)
    scale = to_numpy(optimizer.loss_scale).tolist()
    assert scale[0] < LossScale.INITIAL and scale[2] >= 1  # it came down, skipping steps
    path = pn.save_training(tmp_path / "state.npz", net, optimizer, 2)
    _, restored, epoch = pn.load_training(path)
    assert epoch == 2 and to_numpy(restored.loss_scale).tolist() == scale
    pn.save_training(path, net, Adam(0.01), 0)  # no loss scale yet: none saved, none restored
    assert pn.load_training(path)[1].loss_scale is None
