"""Optimizers on the backend under test, against plain NumPy versions of their update rules."""

import functools
import math

import numpy as np
import pytest
from helpers import assert_backend_array, on_backend

import portanet
from portanet import FCLayer, InputError, Network
from portanet.activations import tanh, tanh_prime
from portanet.backend import to_numpy
from portanet.layers.parameters import ParameterLayout
from portanet.losses import mse, mse_prime
from portanet.optimizers import (
    SGD,
    Adam,
    AdamW,
    RMSprop,
    cosine_decay,
    exponential_decay,
    get,
    step_decay,
)

SHAPES = {"w": (3, 4), "b": (1, 4)}
STEPS = 6


class FakeLayer:
    """Just what ``Optimizer.step`` reads: parameter attributes and a ``grads`` dict."""

    def __init__(self, **params):
        self.__dict__.update(params)
        self.grads = {}


def problem(seed=0):
    """Initial NumPy parameters and, per step, one NumPy gradient for each of them."""
    gen = np.random.default_rng(seed)
    params = [gen.normal(size=shape) for shape in SHAPES.values()]
    grads = [[gen.normal(size=shape) for shape in SHAPES.values()] for _ in range(STEPS)]
    return params, grads


def run(optimizer, params, grads, dtype="float64"):
    """Step ``optimizer`` over backend copies of ``params``; the backend params after each step."""
    layer = FakeLayer(**{name: on_backend(p, dtype) for name, p in zip(SHAPES, params)})
    slots = [(layer, name) for name in SHAPES]
    history = []
    for step_grads in grads:
        layer.grads = {name: on_backend(g, dtype) for name, g in zip(SHAPES, step_grads)}
        optimizer.step(slots)
        history.append([getattr(layer, name) for name in SHAPES])
    return history


# -- NumPy references: each returns the parameters after every step ---------------------------
def sgd_reference(params, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    params = [p.copy() for p in params]
    velocity = [np.zeros_like(p) for p in params]
    history = []
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            g = g + weight_decay * params[i]
            if momentum:
                velocity[i] = momentum * velocity[i] + g
                g = g + momentum * velocity[i] if nesterov else velocity[i]
            params[i] = params[i] - lr * g
        history.append([p.copy() for p in params])
    return history


def rmsprop_reference(params, grads, lr, rho=0.9, eps=1e-7, weight_decay=0.0):
    params = [p.copy() for p in params]
    square = [np.zeros_like(p) for p in params]
    history = []
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            g = g + weight_decay * params[i]
            square[i] = rho * square[i] + (1 - rho) * g**2
            params[i] = params[i] - lr * g / (np.sqrt(square[i]) + eps)
        history.append([p.copy() for p in params])
    return history


def adam_reference(params, grads, lr, b1=0.9, b2=0.999, eps=1e-7, weight_decay=0.0,
                   decoupled=False):
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    history = []
    for t, step_grads in enumerate(grads, 1):
        for i, g in enumerate(step_grads):
            if decoupled:
                params[i] = params[i] * (1 - lr * weight_decay)
            else:
                g = g + weight_decay * params[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g**2
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            params[i] = params[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
        history.append([p.copy() for p in params])
    return history


CASES = {
    "sgd": (lambda: SGD(0.1), functools.partial(sgd_reference, lr=0.1)),
    "sgd-momentum": (lambda: SGD(0.05, momentum=0.9),
                     functools.partial(sgd_reference, lr=0.05, momentum=0.9)),
    "sgd-nesterov": (lambda: SGD(0.05, momentum=0.8, nesterov=True),
                     functools.partial(sgd_reference, lr=0.05, momentum=0.8, nesterov=True)),
    "sgd-weight-decay": (lambda: SGD(0.05, momentum=0.5, weight_decay=0.1),
                         functools.partial(sgd_reference, lr=0.05, momentum=0.5,
                                           weight_decay=0.1)),
    "rmsprop": (lambda: RMSprop(0.01), functools.partial(rmsprop_reference, lr=0.01)),
    "rmsprop-custom": (lambda: RMSprop(0.02, rho=0.5, epsilon=1e-3, weight_decay=0.2),
                       functools.partial(rmsprop_reference, lr=0.02, rho=0.5, eps=1e-3,
                                         weight_decay=0.2)),
    "adam": (lambda: Adam(0.01), functools.partial(adam_reference, lr=0.01)),
    "adam-custom": (lambda: Adam(0.02, beta_1=0.5, beta_2=0.9, epsilon=1e-4),
                    functools.partial(adam_reference, lr=0.02, b1=0.5, b2=0.9, eps=1e-4)),
    "adam-weight-decay": (lambda: Adam(0.01, weight_decay=0.1),
                          functools.partial(adam_reference, lr=0.01, weight_decay=0.1)),
    "adamw": (lambda: AdamW(0.01), functools.partial(adam_reference, lr=0.01,
                                                     weight_decay=0.01, decoupled=True)),
    "adamw-strong": (lambda: AdamW(0.05, weight_decay=0.3),
                     functools.partial(adam_reference, lr=0.05, weight_decay=0.3,
                                       decoupled=True)),
}


@pytest.mark.parametrize("case", CASES)
def test_update_matches_numpy_reference(case, backend):
    make, reference = CASES[case]
    params, grads = problem()
    optimizer = make()
    got = run(optimizer, params, grads)
    for step, (got_step, want_step) in enumerate(zip(got, reference(params, grads))):
        for name, g, w in zip(SHAPES, got_step, want_step):
            assert_backend_array(g, backend, "float64")
            np.testing.assert_allclose(to_numpy(g), w, rtol=1e-12, atol=1e-12,
                                       err_msg=f"{case}: {name} after step {step + 1}")
    assert optimizer.iterations == STEPS
    assert len(optimizer.state) == 1  # one flat buffer per dtype: one group here
    assert len(optimizer.state[0]) == optimizer.state_buffers


def test_adamw_decay_is_not_adam_l2():
    params, grads = problem()
    l2 = to_numpy(run(Adam(0.05, weight_decay=0.3), params, grads)[-1][0])
    decoupled = to_numpy(run(AdamW(0.05, weight_decay=0.3), params, grads)[-1][0])
    assert not np.allclose(l2, decoupled)


@pytest.mark.parametrize("case", CASES)
def test_given_arrays_are_never_mutated(case):
    """Optimizer.step leaves the layers' arrays and gradients as they were (it updates copies,
    and its own state, which it may overwrite)."""
    params, grads = problem()
    layer = FakeLayer(w=on_backend(params[0]), b=on_backend(params[1]))
    originals = {name: getattr(layer, name) for name in SHAPES}
    copies = {name: np.array(to_numpy(value)) for name, value in originals.items()}
    optimizer = CASES[case][0]()
    for step_grads in grads:
        layer.grads = {name: on_backend(g) for name, g in zip(SHAPES, step_grads)}
        given = dict(layer.grads)
        optimizer.step([(layer, name) for name in SHAPES])
        for name, g in zip(SHAPES, step_grads):
            np.testing.assert_array_equal(to_numpy(given[name]), g)
    for name, value in originals.items():
        assert getattr(layer, name) is not value
        np.testing.assert_array_equal(to_numpy(value), copies[name])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ["sgd-nesterov", "rmsprop", "adam", "adamw"])
def test_results_and_state_stay_on_the_backend(case, dtype, backend):
    params, grads = problem()
    optimizer = CASES[case][0]()
    for step in run(optimizer, params, grads, dtype):
        for array in step:
            assert_backend_array(array, backend, dtype)
    for arrays in optimizer.state:
        for array in arrays:
            assert_backend_array(array, backend, dtype)


def test_schedule_sets_the_step_size():
    optimizer = SGD(1.0, schedule=step_decay(0.1, 0.5, every=2))
    layer = FakeLayer(w=on_backend(np.zeros((1, 2))))
    layer.grads = {"w": on_backend(np.ones((1, 2)))}
    rates, values = [], []
    for _ in range(5):
        rates.append(optimizer.current_learning_rate)
        optimizer.step([(layer, "w")])
        values.append(float(to_numpy(layer.w)[0, 0]))
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.05, 0.05, 0.025])
    np.testing.assert_allclose(np.diff([0.0, *values]), [-0.1, -0.1, -0.05, -0.05, -0.025])
    assert optimizer.learning_rate == 1.0


def test_schedule_drives_adam_like_its_rate():
    params, grads = problem()
    scheduled = run(Adam(1.0, schedule=lambda iteration: 0.01), params, grads)[-1]
    constant = run(Adam(0.01), params, grads)[-1]
    for a, b in zip(scheduled, constant):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-14)


def test_custom_schedule_gets_the_iteration():
    seen = []
    optimizer = RMSprop(schedule=lambda iteration: seen.append(iteration) or 0.01)
    run(optimizer, *problem())
    assert sorted(set(seen)) == list(range(STEPS))


def test_built_in_schedules():
    assert [step_decay(1.0, 0.1, 3)(i) for i in (0, 2, 3, 6)] == pytest.approx([1, 1, 0.1, 0.01])
    decay = exponential_decay(2.0, 0.5, 10)
    assert [decay(i) for i in (0, 5, 10, 20)] == pytest.approx([2, 2 * math.sqrt(0.5), 1, 0.5])
    cosine = cosine_decay(1.0, 10, final=0.1)
    assert [cosine(i) for i in (0, 5, 10, 50)] == pytest.approx([1.0, 0.55, 0.1, 0.1])
    assert cosine_decay(0.5, 4)(4) == pytest.approx(0.0)


@pytest.mark.parametrize("make, message", [
    (lambda: SGD(0), "learning_rate"),
    (lambda: SGD(-0.1), "learning_rate"),
    (lambda: SGD(float("nan")), "learning_rate"),
    (lambda: SGD(True), "learning_rate"),
    (lambda: Adam("0.01"), "learning_rate"),
    (lambda: SGD(momentum=1.0), r"momentum must be a number in \[0, 1\)"),
    (lambda: SGD(momentum=-0.5), "momentum"),
    (lambda: SGD(nesterov=True), "nesterov=True needs a momentum > 0"),
    (lambda: SGD(weight_decay=-1), "weight_decay"),
    (lambda: RMSprop(rho=1), "rho"),
    (lambda: RMSprop(epsilon=0), "epsilon"),
    (lambda: Adam(beta_1=1.0), "beta_1"),
    (lambda: Adam(beta_2=-0.1), "beta_2"),
    (lambda: Adam(epsilon=float("inf")), "epsilon"),
    (lambda: AdamW(weight_decay=-0.01), "weight_decay"),
    (lambda: SGD(schedule=0.1), "schedule"),
    (lambda: step_decay(0.1, 0.0, 2), "drop"),
    (lambda: step_decay(0.1, 0.5, 0), "every"),
    (lambda: step_decay(0.1, 0.5, 1.5), "every"),
    (lambda: exponential_decay(0.1, 1.5, 10), "rate"),
    (lambda: exponential_decay(0, 0.5, 10), "initial"),
    (lambda: cosine_decay(0.1, 0), "total_steps"),
    (lambda: cosine_decay(0.1, 10, final=0.2), "final"),
])
def test_bad_hyper_parameters_raise(make, message):
    with pytest.raises(InputError, match=message):
        make()


def test_get_resolves_names_and_objects():
    adam = get("adam", 0.01)
    assert type(adam) is Adam and adam.learning_rate == 0.01
    momentum = get("momentum", 0.05)
    assert type(momentum) is SGD and momentum.momentum == 0.9 and not momentum.nesterov
    nesterov = get("Nesterov", 0.05)
    assert nesterov.nesterov and nesterov.learning_rate == 0.05
    assert type(get("rmsprop", 0.01)) is RMSprop
    adamw = get("ADAMW", 0.002)
    assert type(adamw) is AdamW and adamw.weight_decay == 0.01 and adamw.learning_rate == 0.002
    plain = get(None, 0.3)
    assert type(plain) is SGD and plain.learning_rate == 0.3 and plain.momentum == 0
    given = AdamW(0.1)
    assert get(given) is given and given.learning_rate == 0.1
    with pytest.raises(InputError, match="was given with the optimizer object"):
        get(given, 0.5)
    assert repr(get("sgd", 0.5)) == "SGD(learning_rate=0.5, momentum=0, nesterov=False, " \
                                     "weight_decay=0)"


def test_a_name_without_a_rate_gets_the_optimizers_own_default():
    names = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
    assert [get(name).learning_rate for name in names] == [0.01] * 3 + [1e-3] * 3  # Keras's
    assert get(None).learning_rate == 0.01  # the tutorial's SGD


class RateSeen(portanet.callbacks.Callback):
    def on_train_begin(self, logs):
        self.rate = self.optimizer.learning_rate


@pytest.mark.parametrize("args, kwargs, optimizer, rate", [
    ((), {"optimizer": "adam"}, Adam, 1e-3),  # not the tutorial's 0.01
    ((), {"optimizer": "rmsprop"}, RMSprop, 1e-3),
    ((), {"optimizer": "adam", "learning_rate": 0.05}, Adam, 0.05),
    ((), {}, SGD, 0.01),  # the tutorial's algorithm
    ((0.2,), {}, SGD, 0.2),  # the tutorial's fit(x, y, epochs, learning_rate)
    ((), {"optimizer": Adam(0.003)}, Adam, 0.003),  # an object keeps its own
])
def test_fit_without_a_rate_uses_the_optimizers_default(args, kwargs, optimizer, rate):
    net = Network([FCLayer(3, 2)])
    net.use("mse")
    seen = RateSeen()
    net.fit(np.ones((4, 3)), np.zeros((4, 2)), 1, *args, **kwargs, verbose=0, callbacks=[seen])
    assert type(seen.optimizer) is optimizer and seen.rate == rate


@pytest.mark.parametrize("optimizer, message", [
    ("adagrad", "unknown optimizer 'adagrad': choose one of sgd, momentum, nesterov, rmsprop"),
    (42, "optimizer must be a name or a portanet Optimizer"),
])
def test_get_rejects_unknown(optimizer, message):
    with pytest.raises(InputError, match=message):
        get(optimizer)


@pytest.mark.parametrize("optimizer, rate", [(lambda: Adam(0.01), None), (lambda: "adam", 0.01)])
def test_network_trains_with_adam(optimizer, rate):
    gen = np.random.default_rng(0)
    x = gen.normal(size=(64, 3))
    y = np.tanh(x @ np.array([[0.5], [-1.0], [0.8]]))
    net = Network()
    net.add(FCLayer(3, 8))
    net.add(portanet.ActivationLayer(tanh, tanh_prime))
    net.add(FCLayer(8, 1))
    net.use(mse, mse_prime)
    history = net.fit(x, y, epochs=20, learning_rate=rate, batch_size=8,
                      optimizer=optimizer(), verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.2 * losses[0]


def test_state_follows_its_parameters_between_flat_and_per_parameter_layouts():
    """Eager steps keep parameters in flat buffers, compiled steps one array per parameter; an
    optimizer used by both (a fit eagerly, then one compiled) carries its moments over."""
    params, grads = problem()

    def train(layouts_flat):
        layer = FakeLayer(**{name: on_backend(p) for name, p in zip(SHAPES, params)})
        slots = [(layer, name) for name in SHAPES]
        optimizer = Adam(0.05)
        for flat, step_grads in zip(layouts_flat, grads):
            layout = ParameterLayout(slots, flat=flat)
            values = layout.gather()
            state = optimizer.state_for(layout, values)
            assert len(state) == (1 if flat else len(SHAPES))
            values, optimizer.state = optimizer.apply(
                values, layout.flatten([on_backend(g) for g in step_grads]), state,
                optimizer.scalars())
            optimizer.iterations += 1
            layout.assign(values)
        return [to_numpy(getattr(layer, name)) for name in SHAPES]

    mixed = train([True, True, False, False, True, False])
    for got, want in zip(mixed, train([True] * STEPS)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


DECAYS = {  # each optimizer's state after a step with a zero gradient, in its own arithmetic
    "adam": lambda old, k: old + (0 - old) * (1 - np.asarray((0.9, 0.999)[k], old.dtype)),
    "sgd": lambda old, k: old * np.asarray(0.9, old.dtype) + 0,
    "rmsprop": lambda old, k: old * np.asarray(0.9, old.dtype) + 0,
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", DECAYS)
def test_optimizer_state_reaches_zero_instead_of_subnormal_numbers(name, dtype, backend):
    """Where the gradient stays 0, running averages (Adam's moments, momentum, RMSprop's
    squares) decay; values that would turn subnormal (which Intel CPUs compute many times
    slower) become 0 or a small multiple of the smallest normal number, and every other value is
    exactly what the update computes."""
    tiny = np.finfo(dtype).tiny
    values = [np.array([1.05 * tiny, -1.05 * tiny, 1e-3, -0.25, 0.0], dtype=dtype),
              np.array([1.0005 * tiny, 1e-6, 2.0, 1.0005 * tiny, 0.0], dtype=dtype)]
    optimizer = {"adam": portanet.optimizers.Adam(0.1),
                 "sgd": portanet.optimizers.SGD(0.1, momentum=0.9),
                 "rmsprop": portanet.optimizers.RMSprop(0.1, rho=0.9)}[name]
    values = [np.abs(v) if name == "rmsprop" else v for v in values[:optimizer.state_buffers]]
    expected = [DECAYS[name](old, k) for k, old in enumerate(values)]
    state = [tuple(on_backend(v, dtype) for v in values)]  # updated in place
    zeros = on_backend(np.zeros(5), dtype)
    _, (new_state,) = optimizer.apply([on_backend(np.ones(5), dtype)], [zeros], state,
                                      optimizer.scalars())
    for new, decayed in zip(new_state, expected):
        new = to_numpy(new)
        assert not np.any((new != 0) & (np.abs(new) < tiny))  # no subnormal number left
        normal = np.abs(decayed) >= tiny
        np.testing.assert_array_equal(new[normal], decayed[normal])
        assert np.all(np.abs(new[~normal]) <= 2 * tiny) and (~normal).sum() >= 1
