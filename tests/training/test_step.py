"""The training step as pure functions (portanet.step), called directly rather than through fit:
gradients against a hand-written NumPy float64 backprop, the SGD update, a whole step, the
batches of an epoch's order, the inference pass, and the (layer, name) slots of a network."""

import numpy as np
import pytest

from portanet import ActivationLayer, BatchNorm, Dense, Dropout, Network, Residual, Sequential
from portanet.backend import to_numpy
from portanet.optimizers import SGD
from portanet.training.step import (
    Batches,
    Inference,
    TrainStep,
    buffer_slots,
    parameter_slots,
    select,
    slots,
)

X_SHAPE, OUTPUTS, HIDDEN = (6, 3), 2, 4


def weights(seed=0):
    """Initial weights of the 3-4-2 network: w1, b1, w2, b2 (float64, bias not zero)."""
    gen = np.random.default_rng(seed)
    return [gen.normal(scale=0.7, size=shape) for shape in
            ((X_SHAPE[1], HIDDEN), (HIDDEN,), (HIDDEN, OUTPUTS), (OUTPUTS,))]


def dense_tanh(dropout=None):
    """Dense(3, 4) -> tanh [-> Dropout] -> Dense(4, 2), mse, float64, known weights."""
    first, last = Dense(X_SHAPE[1], HIDDEN, dtype="float64"), Dense(HIDDEN, OUTPUTS,
                                                                    dtype="float64")
    w1, b1, w2, b2 = weights()
    first.set_weights([w1, b1])
    last.set_weights([w2, b2])
    middle = [ActivationLayer("tanh")] + ([Dropout(dropout)] if dropout else [])
    net = Network([first, *middle, last])
    net.use("mse")
    return net


def batch(seed=1, rows=X_SHAPE[0]):
    gen = np.random.default_rng(seed)
    return gen.normal(size=(rows, X_SHAPE[1])), gen.normal(size=(rows, OUTPUTS))


def reference(params, x, y, mask=None):
    """``(loss, [dw1, db1, dw2, db2])`` of mse(tanh(x @ w1 + b1) [* mask] @ w2 + b2), by hand."""
    w1, b1, w2, b2 = params
    hidden = np.tanh(x @ w1 + b1)
    dropped = hidden if mask is None else hidden * mask
    out = dropped @ w2 + b2
    loss = np.mean((out - y) ** 2)
    grad_out = 2 * (out - y) / out.size
    grad_dropped = grad_out @ w2.T
    grad_hidden = grad_dropped if mask is None else grad_dropped * mask
    grad_z = grad_hidden * (1 - hidden ** 2)
    return loss, [x.T @ grad_z, grad_z.sum(axis=0), dropped.T @ grad_out, grad_out.sum(axis=0)]


def on(backend, *arrays):
    return tuple(backend.asarray(array, "float64") for array in arrays)


def per_slot(step, groups):
    """NumPy copies of each parameter's array in ``groups`` (laid out by ``step.layout``)."""
    return [to_numpy(array).copy() for array in step.layout.split(groups)]


# -- gradients ----------------------------------------------------------------------------
@pytest.mark.parametrize("flat", [True, False])
@pytest.mark.parametrize("eager", [False, True])
def test_gradients_equal_a_hand_computed_backprop(backend, eager, flat):
    net = dense_tanh()
    step = TrainStep(net, SGD(0.1), eager=eager, flat=flat)
    params = step.layout.gather()
    assert len(params) == (1 if flat else 4)
    for seed in (1, 2):  # a second batch: an eager step's reused gradient buffer starts afresh
        x, y = batch(seed)
        grads, buffers, sums = step.gradients(params, [], on(backend, x, y), None, [])
        loss, expected = reference(weights(), x, y)
        got = per_slot(step, grads)
        assert [g.shape for g in got] == [e.shape for e in expected]
        for name, mine, theirs in zip(("w1", "b1", "w2", "b2"), got, expected):
            np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-15, err_msg=name)
        assert buffers == []
        np.testing.assert_allclose(float(to_numpy(sums)), loss * X_SHAPE[0], rtol=1e-12)
    assert step.traces == 2


def test_share_scales_the_gradients_not_the_loss(backend):
    net = dense_tanh()
    step = TrainStep(net, SGD(0.1))
    x, y = batch()
    params = step.layout.gather()
    grads, _, sums = step.gradients(params, [], on(backend, x, y), 0.25, [])
    loss, expected = reference(weights(), x, y)
    for mine, theirs in zip(per_slot(step, grads), expected):
        np.testing.assert_allclose(mine, 0.25 * theirs, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(float(to_numpy(sums)), loss * X_SHAPE[0], rtol=1e-12)


def test_dropout_uses_the_masks_drawn_ahead(backend):
    net = dense_tanh(dropout=0.5)
    step = TrainStep(net, SGD(0.1))
    noise = step.draw((X_SHAPE[1],), X_SHAPE[0], "float64")
    assert len(noise) == 1 and tuple(noise[0].shape) == (X_SHAPE[0], HIDDEN)
    mask = to_numpy(noise[0]).copy()
    assert set(np.unique(mask)) <= {0.0, 2.0} and 0 < np.count_nonzero(mask) < mask.size
    x, y = batch()
    grads, _, sums = step.gradients(step.layout.gather(), [], on(backend, x, y), None, noise)
    loss, expected = reference(weights(), x, y, mask)
    for mine, theirs in zip(per_slot(step, grads), expected):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(float(to_numpy(sums)), loss * X_SHAPE[0], rtol=1e-12)
    assert TrainStep(dense_tanh(), SGD(0.1)).draw((X_SHAPE[1],), 4, "float64") == []


def test_accuracy_adds_the_count_of_correct_rows(backend):
    net = dense_tanh()
    step = TrainStep(net, SGD(0.1), accuracy=True)
    x, _ = batch()
    w1, b1, w2, b2 = weights()
    predicted = np.argmax(np.tanh(x @ w1 + b1) @ w2 + b2, axis=1)
    labels = predicted.copy()
    labels[:2] = 1 - labels[:2]  # two rows wrong, the others right
    y = np.eye(OUTPUTS)[labels]
    _, _, sums = step.gradients(step.layout.gather(), [], on(backend, x, y), None, [])
    loss, _ = reference(weights(), x, y)
    np.testing.assert_allclose(to_numpy(sums), [loss * X_SHAPE[0], X_SHAPE[0] - 2], rtol=1e-12)


def test_gradients_return_new_running_statistics_and_leave_the_layer_alone(backend):
    dense, norm = Dense(3, 4, dtype="float64"), BatchNorm(4, momentum=0.8, dtype="float64")
    w1, b1, _, _ = weights()
    dense.set_weights([w1, b1])
    mean, var = np.array([0.5, -1.0, 0.0, 2.0]), np.array([1.0, 2.0, 0.5, 3.0])
    norm.set_weights([np.ones(4), np.zeros(4), mean, var])
    net = Network([dense, norm, Dense(4, 2, dtype="float64")])
    net.use("mse")
    step = TrainStep(net, SGD(0.1))
    assert step.buffers == [(norm, "running_mean"), (norm, "running_var")]
    x, y = batch()
    buffers = [getattr(norm, name) for _, name in step.buffers]
    _, new, _ = step.gradients(step.layout.gather(), buffers, on(backend, x, y), None, [])
    z = x @ w1 + b1
    np.testing.assert_allclose(to_numpy(new[0]), 0.8 * mean + 0.2 * z.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(new[1]), 0.8 * var + 0.2 * z.var(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(to_numpy(norm.running_mean), mean)  # not written on the layer
    np.testing.assert_array_equal(to_numpy(norm.running_var), var)


# -- update and whole ---------------------------------------------------------------------
def test_update_applies_sgd_exactly(backend):
    net = dense_tanh()
    optimizer = SGD(0.05)
    step = TrainStep(net, optimizer)
    params = step.layout.gather()
    before = [to_numpy(p).copy() for p in params]
    gen = np.random.default_rng(5)
    grad_values = [gen.normal(size=p.shape) for p in before]
    grads = [backend.asarray(g.copy(), "float64") for g in grad_values]
    state = optimizer.state_for(step.layout, params)
    new, new_state = step.update(params, grads, state, optimizer.scalars())
    assert len(new) == 1 and new_state == [()]
    np.testing.assert_array_equal(to_numpy(new[0]), before[0] - 0.05 * grad_values[0])
    assert step.traces == 1


def test_update_carries_the_momentum_state_from_step_to_step(backend):
    optimizer = SGD(0.1, momentum=0.5)
    step = TrainStep(dense_tanh(), optimizer)
    params = step.layout.gather()
    expected = to_numpy(params[0]).copy()
    state = optimizer.state_for(step.layout, params)
    velocity = np.zeros_like(expected)
    gen = np.random.default_rng(6)
    for _ in range(3):
        grad = gen.normal(size=expected.shape)
        params, state = step.update(params, [backend.asarray(grad.copy(), "float64")], state,
                                    optimizer.scalars())
        velocity = 0.5 * velocity + grad
        expected = expected - 0.1 * velocity
        np.testing.assert_allclose(to_numpy(state[0][0]), velocity, rtol=1e-15, atol=1e-15)
        np.testing.assert_allclose(to_numpy(params[0]), expected, rtol=1e-14, atol=1e-15)


def test_whole_is_gradients_then_update(backend):
    x, y = batch()
    data = on(backend, x, y)
    optimizer = SGD(0.1)
    step = TrainStep(dense_tanh(), optimizer)
    scalars = optimizer.scalars()
    state = optimizer.state_for(step.layout, step.layout.gather())
    grads, _, sums = step.gradients(step.layout.gather(), [], data, None, [])
    apart, _ = step.update(step.layout.gather(), grads, state, scalars)
    apart = [to_numpy(p).copy() for p in apart]
    traces = step.traces
    total = backend.asarray(1.5, "float64")
    params, buffers, new_state, new_total = step.whole(step.layout.gather(), [], state, total,
                                                       data, scalars, [])
    assert step.traces == traces + 1  # one step, one trace
    assert buffers == [] and new_state == [()]
    np.testing.assert_array_equal(to_numpy(params[0]), apart[0])
    loss, expected_grads = reference(weights(), x, y)
    np.testing.assert_allclose(float(to_numpy(new_total)), 1.5 + loss * X_SHAPE[0], rtol=1e-12)
    expected = [w - 0.1 * g for w, g in zip(weights(), expected_grads)]
    for mine, theirs in zip(per_slot(step, params), expected):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-15)


# -- batches ------------------------------------------------------------------------------
@pytest.mark.parametrize("indexed", [False, True])
def test_batches_select_the_rows_of_the_epochs_order(backend, indexed):
    x = np.arange(20, dtype=float).reshape(10, 2)
    y = 100 + np.arange(10, dtype=float).reshape(10, 1)
    batches = Batches(*on(backend, x, y), indexed)
    order = np.array([7, 2, 9, 0, 5, 1, 3, 8, 4, 6])
    batches.start_epoch(backend.asarray(order, dtype=None))
    for lo, hi in ((0, 4), (4, 8), (8, 10)):
        made = batches(lo, hi)
        assert len(made) == (5 if indexed else 2)
        xb, yb = select(made)
        np.testing.assert_array_equal(to_numpy(xb), x[order[lo:hi]])
        np.testing.assert_array_equal(to_numpy(yb), y[order[lo:hi]])
    batches.start_epoch(None)  # the data's own order
    xb, yb = select(batches(3, 7))
    np.testing.assert_array_equal(to_numpy(xb), x[3:7])
    np.testing.assert_array_equal(to_numpy(yb), y[3:7])
    if indexed:  # the whole data set, and one offsets array per batch size: traced once each
        first, second = batches(0, 4), batches(4, 8)
        assert first[0] is batches.x and first[3] is second[3] and (first[4], second[4]) == (0, 4)


# -- inference ----------------------------------------------------------------------------
def test_inference_gives_predict_and_takes_any_weights(backend):
    dense, norm, last = Dense(3, 4, dtype="float64"), BatchNorm(4, dtype="float64"), \
        Dense(4, 2, dtype="float64")
    w1, b1, w2, b2 = weights()
    gamma, beta = np.array([1.5, 0.5, 1.0, 2.0]), np.array([0.1, -0.2, 0.3, 0.0])
    mean, var = np.array([0.5, -1.0, 0.0, 2.0]), np.array([1.0, 2.0, 0.5, 3.0])
    dense.set_weights([w1, b1])
    norm.set_weights([gamma, beta, mean, var])
    last.set_weights([w2, b2])
    net = Network([dense, norm, ActivationLayer("tanh"), last])
    inference = Inference(net.layers)
    assert inference.slots == [(dense, "weights"), (dense, "bias"), (norm, "gamma"),
                               (norm, "beta"), (norm, "running_mean"), (norm, "running_var"),
                               (last, "weights"), (last, "bias")]
    x, _ = batch()
    rows = backend.asarray(x, "float64")

    def by_hand(w1, b1, gamma, beta, mean, var, w2, b2):
        normed = (x @ w1 + b1 - mean) / np.sqrt(var + norm.epsilon) * gamma + beta
        return np.tanh(normed) @ w2 + b2

    out = to_numpy(inference(inference.weights(), rows))
    np.testing.assert_allclose(out, to_numpy(net.predict(rows)), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out, by_hand(w1, b1, gamma, beta, mean, var, w2, b2),
                               rtol=1e-12, atol=1e-14)
    other = [2 * w for w in (w1, b1, gamma, beta, mean, var, w2, b2)]
    out = to_numpy(inference([backend.asarray(w, "float64") for w in other], rows))
    np.testing.assert_allclose(out, by_hand(*other), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(to_numpy(norm.running_var), var)  # the layers are unchanged
    assert inference.traces == 2


# -- slots --------------------------------------------------------------------------------
class Tutorial:
    """A layer in the tutorial's self-updating style: it has no slots."""

    def forward_propagation(self, x):
        return x

    def backward_propagation(self, error, learning_rate):
        return error


def test_slots_list_each_layer_once_and_split_parameters_from_buffers(backend):
    shared, norm, last = Dense(3, 3, dtype="float64"), BatchNorm(3, dtype="float64"), \
        Dense(3, 2, dtype="float64")
    inner = Sequential([shared, ActivationLayer("tanh")])
    layers = [shared, norm, ActivationLayer("tanh"), Residual(inner), Tutorial(), shared, last]
    assert slots(layers) == [(shared, "weights"), (shared, "bias"), (norm, "gamma"),
                             (norm, "beta"), (norm, "running_mean"), (norm, "running_var"),
                             (last, "weights"), (last, "bias")]
    assert parameter_slots(layers) == [(shared, "weights"), (shared, "bias"), (norm, "gamma"),
                                       (norm, "beta"), (last, "weights"), (last, "bias")]
    assert buffer_slots(layers) == [(norm, "running_mean"), (norm, "running_var")]
    net = Network([shared, norm, ActivationLayer("tanh"), Residual(inner), shared, last])
    net.use("mse")
    step = TrainStep(net, SGD(0.1))
    assert step.layout.slots == parameter_slots(net.layers)
    assert step.buffers == buffer_slots(net.layers)
    assert step.layout.sizes == [9 + 3 + 3 + 3 + 6 + 2]  # the shared Dense counted once
