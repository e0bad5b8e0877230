"""Reading and checking what users give a network: inputs, targets, the network's readiness.

One validation for every entry point (``fit``, ``evaluate``, ``predict``, validation data, the
command line): data become backend rows of the right dtype, integer class labels are one-hot
encoded where the loss wants rows of scores (integer targets stay integers for losses on
classes), and shapes, classes, loss and backend are checked with messages that say the fix.
"""

from __future__ import annotations

import math

from array_api_compat import device as array_device

from .. import losses as losses_module
from ..activations import ACTIVATIONS
from ..backend import (
    device_name,
    dtype_name,
    get_backend,
    namespace,
    readable,
)
from ..data.preprocessing import to_categorical
from ..errors import InputError, ShapeError
from ..layers.activation import ActivationLayer
from ..layers.base import Pass, check_references, not_pure, walk

ACTIVATION_FUNCTIONS = {pair[0] for pair in ACTIVATIONS.values()}


def id_layer(network):
    """The first layer that computes if it takes integer ids (an Embedding), else None."""
    first = next((layer for layer in walk(network.layers)
                  if not getattr(layer, "sublayers", ())), None)
    return first if getattr(first, "takes_ids", False) else None


def check_samples(array, label):
    """InputError unless ``array`` holds at least one sample (rows first) of at least one
    value."""
    if array.ndim == 0 or array.shape[0] == 0:
        raise InputError(f"{label} is empty: give at least one sample (rows first)")
    if 0 in array.shape[1:]:
        raise InputError(f"{label} has samples of shape {tuple(array.shape[1:])}, which hold "
                         "no values: give each sample at least one value")


def integer_rows(data, label):
    """``data`` (token ids, class indices) as a backend integer array: never cast to
    float. InputError for data of another dtype."""
    array, host = readable(data, label)
    if not namespace(array).isdtype(array.dtype, "integral"):
        raise InputError(f"{label} must hold integers (token ids or class indices), got "
                         f"dtype {array.dtype}: convert it, e.g. {label}.astype('int64')")
    check_samples(array, label)
    return (get_backend().asarray(array, "int64") if host else array), host


def as_rows(network, data, label, inputs=False, integers=False):
    """``data`` as a backend array of rows; also (was it host data, was it (N, 1, n)).

    ``inputs`` are scaled by the network's :attr:`scaler`, if it has one; ``integers``
    (and the inputs of a network that takes ids) keep their integer dtype."""
    dtype = network.working_dtype()
    takes_ids = id_layer(network) if inputs else None
    if integers or takes_ids is not None:
        rows, host = integer_rows(data, label)
        if takes_ids is not None:  # here, as a compiled step cannot check values
            takes_ids.check_ids(rows)
        return rows, host, False
    array, host = readable(data, label)
    xp = namespace(array)
    if dtype_name(array) != dtype or not xp.isdtype(array.dtype, "real floating"):
        array = xp.astype(array, getattr(xp, dtype))
    check_samples(array, label)
    if not all_finite(array):  # on the host where the data came from there, before scaling
        raise InputError(f"{label} contains NaN or infinity: clean or impute the data first")
    xp = namespace(array)
    first_shape = getattr(network.layers[0], "input_shape", None) if network.layers else None
    tutorial = (array.ndim == 3 and array.shape[1] == 1
                and (first_shape is None or len(first_shape) == 1))
    if tutorial:
        array = xp.reshape(array, (array.shape[0], array.shape[2]))
    elif array.ndim == 1:
        array = xp.reshape(array, (array.shape[0], 1))
    if inputs and network.scaler is not None:
        array = network.scaler.transform(array, label)
    if host:  # shaped (and scaled) on the host, then copied to the backend once
        array = get_backend().asarray(array, dtype)
    return array, host, tutorial


def all_finite(array) -> bool:
    """True if no element of ``array`` is NaN or infinite: its largest and smallest values are
    finite (the array API's ``max`` and ``min`` propagate NaN). Two passes that make no
    temporary, where ``isfinite`` would make a boolean array the size of the data."""
    xp = namespace(array)
    if math.prod(array.shape) == 0 or not xp.isdtype(array.dtype, "real floating"):
        return True  # integers and booleans have no NaN
    return math.isfinite(float(xp.max(array))) and math.isfinite(float(xp.min(array)))


def check_ready(network, need_loss):
    if not network.layers:
        raise InputError("the network has no layers: add some with net.add(...)")
    if need_loss and network.loss is None:
        raise InputError("no loss set: call net.use(loss, loss_prime) before fit/evaluate")
    check_references(network.layers)
    backend = get_backend()
    for layer in walk(network.layers):
        for name in getattr(layer, "params", ()) + getattr(layer, "buffers", ()):
            value = getattr(layer, name)
            if namespace(value) is not backend.xp or array_device(value) != backend.device:
                raise InputError(
                    f"{layer!r}.{name} lives on {namespace(value).__name__.split('.')[-1]} "
                    f"({device_name(array_device(value))}) but the selected backend is "
                    f"{backend}: move the network with net.to_backend(), or select its "
                    "backend again")
    if network.policy is not None:
        check_precision(network, backend)


def check_precision(network, backend):
    """InputError unless ``network``'s precision policy can run: on ``backend``, with float32
    weights, every layer written with apply."""
    reason = not_pure(network.layers)
    if reason is not None:
        raise InputError(f"precision={network.precision!r} needs layers written with apply: "
                         f"{reason}")
    for layer in walk(network.layers):
        for name in layer.params + layer.buffers:
            if dtype_name(getattr(layer, name)) != "float32":
                raise InputError(
                    f"precision={network.precision!r} keeps float32 master weights, but "
                    f"{layer!r}.{name} is {dtype_name(getattr(layer, name))}: make the "
                    "layers in float32 (layer.astype('float32'))")
    network.policy.check(backend)


def check_loss_fits_output(network):
    """InputError when a loss on probabilities follows a built-in layer that cannot output
    them (raw scores: no softmax or sigmoid last). Other last layers are trusted."""
    wanted = losses_module.PROBABILITY_LOSSES.get(network.loss)
    last = network.layers[-1]
    if wanted is None or type(last).__module__.split(".")[0] != "portanet":
        return
    activation = getattr(last, "activation", None)
    if isinstance(last, ActivationLayer) and activation not in ACTIVATION_FUNCTIONS:
        return  # the user's own activation: it may well output probabilities
    if getattr(activation, "__name__", None) not in wanted:
        raise InputError(
            f"the loss {network.loss.__name__} expects probabilities, but the last layer "
            f"{last!r} outputs raw scores (logits): use net.use('softmax_crossentropy') "
            "(softmax and cross-entropy in one, stable for any scores), or add "
            f"ActivationLayer('{wanted[0]}') as the last layer")


def check_features(network, x, label):
    first, shape = network.layers[0], tuple(x.shape[1:])
    expected = getattr(first, "input_shape", None)
    if expected is not None and shape == (1,) and (x.shape[0],) == tuple(expected) != (1,):
        raise ShapeError(f"{label} looks like one sample of {x.shape[0]} values (a 1-D "
                         "array is read as that many samples of one value): give a batch "
                         f"of one, {label}.reshape(1, -1)")
    if expected is not None and shape != tuple(expected):
        try:  # the layer's own message may say more (e.g. channels-last images)
            first.output_shape(shape)
            detail = ""
        except ShapeError as exc:
            detail = f": {exc}"
        raise ShapeError(f"{label} has per-sample shape {shape} but the first layer "
                         f"{first!r} expects {tuple(expected)}{detail}")


def pair(network, x, y, label="x", shapes=None):
    """``(x, y)`` as backend rows, checked against each other and the network. Integer
    class labels (shape (N,) or (N, 1)) for a network with several outputs become one-hot
    rows, so every entry point scores them as it would one-hot targets; a loss on integer
    targets (``sparse_softmax_crossentropy``) keeps them as integers, whatever their
    shape. ``shapes`` (a dict) keeps the network's output shapes per input shape, for callers
    checking batch after batch (see :func:`output_shape_for`)."""
    y_label = label.replace("x", "y")
    x_rows, _, _ = as_rows(network, x, label, inputs=True)
    check_features(network, x_rows, label)
    if network.loss in losses_module.INTEGER_TARGET_LOSSES:
        y_rows, _, _ = as_rows(network, y, y_label, integers=True)
    else:
        y_rows, _, _ = as_rows(network, one_hot_labels(network, y, x_rows, y_label, shapes),
                               y_label)
    if x_rows.shape[0] != y_rows.shape[0]:
        raise InputError(f"{label} has {x_rows.shape[0]} samples but {y_label} has "
                         f"{y_rows.shape[0]}: they must match")
    if network.loss in losses_module.INTEGER_TARGET_LOSSES:
        check_classes(network, x_rows, y_rows, y_label, shapes)
        return x_rows, y_rows
    shape = output_shape_for(network, x_rows, tuple(y_rows.shape[1:]), shapes)
    if shape != tuple(y_rows.shape[1:]):
        raise ShapeError(f"the network outputs per-sample shape {shape} but {y_label} has "
                         f"{tuple(y_rows.shape[1:])}: give one target per output (one-hot "
                         "rows, e.g. portanet.preprocessing.to_categorical(labels)) or "
                         "integer class labels of shape (N,); for integer classes of "
                         "every position, net.use('sparse_softmax_crossentropy')")
    return x_rows, y_rows


def check_classes(network, x, y, label, shapes=None):
    """ShapeError unless integer targets ``y`` name one class per output row of the network
    for ``x``; InputError for classes out of range."""
    shape = output_shape_for(network, x, shapes=shapes)
    if shape[:-1] != tuple(y.shape[1:]):
        raise ShapeError(f"the network outputs per-sample shape {shape}, so {label} needs one "
                         f"class index per row of scores: per-sample shape {shape[:-1]}, got "
                         f"{tuple(y.shape[1:])}")
    xp = namespace(y)
    low, high = int(xp.min(y)), int(xp.max(y))
    if low < 0 or high >= shape[-1]:
        raise InputError(f"{label} holds classes from {low} to {high}, but the network "
                         f"scores classes 0 to {shape[-1] - 1}")


def output_shape_for(network, x, expected=None, shapes=None):
    """Per-sample output shape for rows ``x``: from the layers' shapes where they know it
    (and it is the ``expected`` one), else from a trial run on one row, kept in ``shapes``
    (a dict, per input shape) where given."""
    shape = network.output_shape()
    if shape is None or tuple(shape) != expected:
        key = tuple(x.shape[1:])
        if shapes is not None and key in shapes:
            return shapes[key]
        trial = Pass.of(network.layers).output(network.layers, x[:1, ...])  # one row through
        shape = tuple(trial.shape[1:])
        if shapes is not None:
            shapes[key] = shape
    return tuple(shape)


def one_hot_labels(network, y, x, label="y", shapes=None):
    """``y`` one-hot encoded if it holds integer class labels for a network with several
    outputs (InputError for labels outside its classes); else ``y`` as an array."""
    array, _ = readable(y, label)
    xp = namespace(array)
    if not (xp.isdtype(array.dtype, "integral") and array.shape[0] > 0
            and (array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1))):
        return array
    shape = output_shape_for(network, x, shapes=shapes)
    if len(shape) != 1 or shape[0] < 2:
        return array
    return to_categorical(xp.reshape(array, (-1,)), shape[0])
