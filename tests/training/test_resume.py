"""Checkpoint and resume: a training stopped after epoch 2 and resumed (in a new process, from a
training state file, or by BackupAndRestore) ends with the weights of the uninterrupted one."""

import copy
import errno
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import portanet
from portanet import (
    BackupAndRestore,
    Callback,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    LearningRateScheduler,
    Network,
    RandomCrop,
    RandomFlip,
)
from portanet.cli import main
from portanet.optimizers import SGD, Adam, exponential_decay
from portanet.saving import files

TOLERANCE = {"float64": 1e-10, "float32": 1e-6}  # relative, on the final weights
SCHEDULE = exponential_decay(0.01, 0.5, 12)  # per step: one of the two kinds of schedule


def data():
    rng = np.random.default_rng(7)
    return rng.normal(size=(24, 1, 6, 6)), rng.normal(size=(24, 3))


def network(dtype):
    """A tiny image CNN with augmentation and dropout: every random draw of training."""
    portanet.set_seed(3)
    net = Network([RandomFlip(), RandomCrop(1), Conv2D(1, 2, 3, dtype=dtype), Flatten(),
                   Dropout(0.25), Dense(32, 3, dtype=dtype)], dtype=dtype)
    net.use("mse")
    return net


def training(dtype):
    """The optimizer and callbacks of a case: float64 runs use the optimizer's schedule per
    step, float32 runs a LearningRateScheduler per epoch."""
    if dtype == "float64":
        return Adam(schedule=SCHEDULE), []
    return Adam(learning_rate=0.01), [LearningRateScheduler(lambda epoch, rate: rate * 0.7)]


def train(net, optimizer, callbacks, compile, epochs, initial_epoch=0):
    x, y = data()
    return net.fit(x, y, epochs, batch_size=5, shuffle=True, optimizer=optimizer,
                   compile=compile, callbacks=callbacks, initial_epoch=initial_epoch, verbose=0)


def resume_in_child(state, out, dtype, compile):
    """Run in a new process: load ``state``, train epochs 3 and 4, save the network to ``out``."""
    optimizer, callbacks = training(dtype)
    portanet.set_seed(99)  # the state's generator replaces it
    net, optimizer, epoch = portanet.load_training(
        state, optimizer=optimizer if dtype == "float64" else None)
    assert epoch == 2
    history = train(net, optimizer, callbacks, compile, epochs=4, initial_epoch=epoch)
    assert history.epoch == [3, 4]
    net.save(out)


def run_child(call, backend=None):
    """Run ``call`` (Python text calling this module's functions) in a new process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    if backend is not None:
        env["PORTANET_BACKEND"] = backend
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('resume_case', {__file__!r})\n"
            "case = importlib.util.module_from_spec(spec); spec.loader.exec_module(case)\n"
            f"case.{call}\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr


def assert_same_weights(net, other, dtype):
    for layer, theirs in zip(net.layers, other.layers):
        for mine, saved in zip(layer.get_weights(), theirs.get_weights()):
            np.testing.assert_allclose(mine, saved, rtol=TOLERANCE[dtype],
                                       atol=TOLERANCE[dtype] * np.abs(saved).max())


def straight(dtype, compile):
    net = network(dtype)
    train(net, *training(dtype), compile, epochs=4)
    return net


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_resumed_in_a_new_process_equals_the_uninterrupted_run(tmp_path, dtype, compile):
    net, (optimizer, callbacks) = network(dtype), training(dtype)
    train(net, optimizer, callbacks, compile, epochs=2)
    state = portanet.save_training(tmp_path / "state.npz", net, optimizer, epoch=2)
    run_child(f"resume_in_child({str(state)!r}, {str(tmp_path / 'out.npz')!r}, {dtype!r}, "
              f"{compile!r})")
    resumed = portanet.load(tmp_path / "out.npz")
    assert_same_weights(resumed, straight(dtype, compile), dtype)
    two_epochs = network(dtype)
    train(two_epochs, *training(dtype), compile, epochs=2)
    with pytest.raises(AssertionError):  # the comparison can fail: 2 epochs are not 4
        assert_same_weights(resumed, two_epochs, dtype)


def save_two_epochs(state):
    """Run in a new process (on torch): train two epochs in float64, save the state."""
    net, optimizer = network("float64"), Adam(schedule=SCHEDULE)
    train(net, optimizer, [], False, epochs=2)
    portanet.save_training(state, net, optimizer, epoch=2)


@pytest.mark.backend_independent
def test_saved_on_torch_resumed_on_numpy(tmp_path):
    pytest.importorskip("torch")
    state = tmp_path / "state.safetensors" if _has_safetensors() else tmp_path / "state.npz"
    run_child(f"save_two_epochs({str(state)!r})", backend="torch")
    net, optimizer, epoch = portanet.load_training(state, optimizer=Adam(schedule=SCHEDULE))
    train(net, optimizer, [], False, epochs=4, initial_epoch=epoch)
    assert_same_weights(net, straight("float64", False), "float32")


def _has_safetensors():
    try:
        import safetensors  # noqa: F401
    except ImportError:
        return False
    return True


class FailIn(Callback):
    """Raise at the start of epoch ``epoch``: a crash."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, epoch):
        if epoch == self.epoch:
            raise RuntimeError("crash")


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_backup_and_restore_after_a_crash(tmp_path, compile):
    path = tmp_path / "backup.npz"
    net, optimizer = network("float64"), Adam(schedule=SCHEDULE)
    with pytest.raises(RuntimeError, match="crash"):
        train(net, optimizer, [BackupAndRestore(path), FailIn(3)], compile, epochs=4)
    assert portanet.load_training(path, optimizer=Adam(schedule=SCHEDULE))[2] == 2
    portanet.set_seed(5)  # the backup's generator state replaces it
    history = train(net, optimizer, [BackupAndRestore(path)], compile, epochs=4)
    assert history.epoch == [3, 4]
    assert not path.exists()  # delete_checkpoint=True: gone once training completed
    assert_same_weights(net, straight("float64", compile), "float64")


def test_initial_epoch_numbers_the_epochs(capsys):
    x, y = data()
    history = network("float32").fit(x, y, 4, batch_size=8, initial_epoch=2, verbose=2)
    assert history.epoch == [3, 4]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", "3/4"], ["epoch", "4/4"]]
    assert network("float32").fit(x, y, 4, initial_epoch=4, verbose=0).epoch == []


@pytest.mark.parametrize("value, says", [
    (-1, "initial_epoch must be an integer >= 0, got -1"),
    (True, "initial_epoch must be an integer >= 0, got True"),
    (1.0, "initial_epoch must be an integer >= 0, got 1.0"),
    (5, "initial_epoch (5) must not be above epochs (4)"),
])
def test_bad_initial_epoch(value, says):
    x, y = data()
    with pytest.raises(portanet.InputError, match=says.replace("(", r"\(").replace(")", r"\)")):
        network("float32").fit(x, y, 4, initial_epoch=value, verbose=0)


def test_optimizers_copy_and_pickle():
    x, y = data()
    net, optimizer = network("float64"), Adam(schedule=SCHEDULE)
    net.fit(x, y, 1, batch_size=5, optimizer=optimizer, verbose=0)
    unpickled = pickle.loads(pickle.dumps(optimizer))
    assert (unpickled.iterations, unpickled.current_learning_rate) == (
        5, optimizer.current_learning_rate)
    for (_, mine), (_, theirs) in zip(optimizer.parameter_states(),
                                      unpickled.parameter_states(), strict=True):
        for a, b in zip(mine, theirs, strict=True):
            np.testing.assert_array_equal(portanet.backend.to_numpy(a),
                                          portanet.backend.to_numpy(b))
    copied_net, copied = copy.deepcopy((net, optimizer))  # the state follows the copied layers
    portanet.set_seed(11)
    copied_net.fit(x, y, 2, batch_size=5, optimizer=copied, initial_epoch=1, verbose=0)
    assert (copied.iterations, optimizer.iterations) == (10, 5)
    portanet.set_seed(11)
    net.fit(x, y, 2, batch_size=5, optimizer=optimizer, initial_epoch=1, verbose=0)
    assert_same_weights(copied_net, net, "float64")


def test_wrong_files_and_wrong_partners(tmp_path):
    x, y = data()
    net, optimizer = network("float64"), Adam()
    net.fit(x, y, 1, batch_size=5, optimizer=optimizer, verbose=0)
    state = portanet.save_training(tmp_path / "state.npz", net, optimizer, 1)
    plain = net.save(tmp_path / "net.npz")
    with pytest.raises(portanet.ModelFileError, match="is a training state, not a network: "
                                                      "load it with portanet.load_training"):
        portanet.load(state)
    with pytest.raises(portanet.ModelFileError, match="is a saved network, not a training "
                                                      "state: load it with portanet.load"):
        portanet.load_training(plain)
    with pytest.raises(portanet.InputError, match="of type Adam, not SGD: resume with the "
                                                  "optimizer training used"):
        portanet.load_training(state, optimizer=SGD())
    with pytest.raises(portanet.InputError, match=r"differs from the optimizer of .* in the "
                                                  r"settings \['beta_1'\]"):
        portanet.load_training(state, optimizer=Adam(beta_1=0.8))
    other = Network([Flatten(), Dense(36, 3, dtype="float64")], dtype="float64")
    other.use("mse")
    with pytest.raises(portanet.InputError, match="holds the training state of another "
                                                  "network .* resume with the network it was"):
        other.fit(x, y, 2, optimizer=Adam(), callbacks=[BackupAndRestore(state)], verbose=0)
    with pytest.raises(portanet.InputError, match="holds the state of another network's"):
        portanet.save_training(tmp_path / "other.npz", other, optimizer, 1)
    loaded, fresh, epoch = portanet.load_training(state)  # no schedule: made from the file
    assert (type(fresh), fresh.iterations, epoch) == (Adam, optimizer.iterations, 1)
    assert_same_weights(loaded, net, "float64")


def test_a_full_disk_keeps_the_previous_state(tmp_path, monkeypatch):
    x, y = data()
    net, optimizer = network("float64"), Adam()
    net.fit(x, y, 1, batch_size=5, optimizer=optimizer, verbose=0)
    path = portanet.save_training(tmp_path / "state.npz", net, optimizer, 1)
    before = path.read_bytes()
    net.fit(x, y, 2, batch_size=5, optimizer=optimizer, initial_epoch=1, verbose=0)

    def full(path, mode, **options):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(files, "open", full, raising=False)
    with pytest.raises(portanet.WriteError, match="cannot write the training state to .*: the "
                                                  "disk is full; .*state.npz is unchanged"):
        portanet.save_training(path, net, optimizer, 2)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["state.npz"]


def test_cli_resume_equals_a_straight_run(backend, tmp_path):
    common = ["train", "--dataset", "digits", "--limit", "200", "--quiet", "--backend",
              backend.name]
    state = str(tmp_path / "state.npz")
    assert main([*common, "--epochs", "2", "--resume", state]) == 0
    assert main([*common, "--epochs", "4", "--resume", state, "--save",
                 str(tmp_path / "resumed.npz")]) == 0
    assert main([*common, "--epochs", "4", "--save", str(tmp_path / "straight.npz")]) == 0
    assert portanet.load_training(state)[2] == 4
    resumed, straight_net = (portanet.load(tmp_path / name)
                             for name in ("resumed.npz", "straight.npz"))
    assert_same_weights(resumed, straight_net, straight_net.working_dtype())


def test_cli_refuses_bad_resume_paths_before_any_work(tmp_path, capsys):
    network("float32").save(tmp_path / "net.npz")
    for value, says in [
            (tmp_path / "missing" / "s.npz", "does not exist (create it first)"),
            (tmp_path / "s.h5", "unknown file suffix '.h5'"),
            (tmp_path, "it is a folder"),
            (tmp_path / "net.npz", "is a saved network, not a training state")]:
        assert main(["train", "--resume", str(value)]) == 2
        captured = capsys.readouterr()
        assert "--resume: " in captured.err and says in captured.err, captured.err
        assert captured.out == ""  # nothing loaded, nothing trained


def test_the_docs_example_runs(tmp_path, monkeypatch):
    text = (Path(__file__).parents[2] / "docs" / "data.md").read_text()
    section = text.split("## Checkpoint and resume")[1].split("\n## ")[0]
    (example,) = re.findall(r"```python\n(.*?)```", section, re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/data.md", "exec"), {})
    assert sorted(os.listdir(tmp_path)) == ["state.npz"]  # the backup is deleted at the end
