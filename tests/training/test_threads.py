"""An eager training step split between threads (portanet.training.threads): equal to the
whole-batch step, used only where it may and where it pays, and its setting checked."""

import threading

import numpy as np
import pytest

import portanet
from portanet import (
    ActivationLayer,
    BatchNorm,
    Conv2D,
    Dropout,
    FCLayer,
    Flatten,
    InputError,
    Layer,
    MaxPool2D,
    Network,
)
from portanet.backend import step_threads, to_numpy
from portanet.optimizers import Adam, cosine_decay
from portanet.training import threads
from portanet.training.step import TrainStep


def cnn_with_dropout(dtype, channels=(1, 4), size=6):
    net = Network(dtype=dtype)
    net.add(Conv2D(channels[0], channels[1], 3, padding="same", input_shape=(1, size, size)))
    net.add(ActivationLayer("relu"))
    net.add(MaxPool2D(2))
    net.add(Flatten())
    net.add(Dropout(0.3))
    net.add(FCLayer(channels[1] * (size // 2) ** 2, 3))
    net.use("softmax_crossentropy")
    return net


def mlp(dtype, sizes=(4, 16, 3)):
    net = Network(dtype=dtype)
    for n_in, n_out in zip(sizes, sizes[1:]):
        net.add(FCLayer(n_in, n_out))
        net.add(ActivationLayer("tanh"))
    net.use("mse")
    return net


def train(build, dtype, x, y, batch):
    portanet.set_seed(5)
    net = build(dtype)
    optimizer = Adam(0.01, schedule=cosine_decay(0.01, 20))
    history = net.fit(x, y, epochs=2, batch_size=batch, shuffle=True, optimizer=optimizer,
                      verbose=0, compile=False)
    return net, history


@pytest.mark.parametrize("build, count, dtype, tolerance", [
    (cnn_with_dropout, 3, "float64", 1e-10),  # 8 rows in 3 uneven parts
    (mlp, 2, "float32", 1e-4),
], ids=["cnn-dropout-3-float64", "mlp-2-float32"])
def test_split_step_equals_the_whole_batch_step(build, count, dtype, tolerance, backend,
                                                monkeypatch):
    gen = np.random.default_rng(0)
    shape = (1, 6, 6) if build is cnn_with_dropout else (4,)
    # batches of 8 and layer sizes as in test_compile.py: eager JAX compiles fewer shapes
    x, y = gen.normal(size=(40, *shape)), np.eye(3)[gen.integers(0, 3, 40)]
    monkeypatch.setenv("PORTANET_STEP_THREADS", "1")
    whole, whole_history = train(build, dtype, x, y, batch=8)  # 10 steps of 8 rows
    monkeypatch.setenv("PORTANET_STEP_THREADS", str(count))
    monkeypatch.setattr(threads, "MIN_WORK", 0)  # split even these small batches
    monkeypatch.setattr(threads, "WORK_PER_PARAMETER", 0)
    monkeypatch.setattr(threads, "MIN_ROWS", 1)
    splits = []
    parts = threads.SplitGradients.parts
    monkeypatch.setattr(threads.SplitGradients, "parts",
                        lambda self, x: splits.append(parts(self, x)) or splits[-1])
    split, history = train(build, dtype, x, y, batch=8)
    assert splits == [count] * 10  # every batch split
    np.testing.assert_allclose(history.history["loss"], whole_history.history["loss"],
                               rtol=tolerance)
    for mine, theirs in zip(split.layers, whole.layers):
        for name in mine.params:
            np.testing.assert_allclose(to_numpy(getattr(mine, name)),
                                       to_numpy(getattr(theirs, name)), rtol=tolerance,
                                       atol=tolerance, err_msg=f"{mine!r}.{name}")


class Doubling(Layer):
    def forward(self, x, training=False):
        return 2 * x

    def backward(self, grad_output):
        return 2 * grad_output


def test_only_built_in_layers_without_buffers_are_split():
    adam = Adam()
    assert threads.splittable(TrainStep(cnn_with_dropout("float32"), adam))
    with_batchnorm = cnn_with_dropout("float32")
    with_batchnorm.layers.insert(1, BatchNorm(3))  # batch statistics depend on the split
    assert not threads.splittable(TrainStep(with_batchnorm, adam))
    custom = mlp("float32")
    custom.add(Doubling())  # a layer of the user's: it might mix samples
    assert not threads.splittable(TrainStep(custom, adam))


def test_batches_are_split_only_where_it_pays(backend):
    """The benchmark's models, batch 128 on 2 threads: the MLP's matrix products dominate
    (kept whole), the CNN's element-wise work is split."""
    x_images = portanet.get_backend().zeros((128, 1, 28, 28), "float32")
    x_flat = portanet.get_backend().zeros((128, 784), "float32")
    cnn = TrainStep(cnn_with_dropout("float32", channels=(1, 32), size=28), Adam())
    assert threads.SplitGradients(cnn, 2).parts(x_images) == 2
    assert threads.SplitGradients(cnn, 2).parts(x_images[:8, ...]) == 1  # a short last batch
    wide = TrainStep(mlp("float32", sizes=(784, 256, 128, 10)), Adam())
    assert threads.SplitGradients(wide, 2).parts(x_flat) == 1


def test_an_error_in_another_thread_reaches_the_caller(monkeypatch):
    monkeypatch.setattr(threads, "MIN_WORK", 0)
    monkeypatch.setattr(threads, "WORK_PER_PARAMETER", 0)
    step = TrainStep(mlp("float64"), Adam())
    split = threads.SplitGradients(step, 2)
    backend = portanet.get_backend()
    params = step.layout.flatten([getattr(layer, name) for layer, name in step.layout.slots])
    gen = np.random.default_rng(1)
    batch = (backend.asarray(gen.normal(size=(16, 4)), "float64"),
             backend.asarray(gen.normal(size=(16, 3)), "float64"))
    split(params, [], batch, None, [])  # starts the other thread
    part_gradients = step.part_gradients

    def sabotage(*args):
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("sabotage in the second thread")
        return part_gradients(*args)

    step.part_gradients = sabotage
    with pytest.raises(RuntimeError, match="sabotage in the second thread"):
        split(params, [], batch, None, [])
    del step.part_gradients  # mended, the same threads work on
    (grads,), _, sums = split(params, [], batch, None, [])
    (expected,), _, expected_sums = step.gradients(params, [], batch, None, [])
    np.testing.assert_allclose(to_numpy(grads), to_numpy(expected), rtol=1e-12)
    np.testing.assert_allclose(float(sums), float(expected_sums), rtol=1e-12)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_step_threads_setting_is_checked(value, monkeypatch):
    monkeypatch.setenv("PORTANET_STEP_THREADS", value)
    with pytest.raises(InputError, match="PORTANET_STEP_THREADS must be an integer >= 1"):
        step_threads("numpy")


def test_numpy_uses_the_cores_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("PORTANET_STEP_THREADS", raising=False)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    cores = portanet.backend.usable_cores()
    assert step_threads("numpy") == cores
    assert step_threads("torch") == step_threads("jax") == 1  # they use the cores themselves
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's own limit is kept
    assert step_threads("numpy") == 1
    monkeypatch.setenv("PORTANET_STEP_THREADS", "3")
    assert step_threads("jax") == 3
