"""``portanet train``: train a model on a data set, report on its test set, save and plot."""

import contextlib
import os
import time

import numpy as np

from .. import models
from .._version import __version__
from ..backend import set_backend, set_seed
from ..callbacks import BackupAndRestore, EarlyStopping, ModelCheckpoint
from ..data import images
from ..data.preprocessing import Normalizer, to_categorical
from ..errors import InputError
from ..training import world as distributed
from .plotting import plot_history
from .reading import FOLDER, load_dataset, print_report


def cmd_train(args):
    """Train a model on a data set, report on its test set, optionally save and plot.

    With ``--distributed`` (under mpirun) every rank trains its share of each batch; only
    rank 0 prints, saves and plots.
    """
    if not args.dataset.startswith(FOLDER) and (args.color_mode or args.image_size):
        raise InputError(f"--color-mode and --image-size read the images of --dataset "
                         f"{FOLDER}PATH; the data set {args.dataset} has its own layout: leave "
                         "them out")
    world = distributed.init() if args.distributed else None
    if world is None or world.is_root:
        return _train(args, world)
    with open(os.devnull, "w") as silent, contextlib.redirect_stdout(silent):
        return _train(args, world)


def _train(args, world):
    monitor = "val_loss" if args.validation_split else "loss"  # for the two options below
    stopping = args.early_stopping is not None and EarlyStopping(
        monitor, patience=args.early_stopping, restore_best_weights=True)
    checkpoint = args.checkpoint and ModelCheckpoint(args.checkpoint, monitor, save_best_only=True)
    backup = args.resume and BackupAndRestore(args.resume, delete_checkpoint=False)
    callbacks = [callback for callback in (stopping, checkpoint, backup) if callback]
    backend = set_backend(args.backend, args.device)
    set_seed(args.seed)
    spec = models.get(args.model)
    settings = models.training_settings(args.model, args.dataset)
    settings.update({key: getattr(args, key) for key in ("epochs", "batch_size", "learning_rate")
                     if getattr(args, key) is not None})
    print(f"portanet {__version__} on {backend}"
          + (f", {world.size} MPI process{'es' if world.size > 1 else ''}" if world else ""))
    folder_options = {"color_mode": args.color_mode or "grayscale",
                      "image_size": args.image_size} if args.dataset.startswith(FOLDER) else {}
    (x_train, y_train), (x_test, y_test), class_names = load_dataset(
        args.dataset, args.data_dir, **folder_options)
    x_train, y_train = x_train[:args.limit], y_train[:args.limit]  # None: all of them
    classes = int(max(y_train.max(), y_test.max())) + 1
    metadata = {"dataset": args.dataset, "model": args.model, "layout": spec.layout,
                "image_shape": list(x_train.shape[1:]), "classes": classes}
    if folder_options:
        metadata["color_mode"] = folder_options["color_mode"]
    if class_names:
        metadata["class_names"] = list(class_names)
    network = spec.build(tuple(x_train.shape[1:]), classes)
    network.precision = args.precision
    network.metadata = metadata
    network.scaler = Normalizer().fit(x_train)  # saved with the network, applied to every input
    if not args.quiet:
        network.summary()
    inputs = int(np.prod(x_train.shape[1:]))
    description = spec.description.format(inputs=inputs, classes=classes)
    print(f"training {args.model} ({description}) on {len(x_train)} images: "
          + ", ".join(f"{key}={value}" for key, value in settings.items()))
    started = time.perf_counter()
    history = network.fit(images.prepare(x_train, metadata), to_categorical(y_train, classes),
                          shuffle=settings["batch_size"] > 1,
                          validation_split=args.validation_split, verbose=not args.quiet,
                          distributed=world or False,
                          compile="auto" if args.compile is None else args.compile,
                          metrics=["accuracy"], callbacks=callbacks, **settings)
    seconds = time.perf_counter() - started
    samples = len(history.epoch) * round(len(x_train) * (1 - args.validation_split))
    print(f"trained {len(history.epoch)} epochs in {seconds:.1f}s ({samples / seconds:,.0f} "
          f"samples/s, step {history.compiled})"
          + (f"; {history.stop_reason}" if history.stop_reason != "completed" else ""))
    if world is not None and world.size > 1:
        print(f"distributed: {world.size} processes, gradients summed through "
              f"{world.transport}; exchanging them took {world.comm_seconds:.2f}s "
              f"({world.comm_seconds / seconds:.0%} of training) over {world.steps} steps")
    elif world is not None:
        print("distributed: a single process (start several with mpirun -n N)")
    print_report(network, images.prepare(x_test, metadata), y_test, classes, world)
    if world is not None and not world.is_root:
        return 0  # rank 0 writes the files
    if checkpoint and checkpoint.best_epoch:
        print(f"saved the best network ({monitor}={checkpoint.best:f}, epoch "
              f"{checkpoint.best_epoch}) to {args.checkpoint}")
    if args.save:
        print(f"saved the network to {network.save(args.save)}")
    if args.plot:
        print(f"saved the training curves to {plot_history(history, args.plot)}")
    return 0
