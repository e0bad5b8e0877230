"""The portanet command: train on the embedded digits, save, evaluate, predict, Ctrl-C."""

import os
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest

import portanet
import portanet.backend.compilers
from portanet.cli import main


def test_train_save_plot_evaluate_predict(backend, tmp_path, capsys):
    model, plot = tmp_path / "digits.npz", tmp_path / "curves.png"
    argv = ["train", "--epochs", "3", "--backend", backend.name, "--save", str(model),
            "--plot", str(plot)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"on {backend}" in out and "epoch 3/3" in out and "val_accuracy=" in out
    assert "(64-256-128-10 ReLU network" in out  # the digits' own sizes in the banner
    accuracy = float(out.split("accuracy")[-1].split()[0])
    assert accuracy > 0.85
    assert model.stat().st_size > 0 and plot.read_bytes()[:4] == b"\x89PNG"

    assert main(["evaluate", "--model", str(model)]) == 0
    assert f"{accuracy:9.3f}" in capsys.readouterr().out  # same network, same test set

    images = tmp_path / "images.npy"
    (_, _), (x_test, y_test) = portanet.datasets.load_digits()
    np.save(images, x_test[:5])
    assert main(["predict", "--model", str(model), str(images), "--output",
                 str(tmp_path / "out.npy")]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["0", "1", "2", "3", "4"]
    assert "wrote class probabilities" in captured.err
    probabilities = np.load(tmp_path / "out.npy")
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    np.save(images, x_test[:5] / 16.0)  # already scaled: the network scales inputs itself
    assert main(["predict", "--model", str(model), str(images)]) == 0
    err = capsys.readouterr().err  # the command's own line, not Python's "file:line: ..."
    assert "InputWarning" not in err and any(
        line.startswith("portanet: warning: ") and "scaler was fitted on data in" in line
        for line in err.splitlines())


def test_errors_are_reported_without_traceback(tmp_path, capsys):
    assert main(["evaluate", "--model", str(tmp_path / "missing.npz")]) == 2
    assert "portanet: error: --model: no saved network" in capsys.readouterr().err
    assert main(["train", "--backend", "nonsense"]) == 2
    assert "unknown backend" in capsys.readouterr().err
    for option in ("--save", "--plot"):  # refused before training starts
        assert main(["train", option, str(tmp_path / "missing" / "out")]) == 2
        captured = capsys.readouterr()
        assert "does not exist (create it first)" in captured.err
        assert "training" not in captured.out


BAD_OPTIONS = [  # argv (in a folder holding net.npz and images.npy), what the error says
    (["train", "--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
    (["train", "--epochs", "-3"], "--epochs must be an integer >= 1, got -3"),
    (["train", "--epochs", "1.5"], "--epochs must be an integer >= 1, got '1.5'"),
    (["train", "--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["train", "--learning-rate", "0"], "--learning-rate must be a positive number, got 0.0"),
    (["train", "--learning-rate", "nan"], "--learning-rate must be a positive number, got nan"),
    (["train", "--learning-rate", "fast"], "--learning-rate must be a positive number, got "
                                           "'fast'"),
    (["train", "--validation-split", "1"], "--validation-split must be a number in [0, 1), got "
                                           "1.0"),
    (["train", "--validation-split", "-0.1"], "--validation-split must be a number in [0, 1)"),
    (["train", "--limit", "-5"], "--limit must be an integer >= 1, got -5"),
    (["train", "--limit", "0"], "--limit must be an integer >= 1, got 0"),
    (["train", "--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    (["train", "--early-stopping", "-1"], "--early-stopping must be an integer >= 0, got -1"),
    (["train", "--save", "missing/net.npz"], "--save: cannot save the network to "
                                             "'missing/net.npz': folder 'missing' does not exist"),
    (["train", "--save", "net.h5"], "--save: cannot save the network to 'net.h5': unknown file "
                                    "suffix '.h5'"),
    (["train", "--checkpoint", "missing/best.npz"], "--checkpoint: cannot save the checkpoint"),
    (["train", "--checkpoint", "best.h5"], "--checkpoint: cannot save the checkpoint to "
                                           "'best.h5': unknown file suffix"),
    (["train", "--plot", "missing/curves.png"], "--plot: cannot save the plot"),
    (["train", "--plot", "curves.txt"], "--plot: cannot save the plot to 'curves.txt': unknown "
                                        "image suffix '.txt'; use one of"),
    (["train", "--dataset", "cifar"], "--dataset: unknown data set 'cifar': choose one of "
                                      "digits, mnist, fashion-mnist, or folder:PATH"),
    (["train", "--dataset", "folder:"], "--dataset: folder: needs the folder's path"),
    (["train", "--dataset", "folder:missing"], "--dataset: no folder at 'missing'"),
    (["train", "--dataset", "folder:net.npz"], "--dataset: no folder at 'net.npz'"),
    (["train", "--color-mode", "cmyk"], "argument --color-mode: invalid choice: 'cmyk'"),
    (["train", "--color-mode", "rgb"], "--color-mode and --image-size read the images of"),
    (["train", "--image-size", "8x8"], "--color-mode and --image-size read the images of"),
    (["train", "--image-size", "32"], "--image-size (HxW, e.g. 32x32) must be (height, width), "
                                      "two positive ints, got (32,)"),
    (["train", "--image-size", "0x8"], "--image-size must be an integer >= 1, got 0"),
    (["train", "--image-size", "ax8"], "--image-size must be an integer >= 1, got 'a'"),
    (["train", "--model", "resnet"], "argument --model: invalid choice: 'resnet'"),
    (["train", "--backend", "tensorflow"], "--backend: unknown backend 'tensorflow'"),
    (["train", "--epochs"], "argument --epochs: expected one argument"),
    (["train", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["evaluate"], "the following arguments are required: --model"),
    (["evaluate", "--model", "missing.npz"], "--model: no saved network at missing.npz"),
    (["evaluate", "--model", "net.npz", "--dataset", "cifar"], "--dataset: unknown data set"),
    (["evaluate", "--model", "net.npz", "--dataset", "folder:"], "--dataset: folder: needs"),
    (["evaluate", "--model", "net.npz", "--backend", "tf"], "--backend: unknown backend 'tf'"),
    (["predict", "--model", "missing.npz", "images.npy"], "--model: no saved network at "
                                                          "missing.npz"),
    (["predict", "--model", "net.npz", "missing.npy"], "IMAGES: cannot read images from "
                                                       "missing.npy: no such file"),
    (["predict", "--model", "net.npz", "images.npy", "--output", "out.txt"],
     "--output: cannot save the outputs to 'out.txt': unknown file suffix '.txt'; use .npy"),
    (["predict", "--model", "net.npz", "images.npy", "--output", "missing/out.npy"],
     "--output: cannot save the outputs"),
    (["export", "missing.npz", "net.onnx"], "MODEL: no saved network at missing.npz"),
    (["export", "net.npz", "net.pb"], "OUTPUT: cannot save the ONNX model to 'net.pb': unknown "
                                      "file suffix '.pb'; use .onnx"),
    (["export", "net.npz", "net.onnx", "--opset", "12"], "--opset must be an integer >= 13, "
                                                         "got 12"),
    (["info", "--verbose"], "unrecognized arguments: --verbose"),
    ([], "the following arguments are required: command"),
]


@pytest.mark.backend_independent  # the arguments are checked on the host, before any backend
@pytest.mark.parametrize("argv, message", BAD_OPTIONS, ids=" ".join)
def test_every_option_is_checked_before_any_work(argv, message, tmp_path, monkeypatch,
                                                 capsys):
    from portanet.cli import reading, saved, train

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the options were checked")

    for module, name in ((portanet.data.datasets, "load"), (saved, "load"),
                         (reading, "ImageFolder"), (train, "set_backend"),
                         (saved, "set_backend"), (train.distributed, "init")):
        monkeypatch.setattr(module, name, no_work)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.npz").touch()
    (tmp_path / "images.npy").touch()
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("portanet: error: ") and message in captured.err
    assert captured.err.count("\n") == 1  # one line, no usage text, no traceback


@pytest.mark.backend_independent  # the warnings module's formatting, on the host
def test_portanet_warnings_print_as_the_commands_own_lines(monkeypatch, capsys):
    from portanet.cli import commands

    def info(args):
        warnings.warn("compile=True: no compiler here", portanet.CompileWarning, stacklevel=1)
        warnings.warn("inputs look scaled already", portanet.InputWarning, stacklevel=1)
        warnings.warn("not portanet's", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(commands, "cmd_info", info)
    with pytest.warns(UserWarning, match="not portanet's") as caught:  # shown as Python shows it
        assert main(["info"]) == 0
    assert [type(w.message) for w in caught] == [UserWarning]
    assert capsys.readouterr().err.splitlines() == [
        "portanet: warning: compile=True: no compiler here",
        "portanet: warning: inputs look scaled already"]


def test_train_compile_flags(backend, capsys):
    compiled = backend.library.compiler
    for flag, expected in (("--no-compile", "eager"),
                           ("--compile", compiled.name if compiled else "eager")):
        argv = ["train", "--epochs", "1", "--limit", "200", "--batch-size", "36", "--quiet",
                "--backend", backend.name, flag]  # 180 training images: 5 batches of one shape
        portanet.backend.compilers.WARNED.clear()
        assert main(argv) == 0
        captured = capsys.readouterr()
        assert f"step {expected})" in captured.out
        if compiled is None and flag == "--compile":
            assert captured.err == (f"portanet: warning: compile=True: the {backend.name} "
                                    "backend has no compiler; running eagerly\n")


def test_train_with_a_precision_policy(backend, capsys, tmp_path):
    model = tmp_path / "mixed.npz"
    argv = ["train", "--epochs", "1", "--limit", "200", "--batch-size", "36", "--quiet",
            "--backend", backend.name, "--precision", "mixed_bfloat16", "--save", str(model)]
    if "bfloat16" not in backend.library.half_dtypes:
        assert main(argv) == 2
        assert "does not support" in capsys.readouterr().err
        return
    assert main(argv) == 0
    assert portanet.load(model).precision == "mixed_bfloat16"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child needs POSIX signals")
@pytest.mark.backend_independent  # the signal, the exit code and the saving are host-side; the
# loop's stop after the batch is tested on every backend (test_network.py)
def test_ctrl_c_stops_training_and_still_saves(backend, tmp_path):
    model = tmp_path / "stopped.npz"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "portanet", "train", "--model", "tutorial", "--epochs", "500",
         "--backend", backend.name, "--save", str(model)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen = []
    for line in child.stdout:
        seen.append(line)
        if line.startswith("epoch 1/500"):
            child.send_signal(signal.SIGINT)
            break
    rest = child.stdout.read()
    assert child.wait(timeout=120) == 0, "".join(seen) + rest
    assert "interrupted" in rest and "accuracy" in rest and model.exists()
    assert portanet.load(model).predict(np.zeros((1, 64))).shape == (1, 10)


def test_fashion_mnist_report_names_the_classes(capsys):
    from portanet.cli.commands import print_report
    from portanet.models import modern_mlp

    net = modern_mlp((28, 28), 10)
    net.metadata = {"dataset": "fashion-mnist"}
    x = np.random.default_rng(0).random((20, 784), dtype=np.float32)
    print_report(net, x, np.arange(20) % 10, 10)
    out = capsys.readouterr().out
    assert "Ankle boot" in out and "T-shirt/top" in out


def test_predict_with_a_network_saved_by_net_save(backend, tmp_path, capsys):
    """No notes from `portanet train` in the file: the input shape comes from the network."""
    rng = np.random.default_rng(0)
    images = rng.random((4, 8, 8))
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "one.npy", images[0])
    np.save(tmp_path / "bad.npy", images[:, :7, :7])
    dense = portanet.Network([portanet.FCLayer(64, 10), portanet.ActivationLayer("softmax")])
    conv = portanet.Network([portanet.Conv2D(1, 2, 3, input_shape=(1, 8, 8)), portanet.Flatten(),
                             portanet.FCLayer(72, 10)])
    for name, net, x in (("dense", dense, images.reshape(4, 64)),
                         ("conv", conv, images[:, None])):
        model = net.save(tmp_path / f"{name}.npz")
        expected = net.predict_classes(x)
        assert main(["predict", "--model", str(model), str(tmp_path / "images.npy")]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines == [f"{i}\t{label}" for i, label in enumerate(expected)]
        assert main(["predict", "--model", str(model), str(tmp_path / "one.npy")]) == 0
        assert capsys.readouterr().out.splitlines() == [f"0\t{expected[0]}"]
        assert main(["predict", "--model", str(model), str(tmp_path / "bad.npy")]) == 2
        assert ("images have shape (7, 7) per sample (49 values); the network takes 64 values "
                "per sample") in capsys.readouterr().err

    unknown = portanet.Network([portanet.Conv2D(1, 2, 3), portanet.Flatten(),
                                portanet.FCLayer(72, 10)]).save(tmp_path / "unknown.npz")
    assert main(["predict", "--model", str(unknown), str(tmp_path / "images.npy")]) == 2
    err = capsys.readouterr().err
    assert "cannot tell which input the network takes" in err and "input_shape=" in err


def test_evaluate_a_network_saved_by_net_save(backend, tmp_path, capsys):
    (x_train, y_train), _ = portanet.datasets.load_digits()
    net = portanet.Network([portanet.FCLayer(64, 10)])
    net.use("softmax_crossentropy")
    net.fit(x_train.reshape(len(x_train), 64) / 16, y_train, epochs=3, batch_size=32,
            optimizer="adam", learning_rate=0.01, verbose=0)
    net.scaler = portanet.preprocessing.Normalizer().fit(x_train)  # raw pixels in, as trained
    model = net.save(tmp_path / "digits.npz")
    assert main(["evaluate", "--model", str(model)]) == 0
    accuracy = float(capsys.readouterr().out.split("accuracy")[-1].split()[0])
    assert accuracy > 0.8
