"""Checks for your own layers, activations and losses, on every backend.

:func:`check_layer` compares a layer's ``backward`` (the input gradient and every parameter
gradient) with central finite differences, in float64, on the selected backend;
:func:`check_loss` does the same for a loss's derivative; :func:`for_each_backend` runs a check
on every installed backend and says which one failed. A failed check raises :class:`CheckError`,
an ``AssertionError``: in pytest it is a failed test, like NumPy's ``assert_allclose``.

Import it explicitly (``import portanet.testing``): ``import portanet`` does not load it.
Finite differences are taken on the host (NumPy), so this module is a host-side edge, like
:mod:`portanet.saving.format`.
"""

from __future__ import annotations

import functools

import numpy as np

from .backend import BACKENDS, compilers, get_backend, namespace, set_seed, to_numpy, using_backend
from .errors import BackendError, InputError
from .layers.base import Pass, not_pure, weight_names, with_references

__all__ = ["CheckError", "assert_gradient_close", "check_layer", "check_loss",
           "for_each_backend", "installed_backends", "numeric_gradient"]


class CheckError(AssertionError):
    """A check of :mod:`portanet.testing` failed (a wrong gradient, a failing backend).

    An ``AssertionError`` rather than a :class:`portanet.PortanetError`: it reports a defect
    found by a test, not a mistake in how portanet was called (those raise InputError)."""


def numeric_gradient(f, point, eps=1e-6):
    """Central-difference gradient of the scalar function ``f`` (NumPy array in, float out)
    at ``point``, in float64."""
    point = np.array(point, dtype=np.float64)
    grad = np.zeros_like(point)
    for index in np.ndindex(point.shape):
        saved = point[index]
        point[index] = saved + eps
        up = f(point.copy())
        point[index] = saved - eps
        down = f(point.copy())
        point[index] = saved
        grad[index] = (up - down) / (2 * eps)
    return grad


def assert_gradient_close(analytic, numeric, what, rtol=1e-6, atol=1e-8):
    """CheckError unless ``|analytic - numeric| <= atol + rtol * |numeric|`` everywhere; the
    message names ``what`` and the worst element: its index, both values, the relative error."""
    analytic = np.asarray(to_numpy(analytic), dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise CheckError(f"{what}: the analytic gradient has shape {analytic.shape}, "
                         f"expected {numeric.shape}")
    excess = np.abs(analytic - numeric) / (atol + rtol * np.abs(numeric))
    excess[~np.isfinite(analytic)] = np.inf
    bad = int(np.count_nonzero(excess > 1))
    if not bad:
        return
    index = np.unravel_index(int(np.argmax(excess)), excess.shape)
    a, n = float(analytic[index]), float(numeric[index])
    relative = abs(a - n) / max(abs(a), abs(n), np.finfo(np.float64).tiny)
    raise CheckError(f"{what} differs from central finite differences in {bad} of "
                     f"{excess.size} elements; worst at index {tuple(map(int, index))}: analytic "
                     f"{a:.9g}, numeric {n:.9g}, relative error {relative:.3g} "
                     f"(rtol={rtol:g}, atol={atol:g})")


def check_layer(layer, input_shape=None, *, x=None, batch=3, params=None, training=True, seed=0,
                rtol=1e-6, atol=1e-8, eps=1e-6):
    """Check a layer's backward pass against central finite differences, in float64, on the
    selected backend: the input gradient, and the gradient of each parameter (``params``: the
    names to check, default all of ``layer.params`` and, for a container, every parameter of
    its sublayers) that the backprop of :meth:`~portanet.Layer.apply` returns (for a layer in
    the stateful form, that ``backward`` leaves in ``layer.grads``; for a sublayer, what the
    pass records); ``need_input=False`` (``backward_params``) must give the same parameter
    gradients.

    The input is ``x`` (host data, samples first) or ``batch`` standard-normal samples of
    per-sample shape ``input_shape``; the scalar differentiated is a random linear functional
    of the output. ``training`` is the pass's training mode. Before every forward pass portanet is
    reseeded with ``seed`` (:func:`portanet.set_seed`), so a random layer such as Dropout draws
    the same mask each time. Parameters and buffers are cast to float64 for the check and put
    back afterwards. Where the backend compiles (JAX), the forward and backward passes run
    compiled, as ``fit`` runs them; a layer that cannot compile is checked eagerly, after one
    :class:`~portanet.errors.CompileWarning`. Raises :class:`CheckError` naming the layer, the
    parameter (or "input"), the worst element's index, both values and the relative error.
    """
    generator = np.random.default_rng(seed)
    if x is None:
        if input_shape is None:
            raise InputError("check_layer needs the per-sample input_shape, or the input x")
        x = generator.normal(size=(batch, *tuple(input_shape)))
    x = np.array(to_numpy(x), dtype=np.float64)
    trained = tuple(getattr(layer, "params", ()))
    names = trained if params is None else tuple(params)
    unknown = sorted(set(names) - set(trained))
    if unknown:
        raise InputError(f"{layer!r} has no parameters {unknown}: its params are {trained}")
    # a container's sublayers' parameters, found in the pass's gradients (all, unless params)
    inner = [(key, part, name) for key, part in _sublayers(layer) for name in part.params]
    slots = [(layer, name) for name in trained] + [(part, name) for _, part, name in inner]
    checked = [(repr(name), trained.index(name)) for name in names]
    if params is None:
        checked += [(f"{name!r} of sublayer {key} ({part!r})", len(trained) + k)
                    for k, (key, part, name) in enumerate(inner)]
    backend = get_backend()
    label = f"{layer!r} on {backend}"
    parts = with_references([layer])  # a TiedDense's embedding too
    as_float64 = {id(part): {name: _float64(getattr(part, name)) for name in weight_names(part)}
                  for part in parts}
    restore = {id(part): dict(vars(part)) for part in parts}  # stateful layers write on theirs

    def run(values):  # a pass with the parameters of slots set to values
        set_seed(seed)
        states = {key: dict(arrays) for key, arrays in as_float64.items()}
        for (part, name), value in zip(slots, values):
            states.setdefault(id(part), {})[name] = value
        return Pass(states, training)

    def output(point, values):
        return run(values).output([layer], point)

    def analytic(method, point, values, weights):
        """``method``'s input gradient, the layer's parameter gradients and its sublayers',
        after a forward."""
        this = run(values)
        _, backprop = this.apply(layer, point)
        grad_input, grads = backprop(weights, method == "backward")
        return grad_input, dict(grads), [this.grads.get(id(part), {}).get(name)
                                         for _, part, name in inner]

    # Compiled where the backend compiles (jax.jit: a few programs per check instead of one per
    # operation and shape, and finite differences hundreds of times faster); eager again if
    # the layer cannot be compiled (with one CompileWarning).
    compiler = compilers.choose(backend, "auto", not_pure([layer]))
    what = f"the gradient check of {layer!r}"  # one warning if the layer cannot compile
    forward = compilers.compiled(compiler, output, what)
    try:
        point = backend.asarray(x, "float64")
        values = [as_float64[id(part)][name] for part, name in slots]
        weights = generator.normal(size=tuple(forward(point, values).shape))
        weights_on_backend = backend.asarray(weights, "float64")

        def objective(at, values=values):
            out = forward(backend.asarray(at, "float64"), values)
            return float(np.sum(to_numpy(out) * weights))

        def gradients(method):
            run = compilers.compiled(compiler, functools.partial(analytic, method), what)
            result, grads, inner_grads = run(point, values, weights_on_backend)
            if set(grads) != set(trained):
                raise CheckError(f"{label}: {method} gave gradients for {sorted(grads)}; its "
                                 f"params are {trained}")
            for (key, part, name), grad in zip(inner, inner_grads):
                if grad is None:
                    raise CheckError(f"{label}: {method} gave no gradient for parameter "
                                     f"{name!r} of sublayer {key} ({part!r})")
            return result, [grads[name] for name in trained] + list(inner_grads)

        grad_input, grads = gradients("backward")
        assert_gradient_close(grad_input, numeric_gradient(objective, x, eps),
                              f"{label}: the gradient of the input", rtol, atol)
        for what_param, k in checked:

            def at_param(at, k=k):
                changed = list(values)
                changed[k] = backend.asarray(at, "float64")
                return objective(x, changed)

            numeric = numeric_gradient(at_param, to_numpy(values[k]), eps)
            assert_gradient_close(grads[k], numeric,
                                  f"{label}: the gradient of parameter {what_param}", rtol, atol)
        _, only_params = gradients("backward_params")  # need_input=False
        for what_param, k in checked:
            assert_gradient_close(only_params[k], to_numpy(grads[k]),
                                  f"{label}: backward_params's gradient of {what_param} "
                                  "(against backward's)", rtol, atol)
    finally:
        for part in parts:
            vars(part).clear()
            vars(part).update(restore[id(part)])


def _sublayers(layer, prefix="", seen=None):
    """``(key, sublayer)`` for each layer inside the container ``layer``, depth first, once
    each; keys "0", "1", "1.0", ... as a saved network numbers them."""
    seen = {id(layer)} if seen is None else seen
    for index, part in enumerate(getattr(layer, "sublayers", ())):
        key = f"{prefix}{index}"
        if id(part) not in seen:
            seen.add(id(part))
            yield key, part
        yield from _sublayers(part, f"{key}.", seen)


def _float64(array):
    xp = namespace(array)
    return xp.astype(array, xp.float64)


def check_loss(loss, loss_prime, y_true, y_pred, *, rtol=1e-6, atol=1e-8, eps=1e-6):
    """Check ``loss_prime(y_true, y_pred)`` against central finite differences of
    ``loss(y_true, y_pred)`` with respect to ``y_pred`` (host data), in float64 on the
    selected backend; :class:`CheckError` names the loss and the worst element."""
    backend = get_backend()
    target = backend.asarray(to_numpy(y_true), "float64")
    prediction = np.array(to_numpy(y_pred), dtype=np.float64)
    numeric = numeric_gradient(lambda p: float(loss(target, backend.asarray(p, "float64"))),
                               prediction, eps)
    analytic = loss_prime(target, backend.asarray(prediction, "float64"))
    name = getattr(loss, "__name__", repr(loss))
    assert_gradient_close(analytic, numeric, f"the derivative of the loss {name} on {backend}",
                          rtol, atol)


def installed_backends():
    """Names of the backends that import and can allocate on their default device here."""
    found = []
    for name in BACKENDS:
        try:
            with using_backend(name):
                found.append(name)
        except BackendError:
            continue
    return found


def for_each_backend(function, backends=None):
    """Call ``function(backend)`` with each backend selected in turn (default: every installed
    one; build layers inside ``function``, so that they live on that backend), then restore
    the backend that was selected. Returns ``{name: result}``; raises :class:`CheckError`
    naming every backend that failed and why (a named backend that cannot be used fails too).
    """
    names = installed_backends() if backends is None else list(backends)
    results, failures = {}, []
    for name in names:
        try:
            with using_backend(name) as backend:
                results[name] = function(backend)
        except Exception as exc:  # every failure is reported, with its backend
            failures.append((name, exc))
    if failures:
        report = "\n".join(f"  {name}: {type(exc).__name__}: {exc}" for name, exc in failures)
        raise CheckError(f"failed on {len(failures)} of {len(names)} backends "
                         f"({', '.join(name for name, _ in failures)}):\n{report}") \
            from failures[0][1]
    return results
