"""The Network: a stack of layers trained by mini-batch gradient descent."""

from __future__ import annotations

import math

from array_api_compat import device as array_device

from . import distributed as distributed_module
from . import losses as losses_module
from . import training
from .activations import ACTIVATIONS, softmax
from .backend import (
    compilers,
    device_name,
    dtype_name,
    get_backend,
    host_array_view,
    is_host_data,
    namespace,
    to_numpy,
)
from .errors import InputError, ShapeError
from .layers.activation import ActivationLayer
from .layers.base import Layer, walk, walk_shapes
from .metrics import accuracy
from .preprocessing import to_categorical
from .step import Inference, forward, is_native, lent
from .training import History  # noqa: F401  (its old home: portanet.network.History)

ACTIVATION_FUNCTIONS = {pair[0] for pair in ACTIVATIONS.values()}

PREDICT_VALUES = 2 ** 25  # most values a layer outputs in one predict pass (128 MB in float32)


class Network:
    """A sequence of layers with a loss: ``add``, ``use``, ``fit``, ``predict``, ``evaluate``.

    ``Network([layer, ...])`` adds the layers in order, as ``add`` would. ``dtype`` ("float32"
    or "float64") casts every added layer's parameters; by default layers
    keep the dtype they were made with (float32 unless asked otherwise). ``scaler``, a fitted
    :class:`portanet.preprocessing.Scaler`, scales the inputs of fit, predict and evaluate
    (give them raw data) and is saved with the network.
    """

    def __init__(self, layers=None, *, dtype: str | None = None):
        if isinstance(layers, str):
            hint = (f"give the dtype by name, Network(dtype={layers!r})"
                    if layers in ("float32", "float64") else
                    "e.g. Network([FCLayer(2, 3), ActivationLayer('tanh')]), or Network() and add")
            raise InputError(f"Network's first argument is a list of layers, got {layers!r}: "
                             f"{hint}")
        if dtype not in (None, "float32", "float64"):
            raise InputError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.layers: list = []
        self.loss = None
        self.loss_prime = None
        self.dtype = dtype
        self.metadata: dict = {}  # free-form JSON-able notes saved with the network
        self.scaler = None  # a fitted portanet.preprocessing scaler applied to every input
        self._cache: dict = {}  # steps and compiled functions, per layers and settings
        self.stop_training = False  # set by a callback to end fit (portanet.callbacks)
        for layer in layers or ():
            self.add(layer)

    # -- building ---------------------------------------------------------------------------
    def add(self, layer):
        """Append ``layer``; ShapeError if its input size does not match the previous output."""
        if not (hasattr(layer, "forward") or hasattr(layer, "forward_propagation")):
            raise InputError(f"{layer!r} is not a layer (it has no forward_propagation method)")
        if self.dtype is not None and isinstance(layer, Layer):
            layer.astype(self.dtype)
        shape = self.output_shape()
        if shape is not None and isinstance(layer, Layer):
            try:
                layer.output_shape(shape)
            except ShapeError as exc:
                raise ShapeError(f"{layer!r} cannot follow {self.layers[-1]!r}, which outputs "
                                 f"per-sample shape {shape}: {exc}") from None
        self.layers.append(layer)
        return self

    def use(self, loss, loss_prime=None):
        """Set the loss and its derivative, or a built-in loss by name ("mse", ...)."""
        if isinstance(loss, str):
            if loss not in losses_module.LOSSES:
                raise InputError(f"unknown loss {loss!r}: choose one of "
                                 f"{', '.join(losses_module.LOSSES)}")
            loss, loss_prime = losses_module.LOSSES[loss]
        if not callable(loss) or not callable(loss_prime):
            raise InputError("use() needs a loss and its derivative (two functions), "
                             "or the name of a built-in loss")
        self.loss, self.loss_prime = loss, loss_prime

    def _shapes(self):
        """Yield each layer with its per-sample output shape (None where it is unknown)."""
        shape = None
        for layer in self.layers:
            if shape is None:
                shape = getattr(layer, "input_shape", None)
            if shape is not None:
                shape = layer.output_shape(shape) if isinstance(layer, Layer) else None
            yield layer, shape

    def output_shape(self):
        """Per-sample output shape of the network, or None where it is unknown."""
        shapes = [shape for _, shape in self._shapes()]
        return shapes[-1] if shapes else None

    # -- running ----------------------------------------------------------------------------
    def _forward(self, x, training):
        return forward(self.layers, x, training)

    def _cached(self, key, make):
        """``make()``, made once per ``key`` and per layers (their identity and settings)."""
        key = (key, tuple((id(layer), repr(layer)) for layer in self.layers))
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _working_dtype(self) -> str:
        if self.dtype is not None:
            return self.dtype
        for layer in walk(self.layers):
            for name in getattr(layer, "params", ()):
                return dtype_name(getattr(layer, name))
        return "float32"

    def _id_layer(self):
        """The first layer that computes if it takes integer ids (an Embedding), else None."""
        first = next((layer for layer in walk(self.layers)
                      if not getattr(layer, "sublayers", ())), None)
        return first if getattr(first, "takes_ids", False) else None

    def _integer_rows(self, data, label):
        """``data`` (token ids, class indices) as a backend integer array: never cast to
        float. InputError for data of another dtype."""
        host = is_host_data(data)
        array = host_array_view(data) if host else data
        if not namespace(array).isdtype(array.dtype, "integral"):
            raise InputError(f"{label} must hold integers (token ids or class indices), got "
                             f"dtype {array.dtype}: convert it, e.g. {label}.astype('int64')")
        if array.ndim == 0 or array.shape[0] == 0:
            raise InputError(f"{label} is empty: give at least one sample (rows first)")
        return get_backend().asarray(array, "int64") if host else array

    def _as_rows(self, data, label, inputs=False, integers=False):
        """``data`` as a backend array of rows; also (was it host data, was it (N, 1, n)).

        ``inputs`` are scaled by the network's :attr:`scaler`, if it has one; ``integers``
        (and the inputs of a network that takes ids) keep their integer dtype."""
        dtype = self._working_dtype()
        host = is_host_data(data)
        id_layer = self._id_layer() if inputs else None
        if integers or id_layer is not None:
            rows = self._integer_rows(data, label)
            if id_layer is not None:  # here, as a compiled step cannot check values
                id_layer.check_ids(rows)
            return rows, host, False
        if host:
            try:
                array = host_array_view(data, dtype)
            except (TypeError, ValueError) as exc:
                raise InputError(f"{label} cannot be read as an array of numbers: {exc}") from None
        else:
            array = data
            if dtype_name(array) != dtype or not namespace(array).isdtype(array.dtype,
                                                                          "real floating"):
                xp = namespace(array)
                array = xp.astype(array, getattr(xp, dtype))
        if array.ndim == 0 or array.shape[0] == 0:
            raise InputError(f"{label} is empty: give at least one sample (rows first)")
        xp = namespace(array)
        first_shape = getattr(self.layers[0], "input_shape", None) if self.layers else None
        tutorial = (array.ndim == 3 and array.shape[1] == 1
                    and (first_shape is None or len(first_shape) == 1))
        if tutorial:
            array = xp.reshape(array, (array.shape[0], array.shape[2]))
        elif array.ndim == 1:
            array = xp.reshape(array, (array.shape[0], 1))
        if inputs and self.scaler is not None:
            array = self.scaler.transform(array, label)
        if host:  # shaped (and scaled) on the host, then copied to the backend once
            array = get_backend().asarray(array, dtype)
        return array, host, tutorial

    def _check_ready(self, need_loss):
        if not self.layers:
            raise InputError("the network has no layers: add some with net.add(...)")
        if need_loss and self.loss is None:
            raise InputError("no loss set: call net.use(loss, loss_prime) before fit/evaluate")
        backend = get_backend()
        for layer in walk(self.layers):
            for name in getattr(layer, "params", ()) + getattr(layer, "buffers", ()):
                value = getattr(layer, name)
                if namespace(value) is not backend.xp or array_device(value) != backend.device:
                    raise InputError(
                        f"{layer!r}.{name} lives on {namespace(value).__name__.split('.')[-1]} "
                        f"({device_name(array_device(value))}) but the selected backend is "
                        f"{backend}: move the network with net.to_backend(), or select its "
                        "backend again")

    def _check_loss_fits_output(self):
        """InputError when a loss on probabilities follows a built-in layer that cannot output
        them (raw scores: no softmax or sigmoid last). Other last layers are trusted."""
        wanted = losses_module.PROBABILITY_LOSSES.get(self.loss)
        last = self.layers[-1]
        if wanted is None or type(last).__module__.split(".")[0] != "portanet":
            return
        activation = getattr(last, "activation", None)
        if isinstance(last, ActivationLayer) and activation not in ACTIVATION_FUNCTIONS:
            return  # the user's own activation: it may well output probabilities
        if getattr(activation, "__name__", None) not in wanted:
            raise InputError(
                f"the loss {self.loss.__name__} expects probabilities, but the last layer "
                f"{last!r} outputs raw scores (logits): use net.use('softmax_crossentropy') "
                "(softmax and cross-entropy in one, stable for any scores), or add "
                f"ActivationLayer('{wanted[0]}') as the last layer")

    def to_backend(self):
        """Move every layer's parameters and buffers to the selected backend and device
        (after :func:`portanet.set_backend`); returns the network."""
        for layer in walk(self.layers):
            if getattr(layer, "params", ()) or getattr(layer, "buffers", ()):
                layer.set_weights(layer.get_weights())
        self._cache.clear()
        return self

    def _check_features(self, x, label):
        first, shape = self.layers[0], tuple(x.shape[1:])
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

    def predict(self, x, batch_size=None):
        """Network output for ``x`` (inference mode).

        NumPy in gives NumPy out, backend arrays give backend arrays; the tutorial's layout
        ``(N, 1, n)`` comes back as ``(N, 1, outputs)``. ``batch_size`` rows go through at a
        time (default: as many as keep every layer's output under PREDICT_VALUES values).
        """
        self._check_ready(need_loss=False)
        rows, host, tutorial = self._as_rows(x, "x", inputs=True)
        self._check_features(rows, "x")
        out = self._predict_rows(rows, batch_size)
        if tutorial:
            out = namespace(out).reshape(out, (out.shape[0], 1, out.shape[1]))
        return to_numpy(out) if host else out

    def predict_proba(self, x, batch_size=None):
        """Class probabilities for ``x``, shape (N, classes), whatever the output layer and loss:
        the softmax of the outputs for a network trained on logits (``softmax_crossentropy``),
        the outputs themselves after a softmax, ``[1 - p, p]`` for one sigmoid output.
        InputError for a network whose outputs are not probabilities (e.g. tanh with MSE)."""
        return self._classified(x, batch_size, probabilities=True)

    def predict_classes(self, x, batch_size=None):
        """The predicted class index of each sample of ``x`` (the largest output; for a single
        output, whether it is above 0.5): integers, shape (N,)."""
        return self._classified(x, batch_size, probabilities=False)

    def _classified(self, x, batch_size, probabilities):
        self._check_ready(need_loss=False)
        rows, host, _ = self._as_rows(x, "x", inputs=True)
        self._check_features(rows, "x")
        out = self._predict_rows(rows, batch_size)
        xp = namespace(out)
        if probabilities:
            out = self._probabilities(out)
        elif out.shape[-1] == 1:
            out = xp.astype(out[:, 0] > 0.5, xp.int64)
        else:
            out = xp.argmax(out, axis=-1)
        return to_numpy(out) if host else out

    def _probabilities(self, out):
        """The network's outputs ``out`` as class probabilities (see :meth:`predict_proba`)."""
        xp = namespace(out)
        name = getattr(getattr(self.layers[-1], "activation", None), "__name__", None)
        if self.loss in (losses_module.softmax_crossentropy,
                         losses_module.sparse_softmax_crossentropy):
            return softmax(out)
        if name == "softmax":
            return out
        if name == "sigmoid" and out.shape[-1] == 1:
            return xp.concat([1.0 - out, out], axis=-1)
        raise InputError(
            f"this network's outputs are not probabilities (last layer {self.layers[-1]!r}, loss "
            f"{getattr(self.loss, '__name__', None)}): use predict_classes for class indices, or "
            "train with net.use('softmax_crossentropy') for probabilities")

    def _predict_rows(self, rows, batch_size=None):
        n = rows.shape[0]
        if batch_size is None:
            widest = max([math.prod(shape) for _, shape in self._shapes() if shape is not None]
                         + [math.prod(rows.shape[1:])])
            batch_size = max(1, PREDICT_VALUES // widest)
        tutorial_style = next((layer for layer in self.layers if not is_native(layer)), None)
        compiler = compilers.choose(get_backend(), "auto", tutorial_style and "tutorial-style "
                                    "layers keep weights the compiler cannot see")
        inference = self._cached(("inference", compiler.name), lambda: Inference(self.layers))
        run = self._cached(("inference-run", compiler.name), lambda: compilers.compiled(
            compiler, inference, "the inference forward pass"))
        weights = inference.weights()
        parts = [run(weights, rows[i:min(i + batch_size, n), ...]) for i in range(0, n, batch_size)]
        return parts[0] if len(parts) == 1 else namespace(parts[0]).concat(parts, axis=0)

    def evaluate(self, x, y, batch_size=None, distributed=False):
        """Loss and accuracy on ``(x, y)`` in inference mode, as a dict of floats.

        ``distributed=True`` (under MPI, every rank holding all of ``x`` and ``y``) splits the
        samples over the ranks and sums their results: every rank gets the whole set's figures.
        """
        world = distributed_module.resolve(distributed)
        self._check_ready(need_loss=True)
        self._check_loss_fits_output()
        x_rows, y_rows = self._pair(x, y)
        loss, acc = self._score(x_rows, y_rows, batch_size, world)
        return {"loss": loss, "accuracy": acc}

    def _score(self, x, y, batch_size=None, world=None):
        """(mean loss, accuracy) over all rows, or over all ranks' shards of them."""
        n = x.shape[0]
        world = world or distributed_module.SINGLE
        lo, hi = world.shard(0, n)
        sums = [0.0, 0.0]
        if hi > lo:
            out = self._predict_rows(x[lo:hi, ...], batch_size)
            sums = [float(self.loss(y[lo:hi, ...], out)) * (hi - lo),
                    float(accuracy(y[lo:hi, ...], out)) * (hi - lo)]
        sums = world.sum(sums, "the evaluation")
        return sums[0] / n, sums[1] / n

    def _pair(self, x, y, label="x"):
        """``(x, y)`` as backend rows, checked against each other and the network. Integer
        class labels (shape (N,) or (N, 1)) for a network with several outputs become one-hot
        rows, so every entry point scores them as it would one-hot targets; a loss on integer
        targets (``sparse_softmax_crossentropy``) keeps them as integers, whatever their
        shape."""
        y_label = label.replace("x", "y")
        x_rows, _, _ = self._as_rows(x, label, inputs=True)
        self._check_features(x_rows, label)
        if self.loss in losses_module.INTEGER_TARGET_LOSSES:
            y_rows, _, _ = self._as_rows(y, y_label, integers=True)
        else:
            y_rows, _, _ = self._as_rows(self._one_hot_labels(y, x_rows), y_label)
        if x_rows.shape[0] != y_rows.shape[0]:
            raise InputError(f"{label} has {x_rows.shape[0]} samples but {y_label} has "
                             f"{y_rows.shape[0]}: they must match")
        if self.loss in losses_module.INTEGER_TARGET_LOSSES:
            self._check_classes(x_rows, y_rows, y_label)
            return x_rows, y_rows
        shape = self._output_shape_for(x_rows, tuple(y_rows.shape[1:]))
        if shape != tuple(y_rows.shape[1:]):
            raise ShapeError(f"the network outputs per-sample shape {shape} but {y_label} has "
                             f"{tuple(y_rows.shape[1:])}: give one target per output (one-hot "
                             "rows, e.g. portanet.preprocessing.to_categorical(labels)) or "
                             "integer class labels of shape (N,); for integer classes of "
                             "every position, net.use('sparse_softmax_crossentropy')")
        return x_rows, y_rows

    def _check_classes(self, x, y, label):
        """ShapeError unless integer targets ``y`` name one class per output row of the network
        for ``x``; InputError for classes out of range."""
        shape = self._output_shape_for(x)
        if shape[:-1] != tuple(y.shape[1:]):
            raise ShapeError(f"the network outputs per-sample shape {shape}, so {label} needs one "
                             f"class index per row of scores: per-sample shape {shape[:-1]}, got "
                             f"{tuple(y.shape[1:])}")
        xp = namespace(y)
        low, high = int(xp.min(y)), int(xp.max(y))
        if low < 0 or high >= shape[-1]:
            raise InputError(f"{label} holds classes from {low} to {high}, but the network "
                             f"scores classes 0 to {shape[-1] - 1}")

    def _output_shape_for(self, x, expected=None):
        """Per-sample output shape for rows ``x``: from the layers' shapes where they know it
        (and it is the ``expected`` one), else from a trial run on one row."""
        shape = self.output_shape()
        if shape is None or tuple(shape) != expected:
            with lent(self.layers, ()):  # a trial run that leaves nothing on the layers
                shape = self._forward(x[:1, ...], training=False).shape[1:]
        return tuple(shape)

    def _one_hot_labels(self, y, x):
        """``y`` one-hot encoded if it holds integer class labels for a network with several
        outputs (InputError for labels outside its classes); else ``y`` unchanged."""
        array = host_array_view(y) if is_host_data(y) else y
        xp = namespace(array)
        if not (xp.isdtype(array.dtype, "integral") and array.shape[0] > 0
                and (array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1))):
            return y
        shape = self._output_shape_for(x)
        if len(shape) != 1 or shape[0] < 2:
            return y
        return to_categorical(xp.reshape(array, (-1,)), shape[0])

    # -- training ---------------------------------------------------------------------------
    def fit(self, x_train, y_train, epochs, learning_rate=0.01, batch_size=1, shuffle=False,
            optimizer=None, validation_data=None, validation_split=0.0, verbose=1,
            distributed=False, compile="auto", metrics=(), callbacks=None):
        """Train for ``epochs`` passes over ``(x_train, y_train)``; return a :class:`History`.

        The defaults are the tutorial's algorithm: one sample at a time, in order, plain SGD at
        ``learning_rate``, a line ``epoch i/N   error=...`` per epoch. ``batch_size`` > 1 trains
        on vectorised mini-batches, ``shuffle=True`` reorders samples each epoch from the seeded
        generator; ``optimizer`` is a :mod:`portanet.optimizers` object or name.
        ``validation_data=(x, y)`` or ``validation_split`` (the last fraction of the training
        data) adds "val_loss" and "val_accuracy"; ``metrics=["accuracy"]`` adds the training
        accuracy of each epoch ("accuracy", over its batches as they were trained). Ctrl-C stops
        after the current batch and keeps the network as trained so far; a non-finite loss
        raises :class:`TrainingError`. ``callbacks``, a list of :mod:`portanet.callbacks`
        objects (:class:`~portanet.callbacks.EarlyStopping`, ``ModelCheckpoint``,
        ``LearningRateScheduler``, ``CSVLogger`` or your own), run at each epoch and batch;
        ``history.stop_reason`` says why training ended.

        ``compile`` ("auto", True or False) compiles the training step where the backend can
        (``jax.jit`` on JAX; see :mod:`portanet.backend.compilers`): "auto" does so where it
        measured faster, and ``PORTANET_COMPILE`` overrides it. The results equal eager
        training's (to rounding). Layers in the tutorial's self-updating style run eagerly.

        ``distributed=True`` trains data-parallel over the processes of an MPI job (see
        :mod:`portanet.distributed`): every rank calls ``fit`` with the same data, each
        computes its share of every batch, and all end with the same weights as one process
        training with the same ``batch_size`` would; only rank 0 prints.
        """
        return training.fit(self, x_train, y_train, epochs, learning_rate, batch_size, shuffle,
                            optimizer, validation_data, validation_split, verbose, distributed,
                            compile, metrics, callbacks)

    # -- inspecting and saving -----------------------------------------------------------
    def summary(self, print_fn=print):
        """Print each layer, its per-sample output shape and parameter count, and the totals;
        the layers of a container follow it, indented."""
        rows, total = [], 0
        for layer, depth, shape in walk_shapes(self.layers, None):
            if shape is not None and isinstance(layer, Layer):
                shape = layer.output_shape(shape)
            count = sum(math.prod(getattr(part, name).shape) for part in walk([layer])
                        for name in getattr(part, "params", ()))
            total += count if depth == 0 else 0
            name = type(layer).__name__ if getattr(layer, "sublayers", ()) else repr(layer)
            rows.append(("  " * depth + name, "?" if shape is None else str(tuple(shape)),
                         count))
        width = max([len(r[0]) for r in rows] + [5])
        lines = [f"{'layer':<{width}}  {'output shape':<16}{'params':>10}"]
        lines += [f"{name:<{width}}  {out:<16}{count:>10,}" for name, out, count in rows]
        lines.append(f"total trainable parameters: {total:,}   dtype: {self._working_dtype()}")
        print_fn("\n".join(lines))

    def save(self, path):
        """Save architecture and weights to ``path`` (.npz or .safetensors, no pickle); read by
        portanet.load."""
        from .io import save

        return save(self, path)

    def __repr__(self):
        return "Network(" + ", ".join(repr(layer) for layer in self.layers) + ")"
