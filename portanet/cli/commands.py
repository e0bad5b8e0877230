"""The ``portanet`` command: ``info``, ``train``, ``evaluate``, ``predict`` and ``export``.

    portanet train                                  # digits, offline, a few seconds
    portanet train --dataset fashion-mnist --model mlp --epochs 10 --save fmnist.npz
    portanet train --dataset folder:photos --color-mode rgb --model cnn   # photos/<class>/*.png
    portanet evaluate --model fmnist.npz --dataset fashion-mnist
    mpirun -n 4 portanet train --distributed --dataset fashion-mnist   # 4 processes, one network
    portanet predict --model fmnist.npz images.npy
    portanet export fmnist.npz fmnist.onnx          # for onnxruntime and other ONNX runtimes
    portanet export charlm.npz charlm.onnx --input-shape 64   # token ids, sequences of 64
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from .. import models
from .._checks import fraction, integer_text, number_text, positive, sample_shape, size_pair
from .._version import __version__
from ..backend import backend_name
from ..data import datasets
from ..errors import CompileWarning, InputError, InputWarning, PortanetError
from ..precision import POLICIES
from ..saving.files import writable_file
from ..saving.format import model_path, saved_path
from ..saving.onnx import DEFAULT_OPSET, MIN_OPSET, onnx_path
from ..saving.state import state_path
from .info import cmd_info
from .plotting import plot_path
from .reading import FOLDER, print_report
from .saved import cmd_evaluate, cmd_export, cmd_predict
from .train import cmd_train

__all__ = ["FOLDER", "build_parser", "cmd_evaluate", "cmd_export", "cmd_info", "cmd_predict",
           "cmd_train", "main", "print_report"]


def _dataset(text):
    """``text`` as a --dataset value: a data set's name, or folder:PATH of an existing folder."""
    if text.startswith(FOLDER):
        path, wanted = text.removeprefix(FOLDER), "a folder holding one sub-folder of images " \
                                                  "per class"
        if not path:
            raise InputError(f"{FOLDER} needs the folder's path: {FOLDER}PATH, PATH {wanted}")
        if not Path(path).is_dir():
            raise InputError(f"no folder at {path!r}: give {FOLDER}PATH, PATH {wanted}")
    elif text not in datasets.DATASETS:
        raise InputError(f"unknown data set {text!r}: choose one of {', '.join(datasets.DATASETS)}"
                         f", or {FOLDER}PATH for a folder of images")
    return text


def _image_size(option, text):
    """``text``, HxW (e.g. 32x32), as (height, width)."""
    return size_pair(f"{option} (HxW, e.g. 32x32)", tuple(
        integer_text(option, part) for part in text.lower().split("x")))


def _option_type(option, convert, named):
    """An argparse ``type`` for ``option``: ``convert(text)``, built on portanet's checks, gives
    the value, so that every option is checked before any work; its PortanetError is the usage
    error, naming the option (``named``: its message does already)."""
    def option_type(text):
        try:
            return convert(text)
        except PortanetError as exc:  # argument None: argparse prints the message as it is
            raise argparse.ArgumentError(None, str(exc) if named else f"{option}: {exc}") from None
    return option_type


def _number(option, check, *args):
    """The type of a number option: ``check(option, text, *args)`` (``integer_text``,
    ``number_text``)."""
    return _option_type(option, lambda text: check(option, text, *args), named=True)


def _checked(option, check, *args):
    """The type of a path (or name) option: ``check(text, *args)``."""
    return _option_type(option, lambda text: check(text, *args), named=False)


def _shape(text) -> tuple:
    """``text`` such as "64" or "1,28,28" as one sample's shape."""
    try:
        value = tuple(int(part) for part in text.split(","))
    except ValueError:
        value = text
    return sample_shape("--input-shape", value)


def _images_path(text) -> Path:
    """``text`` as the Path of an existing file (the images to classify)."""
    path = Path(text)
    if not path.is_file():
        raise InputError(f"cannot read images from {text}: no such file (give a .npy array of "
                         "raw pixel values)")
    return path


def _npy_path(text) -> Path:
    """``text`` as a Path where a .npy file can be written."""
    return writable_file(text, "the outputs", (".npy",))


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors end the command as portanet's errors do
    (``portanet: error: ...``, exit status 2; see :func:`main`)."""

    def error(self, message):
        raise InputError(f"{message} (see {self.prog} --help)")


def _backend_options(parser):
    parser.add_argument("--backend", type=_checked("--backend", backend_name),
                        help="numpy (default), array_api_strict, torch, jax, cupy; "
                             "default: $PORTANET_BACKEND")
    parser.add_argument("--device", help="cpu, cuda, cuda:N; default: $PORTANET_DEVICE")


def build_parser():
    parser = _Parser(prog="portanet", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"portanet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="list backends, versions and devices").set_defaults(
        run=cmd_info)

    train = commands.add_parser("train", help="train a classifier and report on its test set")
    train.add_argument("--dataset", default="digits", type=_checked("--dataset", _dataset),
                       help=f"{', '.join(datasets.DATASETS)}, or {FOLDER}PATH: the images in "
                            "PATH's sub-folders, one per class, a quarter of each held out for "
                            "the test set; default: %(default)s (embedded, no download)")
    train.add_argument("--color-mode", choices=("grayscale", "rgb"),
                       help="how images of a folder are read (default: grayscale)")
    train.add_argument("--image-size", metavar="HxW", type=_number("--image-size", _image_size),
                       help="resize the images of a folder to H x W pixels (bilinear); default: "
                            "every image must have the first one's size")
    train.add_argument("--data-dir", help="folder holding the data set's files")
    train.add_argument("--model", default="mlp", choices=sorted(models.MODELS),
                       help="default: %(default)s; " + "; ".join(
                           f"{name}: {spec.description.format(inputs='inputs', classes='classes')}"
                           for name, spec in models.MODELS.items()))
    model_default = "default: the model's setting for the data set"
    train.add_argument("--epochs", type=_number("--epochs", integer_text), help=model_default)
    train.add_argument("--batch-size", type=_number("--batch-size", integer_text),
                       help=model_default)
    train.add_argument("--learning-rate", type=_number("--learning-rate", number_text, positive),
                       help=model_default)
    train.add_argument("--validation-split", default=0.1,
                       type=_number("--validation-split", number_text, fraction),
                       help="share of the training images held out for validation, in [0, 1) "
                            "(default: %(default)s)")
    train.add_argument("--limit", type=_number("--limit", integer_text),
                       help="train on the first N training images only")
    train.add_argument("--seed", type=_number("--seed", integer_text, 0), default=0,
                       help="seed of every random draw (default: %(default)s)")
    train.add_argument("--save", metavar="PATH", type=_checked("--save", model_path),
                       help="save the trained network (.npz or .safetensors)")
    train.add_argument("--plot", metavar="PATH", type=_checked("--plot", plot_path),
                       help="save the training curves (PNG, or another suffix matplotlib "
                            "writes: .pdf, .svg, ...)")
    train.add_argument("--early-stopping", type=_number("--early-stopping", integer_text, 0),
                       metavar="N",
                       help="stop when val_loss has not improved for N epochs and keep the best "
                            "epoch's weights (with --validation-split 0: the training loss); "
                            "default: off")
    train.add_argument("--checkpoint", metavar="PATH",
                       type=_checked("--checkpoint", model_path, "the checkpoint"),
                       help="save the best network so far (lowest val_loss, or training loss "
                            "with --validation-split 0) to PATH (.npz or .safetensors; may "
                            "hold {epoch}) after each epoch that improves it; default: off")
    train.add_argument("--resume", metavar="PATH", type=_checked("--resume", state_path),
                       help="continue from the training state at PATH if there is one, and "
                            "write it there after every epoch (.npz or .safetensors; --epochs "
                            "is then the last epoch's number); default: off")
    train.add_argument("--quiet", action="store_true", help="no summary, no per-epoch output")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel over the processes of an MPI job (mpirun -n N ...)")
    train.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                       help="compile the training step (jax.jit on JAX); default: where it "
                            "measured faster, or as PORTANET_COMPILE says")
    train.add_argument("--precision", choices=list(POLICIES),
                       help="train in 16 bits with float32 weights (torch, JAX; see the "
                            "training docs); default: float32")
    _backend_options(train)
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("evaluate", help="report a saved network on a test set")
    evaluate.add_argument("--model", required=True, metavar="PATH",
                          type=_checked("--model", saved_path))
    evaluate.add_argument("--dataset", type=_checked("--dataset", _dataset),
                          help="as for train; default: the one the network was trained on")
    evaluate.add_argument("--data-dir")
    _backend_options(evaluate)
    evaluate.set_defaults(run=cmd_evaluate)

    predict = commands.add_parser("predict", help="classify the images in a .npy file")
    predict.add_argument("--model", required=True, metavar="PATH",
                         type=_checked("--model", saved_path))
    predict.add_argument("images", type=_checked("IMAGES", _images_path), metavar="IMAGES",
                         help=".npy file of raw images, (N, H, W) or (H, W); for a network "
                              "trained on a folder, images as ImageFolder gives them: "
                              "(N, C, H, W) in [0, 1]")
    predict.add_argument("--output", type=_checked("--output", _npy_path),
                         help="also save the class probabilities (the raw outputs for networks "
                              "without them) to this .npy file")
    _backend_options(predict)
    predict.set_defaults(run=cmd_predict)

    export = commands.add_parser("export", help="write a saved network as an ONNX model")
    export.add_argument("model", metavar="MODEL", type=_checked("MODEL", saved_path),
                        help="saved network (.npz or .safetensors)")
    export.add_argument("output", metavar="OUTPUT", type=_checked("OUTPUT", onnx_path),
                        help="ONNX file to write (.onnx)")
    export.add_argument("--opset", type=_number("--opset", integer_text, MIN_OPSET),
                        default=DEFAULT_OPSET,
                        help=f"ONNX operator set, at least {MIN_OPSET} (default: %(default)s)")
    export.add_argument("--input-shape", metavar="SHAPE",
                        type=_option_type("--input-shape", _shape, True),
                        help="one sample's shape, e.g. 64 (token ids of sequences of 64) or "
                             "1,28,28; default: the first layer's, where it fixes one")
    export.add_argument("--probabilities", action="store_true",
                        help="output class probabilities (a softmax after the logits of a "
                             "network trained with (sparse_)softmax_crossentropy)")
    _backend_options(export)
    export.set_defaults(run=cmd_export)
    return parser


def _warning_lines(python_lines):
    """A ``warnings.showwarning`` that prints portanet's warnings as the command's own lines,
    ``portanet: warning: ...``, and others as ``python_lines`` does."""
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (CompileWarning, InputWarning)):
            print(f"portanet: warning: {message}", file=sys.stderr)
        else:
            python_lines(message, category, filename, lineno, file, line)
    return show


def main(argv=None):
    """Run the command ``argv`` (default: ``sys.argv[1:]``); return its exit status. Errors
    print ``portanet: error: ...`` and return 2, warnings print ``portanet: warning: ...``."""
    with warnings.catch_warnings():
        warnings.showwarning = _warning_lines(warnings.showwarning)
        try:
            args = build_parser().parse_args(argv)
            return args.run(args)
        except PortanetError as exc:
            print(f"portanet: error: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
