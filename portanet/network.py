"""The Network: a stack of layers trained by mini-batch gradient descent."""

from __future__ import annotations

import math

from . import losses as losses_module
from . import precision as precision_module
from ._checks import float_dtype, function, sample_shape
from .activations import softmax
from .backend import dtype_name, get_backend, namespace, to_numpy
from .errors import InputError, ModelFileError, PortanetError, ShapeError
from .layers.base import Layer, check_references, unique, walk, walk_shapes
from .saving import format as saving
from .saving.state import TrainingState
from .training import evaluation, feed, inputs, loop, world


class Network:
    """A sequence of layers with a loss: ``add``, ``use``, ``fit``, ``predict``, ``evaluate``.

    ``Network([layer, ...])`` adds the layers in order, as ``add`` would. ``dtype`` ("float32"
    or "float64") casts every added layer's parameters; by default layers
    keep the dtype they were made with (float32 unless asked otherwise). ``scaler``, a fitted
    :class:`portanet.preprocessing.Scaler`, scales the inputs of fit, predict and evaluate
    (give them raw data) and is saved with the network. ``precision`` ("mixed_bfloat16" or
    "mixed_float16"; None: compute in the weights' dtype) is a precision policy: fit, predict
    and evaluate compute in 16 bits, the weights stay float32 (see :mod:`portanet.precision`).
    """

    def __init__(self, layers=None, *, dtype: str | None = None, precision: str | None = None):
        if layers is not None and not isinstance(layers, (list, tuple)):
            hint = (f"give the dtype by name, Network(dtype={layers!r})"
                    if layers in ("float32", "float64") else
                    "e.g. Network([FCLayer(2, 3), ActivationLayer('tanh')]), or Network() and add")
            raise InputError(f"Network's first argument is a list of layers, got {layers!r}: "
                             f"{hint}")
        if dtype is not None:
            float_dtype("dtype", dtype)
        self.layers: list = []
        self.precision = precision
        if self.policy is not None and dtype not in (None, "float32"):
            raise InputError(f"precision={precision!r} keeps float32 weights: give "
                             f"dtype='float32' or leave dtype out, got {dtype!r}")
        self.loss = None
        self.loss_prime = None
        self.dtype = dtype
        self.metadata: dict = {}  # free-form JSON-able notes saved with the network
        self.scaler = None  # a fitted portanet.data.preprocessing scaler applied to every input
        self.cache: dict = {}  # steps and compiled functions made for it (training.cache)
        self.stop_training = False  # set by a callback to end fit (portanet.callbacks)
        for layer in layers or ():
            self.add(layer)

    @property
    def precision(self) -> str | None:
        """The name of the precision policy, or None (see :mod:`portanet.precision`)."""
        return None if self.policy is None else self.policy.name

    @precision.setter
    def precision(self, name):
        self.policy = precision_module.policy(name)

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
        check_references([*self.layers, layer])
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

    def layer_shapes(self):
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
        shapes = [shape for _, shape in self.layer_shapes()]
        return shapes[-1] if shapes else None

    # -- running ----------------------------------------------------------------------------
    def working_dtype(self) -> str:
        """The dtype the network computes in: ``dtype`` when given, else its first
        parameter's ("float32" without parameters)."""
        if self.dtype is not None:
            return self.dtype
        for layer in walk(self.layers):
            for name in getattr(layer, "params", ()):
                return dtype_name(getattr(layer, name))
        return "float32"

    def to_backend(self):
        """Move every layer's parameters and buffers to the selected backend and device
        (after :func:`portanet.set_backend`); returns the network."""
        for layer in walk(self.layers):
            if getattr(layer, "params", ()) or getattr(layer, "buffers", ()):
                layer.set_weights(layer.get_weights())
        self.cache.clear()
        return self

    def predict(self, x, batch_size=None):
        """Network output for ``x`` (inference mode).

        NumPy in gives NumPy out, backend arrays give backend arrays; the tutorial's layout
        ``(N, 1, n)`` comes back as ``(N, 1, outputs)``. ``batch_size`` rows go through at a
        time (default: as many as keep every layer's output under PREDICT_VALUES values).
        """
        inputs.check_ready(self, need_loss=False)
        if feed.streams(x):
            return evaluation.predict_stream(self, feed.loader_for(x, None, batch_size))
        rows, host, tutorial = inputs.as_rows(self, x, "x", inputs=True)
        inputs.check_features(self, rows, "x")
        out = evaluation.predict_rows(self, rows, batch_size)
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
        inputs.check_ready(self, need_loss=False)
        if feed.streams(x):
            out, host = evaluation.predict_stream(self, feed.loader_for(x, None, batch_size)), True
            out = get_backend().asarray(out, self.working_dtype())
        else:
            rows, host, _ = inputs.as_rows(self, x, "x", inputs=True)
            inputs.check_features(self, rows, "x")
            out = evaluation.predict_rows(self, rows, batch_size)
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

    def evaluate(self, x, y=None, batch_size=None, distributed=False):
        """Loss and accuracy on ``(x, y)`` in inference mode, as a dict of floats. ``x`` may
        also be a data set or Loader giving ``(x, y)`` batches, or a memory map (read in
        batches).

        ``distributed=True`` (under MPI, every rank holding all of ``x`` and ``y``) splits the
        samples over the ranks and sums their results: every rank gets the whole set's figures.
        """
        processes = world.resolve(distributed)
        inputs.check_ready(self, need_loss=True)
        inputs.check_loss_fits_output(self)
        if feed.streams(x, y):
            loss, acc = evaluation.score_stream(self, feed.loader_for(x, y, batch_size),
                                                processes)
            return {"loss": loss, "accuracy": acc}
        if y is None:
            raise InputError("y is missing: give the targets (evaluate(x, y)), or a data set "
                             "or Loader that gives (x, y) batches")
        x_rows, y_rows = inputs.pair(self, x, y)
        loss, acc = evaluation.score(self, x_rows, y_rows, batch_size, processes)
        return {"loss": loss, "accuracy": acc}

    # -- training ---------------------------------------------------------------------------
    def fit(self, x_train, y_train=None, epochs=1, learning_rate=None, batch_size=1,
            shuffle=False, optimizer=None, validation_data=None, validation_split=0.0,
            verbose=1, distributed=False, compile="auto", metrics=(), callbacks=None,
            initial_epoch=0):
        """Train for ``epochs`` passes over ``(x_train, y_train)``; return a :class:`History`.

        ``x_train`` may also be a data set or a :class:`portanet.data.Loader` giving ``(x, y)``
        batches (``y_train`` left out), or a memory map: such data are read batch by batch,
        ahead of the step in a background thread, never whole (see :mod:`portanet.data`).

        The defaults are the tutorial's algorithm: one sample at a time, in order, plain SGD at
        ``learning_rate``, a line ``epoch i/N   error=...`` per epoch (the error is the epoch's
        mean loss, ``history.history["loss"]``). ``batch_size`` > 1 trains on vectorised
        mini-batches, ``shuffle=True`` reorders samples each epoch from the seeded generator;
        ``optimizer`` is a :mod:`portanet.optimizers` object or name. ``learning_rate``, where
        not given, is the optimizer's own default: 0.01 for the tutorial's SGD (and "momentum",
        "nesterov"), 1e-3 for "rmsprop", "adam" and "adamw", as in Keras; an optimizer object
        keeps its own rate.
        ``validation_data=(x, y)`` (or a data set, or a Loader) or ``validation_split`` (the
        last fraction of the training data) adds "val_loss" and "val_accuracy";
        ``metrics=["accuracy"]`` adds the training accuracy of each epoch ("accuracy", over its
        batches as they were trained). Ctrl-C stops after the current batch and keeps the
        network as trained so far; a non-finite loss raises :class:`TrainingError`.
        ``callbacks``, a list of :mod:`portanet.callbacks` objects
        (:class:`~portanet.callbacks.EarlyStopping`, ``ModelCheckpoint``,
        ``LearningRateScheduler``, ``CSVLogger`` or your own), run at each epoch and batch;
        ``history.stop_reason`` says why training ended.

        ``initial_epoch`` (as in Keras) resumes a training: ``epochs`` is then the number of the
        last epoch, and epochs ``initial_epoch + 1`` to ``epochs`` are trained, numbered so in
        the history, the callbacks and the progress lines (see :func:`portanet.load_training`
        and :class:`~portanet.callbacks.BackupAndRestore`).

        ``compile`` ("auto", True or False) compiles the training step where the backend can
        (``jax.jit`` on JAX; see :mod:`portanet.backend.compilers`): "auto" does so where it
        measured faster, and ``PORTANET_COMPILE`` overrides it. The results equal eager
        training's (to rounding). Layers in the tutorial's self-updating style run eagerly.

        ``distributed=True`` trains data-parallel over the processes of an MPI job (see
        :mod:`portanet.distributed`): every rank calls ``fit`` with the same data, each
        computes its share of every batch, and all end with the same weights as one process
        training with the same ``batch_size`` would; only rank 0 prints.
        """
        return loop.fit(self, x_train, y_train, epochs, learning_rate, batch_size, shuffle,
                            optimizer, validation_data, validation_split, verbose, distributed,
                            compile, metrics, callbacks, initial_epoch)

    # -- inspecting and saving -----------------------------------------------------------
    def summary(self, print_fn=print, input_shape=None):
        """Print each layer, its per-sample output shape and parameter count, and the totals;
        the layers of a container follow it, indented. Shapes start from ``input_shape`` (per
        sample, e.g. ``(context,)`` for a language model), else from the first layer that
        declares one; "?" where neither says. A layer used at several places is marked
        "(shared)" after its first use; its parameters count once in the total."""
        rows, seen = [], set()
        function("print_fn", print_fn)
        start = None if input_shape is None else sample_shape("input_shape", input_shape)
        for layer, depth, shape in walk_shapes(self.layers, start):
            if shape is not None and isinstance(layer, Layer):
                shape = layer.output_shape(shape)
            count = sum(math.prod(getattr(part, name).shape) for part in unique(walk([layer]))
                        for name in getattr(part, "params", ()))
            name = type(layer).__name__ if getattr(layer, "sublayers", ()) else repr(layer)
            if id(layer) in seen:
                name += " (shared)"
            seen.add(id(layer))
            rows.append(("  " * depth + name, "?" if shape is None else str(tuple(shape)),
                         count))
        total = sum(math.prod(getattr(layer, name).shape) for layer in unique(walk(self.layers))
                    for name in getattr(layer, "params", ()))
        width = max([len(r[0]) for r in rows] + [5])
        lines = [f"{'layer':<{width}}  {'output shape':<16}{'params':>10}"]
        lines += [f"{name:<{width}}  {out:<16}{count:>10,}" for name, out, count in rows]
        precision = f"   precision: {self.precision}" if self.precision else ""
        lines.append(f"total trainable parameters: {total:,}   dtype: {self.working_dtype()}"
                     f"{precision}")
        print_fn("\n".join(lines))

    def save(self, path):
        """Save architecture and weights to ``path`` (.npz or .safetensors, no pickle); read by
        portanet.load. WriteError (the file before kept) where the disk refuses the write."""
        return saving.save(self, path)

    def __repr__(self):
        return "Network(" + ", ".join(repr(layer) for layer in self.layers) + ")"


def load(path) -> Network:
    """Rebuild a network saved with :meth:`Network.save` on the current backend."""
    return _assembled(path, *saving.read(path))


def load_training(path, optimizer=None):
    """``(network, optimizer, epoch)`` from a training state that
    :func:`portanet.save_training` (or :class:`~portanet.callbacks.BackupAndRestore`) wrote,
    on the current backend; portanet's random generator is set to its saved state, so that
    ``network.fit(..., optimizer=optimizer, initial_epoch=epoch)`` goes on as the saved
    training would have. ``optimizer``, where given, gets the saved state (it must be of the
    saved type and settings; an optimizer with a ``schedule`` must be given, as a function is
    not saved); else a new one is made from the saved settings."""
    state = TrainingState(saving.saved_path(path))
    network = _assembled(path, state.header, *state.layers())
    optimizer = state.optimizer() if optimizer is None else optimizer
    return network, optimizer, state.restore(network, optimizer)


def _assembled(path, header, layers, scaler) -> Network:
    """The network of the layers and scaler read from ``path``, as its ``header`` says."""
    network = Network(dtype=header["dtype"], precision=header.get("precision"))
    try:
        for layer in layers:
            network.add(layer)
    except PortanetError as exc:
        raise ModelFileError(f"{path}: the saved layers do not fit together: {exc}") from None
    if header["loss"] is not None:
        network.use(header["loss"])
    network.metadata = header.get("metadata") or {}
    network.scaler = scaler
    return network
