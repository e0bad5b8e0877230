"""The commands on a saved network: ``portanet evaluate``, ``predict`` and ``export``."""

import sys

import numpy as np

from .._version import __version__
from ..backend import set_backend
from ..data import images
from ..errors import InputError
from ..network import load
from ..saving.files import write_atomically
from ..saving.onnx import describe_onnx, export_onnx
from .reading import FOLDER, class_names_of, load_dataset, print_report


def cmd_evaluate(args):
    """Report a saved network's accuracy on a data set's test split."""
    print(f"portanet {__version__} on {set_backend(args.backend, args.device)}")
    network = load(args.model)
    metadata = network.metadata
    name = args.dataset or metadata.get("dataset", "digits")
    folder_options = {}
    if name.startswith(FOLDER) and "color_mode" in metadata:  # read as it was trained on
        folder_options = {"color_mode": metadata["color_mode"],
                          "image_size": metadata["image_shape"][1:],
                          "class_names": metadata["class_names"]}
    _, (x_test, y_test), _ = load_dataset(name, args.data_dir, **folder_options)
    classes = metadata.get("classes") or network.output_shape()[-1]
    print_report(network, images.network_input(x_test, network), y_test, classes)
    return 0


def cmd_predict(args):
    """Print the predicted class of each image in a .npy file."""
    set_backend(args.backend, args.device)
    network = load(args.model)
    try:
        pictures = np.load(args.images, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read images from {args.images} (a .npy array of raw pixel "
                         f"values is expected): {exc}") from None
    x = images.network_input(pictures, network)
    names = class_names_of(network.metadata)
    for index, label in enumerate(network.predict_classes(x)):
        print(f"{index}\t{label}" + (f"\t{names[label]}" if names else ""))
    if args.output:
        try:
            outputs, kind = network.predict_proba(x), "class probabilities"
        except InputError:  # a network whose outputs are scores (tanh + MSE)
            outputs, kind = network.predict(x), "the network's raw outputs (not probabilities)"
        write_atomically(args.output, lambda stream: np.save(stream, outputs), "the outputs")
        print(f"wrote {kind}, shape {outputs.shape}, to {args.output}", file=sys.stderr)
    return 0


def cmd_export(args):
    """Write a saved network as an ONNX model; print its inputs and outputs."""
    set_backend(args.backend, args.device)
    path = export_onnx(load(args.model), args.output, args.opset,
                       input_shape=args.input_shape, probabilities=args.probabilities)
    print(f"wrote {path}\n{describe_onnx(path)}")
    return 0
