"""The examples run as programs on the backend under test, with short settings and offline data,
so that they cannot rot (examples/distributed.py runs under mpirun in test_distributed.py).

The tutorial's XOR runs as a separate program, the backend chosen by PORTANET_BACKEND as a user
chooses it; the others run as ``__main__`` in the test process (the same script and command
line, without starting Python and the array library again, and JAX compiling what the tests
compiled already once).
"""

import ast
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import write_idx

import portanet
from portanet import datasets

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_example(monkeypatch, capsys, tmp_path):
    """``run(name, *args)``: examples/<name> run as ``__main__`` with ``args`` on its command
    line, in tmp_path, on this run's backend; its stdout."""
    monkeypatch.chdir(tmp_path)

    def run(name, *args):
        path = ROOT / "examples" / name
        monkeypatch.setattr(sys, "argv", [str(path), *map(str, args)])
        capsys.readouterr()
        try:
            runpy.run_path(str(path), run_name="__main__")
        except SystemExit as exc:
            assert exc.code in (0, None), capsys.readouterr()
        out = capsys.readouterr().out
        assert f"backend: {portanet.get_backend()}" in out
        return out
    return run


def test_xor_example_solves_xor(backend, tmp_path):
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {"OMP_NUM_THREADS": "1",  # a tiny network: more threads only contend for the cores
           **os.environ, "PORTANET_BACKEND": backend.name, "PYTHONPATH": path}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "xor.py")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"backend: {backend}" in done.stdout
    distance = float(done.stdout.split("largest distance to a target:")[1].split()[0])
    assert distance < 0.1 and "(solved)" in done.stdout


def digits_as_mnist(folder, n_train=120, n_test=200):
    """MNIST-format IDX files of the embedded digits, enlarged to 28x28 with MNIST's 0..255."""
    def enlarge(images):
        images = np.kron(images.astype(np.float64) * 255 / 16, np.ones((3, 3)))  # 24x24
        return np.pad(images, ((0, 0), (2, 2), (2, 2))).round()

    (x_train, y_train), (x_test, y_test) = datasets.load_digits()
    folder.mkdir()
    for name, array in (("train-images-idx3-ubyte.gz", enlarge(x_train[:n_train])),
                        ("train-labels-idx1-ubyte.gz", y_train[:n_train]),
                        ("t10k-images-idx3-ubyte.gz", enlarge(x_test[:n_test])),
                        ("t10k-labels-idx1-ubyte.gz", y_test[:n_test])):
        write_idx(folder / name, array)
    return folder


def test_mnist_example_reads_idx_files_and_learns(run_example, tmp_path):
    data = digits_as_mnist(tmp_path / "mnist")
    out = run_example("mnist.py", "--data-dir", data, "--samples", 120, "--epochs", 5)
    assert "training on 120 samples" in out and out.count("precision") == 3
    scores = out.split("test accuracy: ")[1].split(",")
    accuracy = {part.split()[0]: float(part.split()[1]) for part in scores}
    assert set(accuracy) == {"raw", "normalized", "standardized"}
    assert accuracy["normalized"] > 0.3 and accuracy["standardized"] > 0.3  # chance: 0.1


def test_cnn_example_trains_and_saves_a_network_that_loads(run_example, tmp_path):
    out = run_example("cnn.py", "--dataset", "digits", "--epochs", 2, "--limit", 320,
                      "--batch-size", 32, "--save", "cnn.npz")
    assert "epoch 2/2" in out
    printed = float(out.split("accuracy")[-1].split()[0])
    net = portanet.load(tmp_path / "cnn.npz")
    _, (x_test, y_test) = datasets.load_digits()
    classes = net.predict_classes((x_test / 16.0).astype("float32")[:, None])
    assert abs(float(np.mean(classes == y_test)) - printed) < 0.002  # the network trained
    assert printed > 0.3  # chance: 0.1


@pytest.mark.parametrize("model, shows", [
    (["--heads", 2, "--blocks", 1], "SelfAttention"),
    (["--heads", 2, "--blocks", 1, "--tie-embeddings"], "TiedDense"),
    (["--model", "lstm", "--hidden", 24],
     "LSTM(input_size=16, hidden_size=24, return_sequences=True)")], ids=["untied", "tied", "lstm"])
def test_charlm_example_trains_saves_and_the_loaded_network_generates_the_same(run_example,
                                                                               tmp_path, model,
                                                                               shows):
    small = ["--steps", 30, "--sample-every", 15, "--width", 16, "--context", 16,
             "--batch-size", 8, "--limit", 20000, "--generate", 30, *model]
    out = run_example("charlm.py", *small, "--save", tmp_path / "lm.npz")
    assert shows in out  # in the summary
    assert ("TiedDense" in out) == ("--tie-embeddings" in model)
    losses = [float(line.split("loss=")[1].split()[0]) for line in out.splitlines()
              if line.startswith("step ")]
    assert len(losses) == 2 and losses[1] < losses[0]
    last_sample = out.split("sample: ")[-1].splitlines()[0]
    loaded = run_example("charlm.py", "--load", tmp_path / "lm.npz", "--generate", 30)
    assert loaded.split("sample: ")[1].splitlines()[0] == last_sample
    assert len(ast.literal_eval(last_sample)) == len("def ") + 30  # printed with repr


def test_fashion_mnist_cnn_example_trains_with_augmentation(run_example):
    out = run_example("fashion_mnist_cnn.py", "--dataset", "digits", "--epochs", 3,
                      "--limit", 1000, "--batch-size", 32, "--dense", 64, "--erase", 2)
    assert "epoch 3/3" in out and "epoch 3 took" in out
    assert "RandomFlip" in out and "RandomCrop(padding=2)" in out and "BatchNorm" in out
    accuracy = float(out.split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.2  # chance: 0.1 (8x8 digits shifted by up to 2 pixels learn slowly)
