"""One MPI rank of the distributed tests: ``mpirun -n 2 python distributed_worker.py CASE OUT``.

CASE "train" trains the network of :func:`build` on :func:`data` (and a small causal transformer)
with ``distributed=True`` and writes this rank's weights and figures to OUT/rank<r>.npz; its
ModelCheckpoint is given OUT/checkpoints<r>/ on each rank, where only rank 0 may write. CASE
"raise", "hang" or "kill" makes rank 1 fail that way in its third training step; the other ranks
must not wait forever. CASE "interrupt" sends Ctrl-C (SIGINT) to rank 1 alone in its third step:
every rank must stop after that step.
"""

import os
import signal
import sys
import time

import numpy as np

import portanet
from portanet import distributed, optimizers
from portanet.backend import to_numpy
from portanet.layers import ActivationLayer, BatchNorm, Dropout, FCLayer, Layer
from portanet.models import causal_transformer
from portanet.training.step import parameter_slots

SEED, EPOCHS, BATCH = 7, 3, 8
LM_EPOCHS = 2  # the small causal transformer's
TRAINING_SAMPLES = 41  # the last batch has one sample: rank 1 gets none of it


def data():
    """(x, y, x_val, y_val): a small seeded classification problem."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(TRAINING_SAMPLES + 13, 6))
    labels = (x[:, 0] + x[:, 1] ** 2 > 0.5).astype(int) + (x[:, 2] > 1)
    y = np.eye(3)[labels]
    return x[:TRAINING_SAMPLES], y[:TRAINING_SAMPLES], x[TRAINING_SAMPLES:], y[TRAINING_SAMPLES:]


def build(extra_layers=()):
    """A seeded float64 6-8-3 network with a softmax cross-entropy loss."""
    portanet.set_seed(SEED)
    net = portanet.Network(dtype="float64")
    for layer in (FCLayer(6, 8), *extra_layers, ActivationLayer("tanh"), FCLayer(8, 3)):
        net.add(layer)
    net.use("softmax_crossentropy")
    return net


def train(net, **options):
    """Train ``net`` as every case does: shuffled batches of BATCH, Adam, validation data."""
    x, y, x_val, y_val = data()
    return net.fit(x, y, epochs=EPOCHS, batch_size=BATCH, shuffle=True,
                   optimizer=optimizers.Adam(0.05), validation_data=(x_val, y_val), verbose=0,
                   **options)


def build_transformer():
    """A seeded float64 causal transformer over 5 token ids, context 6."""
    portanet.set_seed(SEED)
    return causal_transformer(5, 6, width=8, heads=2, blocks=1, dtype="float64")


def train_transformer(net, **options):
    """Next-token training on seeded random sequences, Adam with gradient clipping."""
    tokens = np.random.default_rng(4).integers(0, 5, size=(TRAINING_SAMPLES, 7))
    return net.fit(tokens[:, :-1], tokens[:, 1:], epochs=LM_EPOCHS, batch_size=BATCH,
                   shuffle=True, optimizer=optimizers.Adam(0.01, clip_norm=0.5), verbose=0,
                   **options)


def parameters(net):
    """Every parameter of ``net`` (nested layers included), as NumPy arrays."""
    return [to_numpy(getattr(layer, name)) for layer, name in parameter_slots(net.layers)]


class Saboteur(Layer):
    """Passes data through; on rank 1 it fails in the given way at the third training step.

    Its Python code must run at every step, so the networks holding it train eagerly (a compiled
    step runs a layer's Python once per batch shape)."""

    def __init__(self, how):
        super().__init__()
        self.how, self.calls = how, 0

    def forward(self, x, training=False):
        self.calls += training
        if training and self.calls == 3 and distributed.init().rank == 1:
            if self.how == "raise":
                raise RuntimeError("sabotage on rank 1")
            if self.how == "hang":
                time.sleep(600)
            os.kill(os.getpid(), signal.SIGINT if self.how == "interrupt" else signal.SIGKILL)
        return x

    def backward(self, grad_output):
        return grad_output


class Recording:
    """A sized data set recording the samples this process read."""

    def __init__(self, x, y):
        self.x, self.y, self.read = x, y, []

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        self.read.append(index)
        return self.x[index], self.y[index]


def train_streamed(net, data_set, **options):
    """:func:`train`, the training samples read from ``data_set``, the validation samples
    through a Loader."""
    _, _, x_val, y_val = data()
    return net.fit(data_set, epochs=EPOCHS, batch_size=BATCH, shuffle=True,
                   optimizer=optimizers.Adam(0.05),
                   validation_data=portanet.Loader(x_val, y_val, batch_size=5), verbose=0,
                   **options)


def main(case, out):
    world = distributed.init()
    if case == "stream":
        net = build()
        if world.rank:
            portanet.set_seed(SEED + world.rank)
        x, y, _, _ = data()
        data_set = Recording(x, y)
        history = train_streamed(net, data_set, distributed=True)
        np.savez(os.path.join(out, f"stream{world.rank}.npz"),
                 *[w for layer in net.layers for w in layer.get_weights()],
                 loss=history.history["loss"], val_loss=history.history["val_loss"],
                 read=np.array(data_set.read))
        return
    if case != "train":
        net = build([Saboteur(case)])
        history = train(net, distributed=True, compile=False)
        weights = [w.ravel() for w in net.layers[0].get_weights()]
        np.save(os.path.join(out, f"finished{world.rank}.npy"),
                np.concatenate([[history.interrupted, world.steps], *weights]))
        return
    net = build()
    if world.rank:  # unlike generators on the other ranks: rank 0's batch order must be used
        portanet.set_seed(SEED + world.rank)
    folder = os.path.join(out, f"checkpoints{world.rank}")
    os.mkdir(folder)
    checkpoint = portanet.ModelCheckpoint(os.path.join(folder, "net-{epoch}.npz"))
    history = train(net, distributed=True,  # compiled where the backend compiles (jax.jit)
                    callbacks=[checkpoint])
    assert history.compiled == ("jax.jit" if portanet.get_backend().name == "jax" else "eager")
    x, y, x_val, y_val = data()
    scores = net.evaluate(x_val, y_val, distributed=True)
    # BatchNorm's running statistics and Dropout's masks differ per rank: state must still agree
    other = build([BatchNorm(8), Dropout(0.3)])
    train(other, distributed=True)
    language_model = build_transformer()  # containers, attention, integer ids and targets
    if world.rank:
        portanet.set_seed(SEED + world.rank)
    train_transformer(language_model, distributed=True)
    lm_weights = {f"lm{k}": w for k, w in enumerate(parameters(language_model))}
    weights = {f"w{k}": w for k, w in enumerate(
        w for layer in net.layers for w in layer.get_weights())}
    other_weights = {f"o{k}": w for k, w in enumerate(
        w for layer in other.layers for w in layer.get_weights())}
    np.savez(os.path.join(out, f"rank{world.rank}.npz"), **weights, **other_weights, **lm_weights,
             loss=history.history["loss"], val_loss=history.history["val_loss"],
             val_accuracy=history.history["val_accuracy"],
             evaluated=[scores["loss"], scores["accuracy"]], size=world.size,
             transport=world.transport, steps=world.steps)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
