"""portanet.testing: the public gradient checks catch wrong layers and losses, with messages
that locate the error, and run a check on several backends."""

import subprocess
import sys

import numpy as np
import pytest

import portanet
from portanet import Dropout, FCLayer, Layer
from portanet.backend import namespace, to_numpy
from portanet.losses import mse, mse_prime
from portanet.testing import (
    CheckError,
    check_layer,
    check_loss,
    for_each_backend,
    installed_backends,
)


class Scale(Layer):
    """The docs' own layer: ``x * factor``, with optional deliberate mistakes."""

    params = ("factor",)

    def __init__(self, features, factor_error=1.0, input_error=1.0):
        super().__init__()
        self.factor = portanet.get_backend().asarray(np.linspace(0.5, 1.5, features))
        self.factor_error, self.input_error = factor_error, input_error

    def apply(self, state, x, run):
        factor = state["factor"]

        def backprop(grad_output, need_input=True):
            xp = namespace(grad_output)
            grads = {"factor": self.factor_error * xp.sum(grad_output * x, axis=0)}
            return self.input_error * grad_output * factor, grads
        return x * factor, backprop


class StatefulScale(Scale):
    """Scale in the stateful form (forward/backward keeping the input on the layer)."""

    def forward(self, x, training=False):
        self.input = x
        return x * self.factor

    def backward(self, grad_output):
        xp = namespace(grad_output)
        self.grads = {"factor": self.factor_error * xp.sum(grad_output * self.input, axis=0)}
        return self.input_error * grad_output * self.factor


def test_a_correct_layer_passes_and_is_left_as_it_was(backend):
    layer = FCLayer(4, 3)  # float32: checked in float64, then given back its own arrays
    weights = layer.weights
    check_layer(layer, (4,))
    assert layer.weights is weights and layer.weights.dtype == backend.xp.float32
    check_layer(Scale(5), (5,), batch=2)
    stateful = StatefulScale(5)
    before = dict(vars(stateful))
    check_layer(stateful, (5,), batch=2)
    assert vars(stateful) == before  # nothing it stored during the check stays
    with pytest.raises(CheckError, match="gradient of parameter 'factor'"):
        check_layer(StatefulScale(3, factor_error=1.01), (3,))


class Clipped(Scale):
    """Scale whose forward reads a value on the host: it cannot be traced by a compiler."""

    def apply(self, state, x, run):
        if float(to_numpy(x).max()) > 100:
            raise AssertionError("unexpected input")
        return super().apply(state, x, run)


def test_finite_differences_run_compiled_where_the_backend_compiles(backend, monkeypatch):
    traces = []
    apply = Scale.apply
    monkeypatch.setattr(Scale, "apply", lambda self, state, x, run: traces.append(1)
                        or apply(self, state, x, run))
    check_layer(Scale(3), (3,), batch=4)  # 12 + 3 points, 2 forward passes each
    # compiled: one trace of the forward pass and one for each backward method's forward
    expected = 1 + 2 if backend.name == "jax" else 1 + 30 + 2
    assert len(traces) == expected
    traces.clear()
    check_layer(StatefulScale(3), (3,), batch=4)  # the stateful form: always eagerly
    assert not traces


def test_a_layer_that_cannot_compile_is_checked_eagerly(backend, recwarn):
    check_layer(Clipped(3), (3,))
    with pytest.raises(CheckError):
        check_layer(Clipped(3, input_error=1.01), (3,))
    said = [str(w.message) for w in recwarn if issubclass(w.category, portanet.CompileWarning)]
    assert len(said) == (backend.name == "jax")  # said once
    assert all("the gradient check of Clipped(" in message and "running it eagerly" in message
               for message in said)


def test_a_wrong_parameter_gradient_names_the_layer_parameter_and_element(backend):
    with pytest.raises(CheckError) as info:
        check_layer(Scale(3, factor_error=1.01), (3,))
    message = str(info.value)
    assert message.startswith(f"Scale() on {backend}: the gradient of parameter 'factor'")
    assert "in 3 of 3 elements; worst at index (" in message
    assert "analytic" in message and "numeric" in message
    relative = float(message.split("relative error ")[1].split()[0])
    assert relative == pytest.approx(0.01 / 1.01, rel=1e-3)


def test_a_wrong_input_gradient_is_named_input(backend):
    with pytest.raises(CheckError, match=r"the gradient of the input differs .* 6 of 6 elements"):
        check_layer(Scale(3, input_error=-1.0), (3,), batch=2)


def test_missing_or_inconsistent_parameter_gradients():
    class NoGrads(Scale):
        def apply(self, state, x, run):
            out, backprop = super().apply(state, x, run)
            return out, lambda grad, need_input=True: (backprop(grad, need_input)[0], {})

    with pytest.raises(CheckError, match=r"backward gave gradients for \[\]; .* \('factor',\)"):
        check_layer(NoGrads(2), (2,))

    class Inconsistent(Scale):
        def apply(self, state, x, run):
            out, backprop = super().apply(state, x, run)
            return out, lambda grad, need_input=True: backprop(
                grad if need_input else 2 * grad, need_input)

    with pytest.raises(CheckError, match="backward_params's gradient of 'factor'"):
        check_layer(Inconsistent(2), (2,))
    with pytest.raises(portanet.InputError, match="no parameters"):
        check_layer(Scale(2), (2,), params=["bias"])


def test_random_layers_are_checked_with_one_mask():
    check_layer(Dropout(0.5), (8,), batch=4)  # a new mask per forward would fail here

    class Forgetful(Dropout):  # a mask that does not reach backward
        def apply(self, state, x, run):
            out, _ = super().apply(state, x, run)
            return out, lambda grad, need_input=True: (grad, {})

    with pytest.raises(CheckError, match="gradient of the input"):
        check_layer(Forgetful(0.5), (8,), batch=4)


def test_a_wrong_loss_derivative_is_named():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    check_loss(mse, mse_prime, y_true, y_pred)

    def half_prime(y_true, y_pred):
        return mse_prime(y_true, y_pred) / 2

    with pytest.raises(CheckError, match="derivative of the loss mse .* relative error 0.5"):
        check_loss(mse, half_prime, y_true, y_pred)


def test_for_each_backend_runs_everywhere_and_names_the_failing_backend(backend):
    names = ["numpy", backend.name]
    assert {"numpy", backend.name} <= set(installed_backends())
    seen = for_each_backend(lambda chosen: chosen.name, names)
    assert seen == {name: name for name in names}
    assert portanet.get_backend() is backend  # put back

    def scale_layer_check(chosen):  # the README's recipe: one layer, checked on each backend
        layer = Scale(3)
        assert namespace(layer.factor) is chosen.xp
        check_layer(layer, (3,))
        return to_numpy(layer.factor)

    results = for_each_backend(scale_layer_check, names)
    np.testing.assert_array_equal(results["numpy"], results[backend.name])

    def fails_off_numpy(chosen):
        check_layer(Scale(2, factor_error=1.0 if chosen.name == "numpy" else 2.0), (2,))

    with pytest.raises(CheckError) as info:
        for_each_backend(fails_off_numpy, ["numpy", "array_api_strict", "tensorflow"])
    message = str(info.value)
    assert "failed on 2 of 3 backends (array_api_strict, tensorflow)" in message
    assert "array_api_strict: CheckError: Scale() on array_api_strict" in message
    assert "tensorflow: BackendError: unknown backend" in message
    assert "numpy:" not in message
    assert portanet.get_backend() is backend


def test_importing_portanet_does_not_load_the_testing_module():
    code = "import sys, portanet; print('portanet.testing' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
