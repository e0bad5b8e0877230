"""What the commands read and report: the data sets, by name or as a folder of images
(``--dataset folder:PATH``), and the per-class report on a test set."""

import time

import numpy as np

from ..data import ImageFolder, datasets
from ..metrics import classification_report

FOLDER = "folder:"  # --dataset folder:PATH


def load_dataset(name, data_dir, **folder_options):
    """``(x_train, y_train), (x_test, y_test), class_names`` (None where the classes are the
    digits) of the data set ``name`` (a --dataset value: a data set's name, or folder:PATH);
    ``folder_options`` go to :class:`ImageFolder`."""
    started = time.perf_counter()
    if name.startswith(FOLDER):
        train, test, class_names = _read_folder(name.removeprefix(FOLDER), **folder_options)
    else:
        train, test = datasets.load(name, data_dir=data_dir)
        class_names = datasets.CLASS_NAMES.get(name)
    print(f"dataset {name}: {len(train[0])} training and {len(test[0])} test images of "
          f"{'x'.join(map(str, train[0].shape[1:]))} ({time.perf_counter() - started:.1f}s)")
    return train, test, class_names


def _read_folder(path, **options):
    """A folder of images (:class:`ImageFolder`) read whole into arrays, split per class as the
    digits are (a quarter of each class for the test split), and its class names. The command
    holds the folder in memory; from Python, ``fit(ImageFolder(path))`` reads it batch by
    batch."""
    folder = ImageFolder(path, **options)
    train, test = datasets.split_per_class(folder.labels)
    return folder.rows(train), folder.rows(test), folder.class_names


def class_names_of(metadata):
    """The names of a network's classes: as ``portanet train`` noted them, or the ones of the
    data set it was trained on (files saved before the notes held them); None for digits."""
    return metadata.get("class_names") or datasets.CLASS_NAMES.get(metadata.get("dataset"))


def print_report(network, x_test, labels, classes, world=None):
    """Print the per-class report on the test set; with ``world``, each rank predicts its
    share and rank 0 reports on all of them."""
    started = time.perf_counter()
    if world is None:
        outputs = network.predict(x_test)
    else:
        lo, hi = world.shard(0, len(x_test))
        mine = network.predict(x_test[lo:hi]) if hi > lo else np.zeros((0, classes))
        outputs = world.gather(mine, len(x_test))
        if outputs is None:
            return
    print(f"\ntest set ({len(x_test)} images, predicted in {time.perf_counter() - started:.2f}s):")
    print(classification_report(labels, outputs, class_names_of(network.metadata)))
