"""Keras 3 on JAX beside portanet and PyTorch: the benchmark's optional "keras" column."""

from __future__ import annotations

import os

from cases import epoch_order

KERAS_KINDS = ("train", "cnn", "predict")  # the cases Keras runs (not the transformer)


class KerasRun:
    """The same model in Keras 3 on JAX (``KERAS_BACKEND=jax``): ``Sequential``, its loss and
    optimizer, ``fit`` one epoch at a time on the batches in the others' order, ``predict``.
    Images are channels-last, Keras's default (portanet's NCHW weights transposed to match, the
    first dense layer's rows permuted for the other flattening order): the same function."""

    def __init__(self, case, data, weights):
        import keras
        self.keras, self.case = keras, case
        layers, act = keras.layers, case.activation
        shape = (28, 28, 1) if case.kind == "cnn" else data.x.shape[1:]
        modules, learned = [keras.Input(shape)], []
        if case.kind == "cnn":
            for channels in (32, 64):
                learned.append(layers.Conv2D(channels, 3, padding="same", activation=act))
                modules += [learned[-1], layers.MaxPooling2D(2)]
            modules.append(layers.Flatten())
        count = len(case.sizes) - 1
        for k, n_out in enumerate(case.sizes[1:]):
            hidden = k < count - 1 or case.output_activation
            learned.append(layers.Dense(n_out, activation=act if hidden else None))
            modules.append(learned[-1])
        self.model = keras.Sequential(modules)
        for layer, (kind, w, b) in zip(learned, weights):
            if kind == "Conv2D":
                w = w.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
            elif case.kind == "cnn" and w.shape[0] == 64 * 7 * 7:  # rows in (C, H, W) order
                w = w.reshape(64, 7, 7, -1).transpose(1, 2, 0, 3).reshape(w.shape)
            layer.set_weights([w, b.reshape(-1)])
        self.x = data.x.transpose(0, 2, 3, 1).copy() if case.kind == "cnn" else data.x
        mse = case.loss == "mse"
        self.y = data.y if mse else data.labels
        optimizer = (keras.optimizers.SGD(case.learning_rate) if case.optimizer == "sgd"
                     else keras.optimizers.Adam(case.learning_rate, epsilon=1e-7))
        loss = ("mse" if mse else
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        self.model.compile(optimizer=optimizer, loss=loss)

    def epoch(self, seed):
        order = epoch_order(self.case, self.x.shape[0], seed)
        x, y = (self.x, self.y) if order is None else (self.x[order], self.y[order])
        history = self.model.fit(x, y, batch_size=self.case.batch, epochs=1, shuffle=False,
                                 verbose=0)
        return history.history["loss"][-1]

    def predict(self):
        return self.model.predict(self.x, batch_size=len(self.x), verbose=0)


def keras_run(case, data, weights):
    """A :class:`KerasRun` where Keras 3 can run ``case`` on JAX, else None."""
    if case.kind not in KERAS_KINDS or case.batch == 1:  # Keras's per-step cost at batch 1
        return None
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError:
        return None
    if keras.backend.backend() != "jax":
        return None
    return KerasRun(case, data, weights)
