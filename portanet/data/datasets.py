"""Data sets as NumPy arrays: MNIST, Fashion-MNIST and scikit-learn's 8x8 digits.

Every loader returns ``(x_train, y_train), (x_test, y_test)``: images are uint8 arrays of
shape (N, H, W), labels uint8 arrays of shape (N,). MNIST and Fashion-MNIST pixels are
0..255; the 8x8 digits pixels are 0..16 (kept as they are, not rescaled).
"""

import contextlib
import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from .._checks import number
from ..errors import DataError

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

# Tried in order. The Fashion-MNIST S3 bucket is an S3 website endpoint, which serves HTTP only;
# the SHA-256 check below is what makes any mirror safe to use.
MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": [
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ],
}

# SHA-256 of the files as published upstream (tensorflow-datasets url_checksums/mnist.txt and
# fashion_mnist.txt). Debian's dataset-fashion-mnist re-gzips the same data, so its .gz files
# hash differently; they are only read locally, never checked against this table.
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
        ),
        "train-labels-idx1-ubyte.gz": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
        ),
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
        ),
    },
}

# Read-only copies installed by the system (Debian package dataset-fashion-mnist).
SYSTEM_DIRS = {
    "mnist": [],
    "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],
}

TIMEOUT = 60  # seconds without data before a download is abandoned


def read_idx(path):
    """Read one IDX file of unsigned bytes (gzipped or raw) into a NumPy uint8 array."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from error
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(
                f"{path} is a damaged or truncated gzip file ({error}); "
                "delete it so it can be downloaded again, or replace it with a good copy"
            ) from error
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[3] == 0:
        raise DataError(
            f"{path} is not an IDX file (header {raw[:4].hex()}); "
            "expected the MNIST format, e.g. 00000803 for images or 00000801 for labels"
        )
    if raw[2] != 0x08:
        raise DataError(
            f"{path} holds IDX data of type code 0x{raw[2]:02x}; only 0x08 (unsigned bytes, "
            "as in MNIST) is supported"
        )
    ndim = raw[3]
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise DataError(f"{path} is truncated inside its IDX header; replace it with a good copy")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - start != expected:
        raise DataError(
            f"{path}: the header announces shape {shape} ({expected} bytes) but the file holds "
            f"{len(raw) - start} bytes of data; replace it with a good copy"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(shape).copy()


def load_mnist(data_dir=None, download=True):
    """MNIST handwritten digits: 60000 train and 10000 test 28x28 images, labels 0..9."""
    return _load_idx_set("mnist", data_dir, download)


def load_fashion_mnist(data_dir=None, download=True):
    """Fashion-MNIST clothing images: 60000 train and 10000 test 28x28 images, labels 0..9."""
    return _load_idx_set("fashion-mnist", data_dir, download)


def load_digits(test_fraction=0.25, seed=0):
    """scikit-learn's 1797 8x8 digits (pixels 0..16), split per class at random, reproducibly."""
    number("test_fraction", test_fraction, lambda v: 0 < v < 1, "a number between 0 and 1")
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:
        raise DataError("load_digits needs scikit-learn: pip install scikit-learn") from error
    bunch = sklearn_digits()
    images = bunch.images.astype(np.uint8)
    labels = bunch.target.astype(np.uint8)
    train, test = split_per_class(labels, test_fraction, seed)
    return (images[train], labels[train]), (images[test], labels[test])


def split_per_class(labels, test_fraction=0.25, seed=0):
    """Indices ``(train, test)`` of the samples whose classes are ``labels``, each shuffled:
    ``test_fraction`` of each class (at least one, where a class has two or more samples) drawn
    at random, reproducibly, for the test split."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = min(max(round(len(members) * test_fraction), 1), len(members) - 1)
        is_test[members[:count]] = True
    return rng.permutation(np.flatnonzero(~is_test)), rng.permutation(np.flatnonzero(is_test))


DATASETS = {"digits": load_digits, "mnist": load_mnist, "fashion-mnist": load_fashion_mnist}
# names of the classes 0, 1, ... where they are not the digits themselves
CLASS_NAMES = {"fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")}


def load(name, data_dir=None):
    """Load a data set by name (see ``DATASETS``); data_dir is ignored for digits."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    if name == "digits":
        return load_digits()
    return DATASETS[name](data_dir=data_dir)


def _load_idx_set(name, data_dir, download):
    train_images, train_labels, test_images, test_labels = _locate(name, data_dir, download)
    return _read_pair(train_images, train_labels), _read_pair(test_images, test_labels)


def _read_pair(images_path, labels_path):
    images, labels = read_idx(images_path), read_idx(labels_path)
    where = f"{images_path} and {labels_path}"
    if images.shape[1:] != (28, 28) or labels.ndim != 1:
        raise DataError(
            f"{where}: expected 28x28 images and one label per image, got arrays of shape "
            f"{images.shape} and {labels.shape}; replace them with the original files"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{where} do not match: {len(images)} images but {len(labels)} labels; "
            "replace them with the original files"
        )
    return images, labels


def _find(folder, filename):
    """The file in folder under its .gz name or its un-gzipped name, or None."""
    for candidate in (folder / filename, folder / filename.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _locate(name, data_dir, download):
    """Paths of the four files, downloading missing ones into the folder in use."""
    searched = []
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
    elif os.environ.get("PORTANET_DATA"):
        folder = Path(os.environ["PORTANET_DATA"]).expanduser() / name
    else:
        for system_dir in SYSTEM_DIRS.get(name, []):
            found = [_find(Path(system_dir), filename) for filename in FILES]
            if all(found):
                return found
            searched.append(Path(system_dir))
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        folder = Path(cache) / "portanet" / name
    missing = [filename for filename in FILES if _find(folder, filename) is None]
    if missing and not download:
        raise DataError(_missing_message(name, folder, searched, missing, []))
    for filename in missing:
        failures = _download(name, filename, folder)
        if failures:
            still_missing = [f for f in FILES if _find(folder, f) is None]
            raise DataError(_missing_message(name, folder, searched, still_missing, failures))
    return [_find(folder, filename) for filename in FILES]


def _missing_message(name, folder, searched, missing, failures):
    text = f"{name}: {', '.join(missing)} not found in {folder}"
    if failures:
        text += " and the download failed:\n  " + "\n  ".join(failures)
    else:
        text += " (downloading is off)"
    text += f"\nPut the four files {', '.join(FILES)} (gzipped or not) in {folder}"
    if searched:
        text += f" (or, as a read-only system copy, in {' or '.join(map(str, searched))})"
    return text + (
        f"; or pass data_dir=<folder holding them>, or set PORTANET_DATA=<dir> and put them "
        f"in <dir>/{name}."
    )


def _say(text):
    sys.stderr.write(text)
    sys.stderr.flush()


def _download(name, filename, folder):
    """Fetch filename into folder from the first mirror with the published SHA-256.

    Returns the list of mirror failures, empty on success; raises DataError on a bad checksum.
    """
    expected = SHA256[name][filename]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create {folder} to download {name} into: {error}") from error
    failures, mismatches = [], []
    for base in MIRRORS[name]:
        url = base.rstrip("/") + "/" + filename
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=folder)
            with os.fdopen(fd, "wb") as out:
                got = _fetch(url, filename, out)
            if got == expected:
                os.chmod(tmp, 0o644)
                os.replace(tmp, folder / filename)
                _say(" done\n")
                return []
            _say(" wrong SHA-256, discarded\n")
            mismatches.append(f"{url} gave {got}")
        except (OSError, http.client.HTTPException) as error:
            _say(f" failed: {error}\n")
            failures.append(f"{url}: {error}")
        finally:
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
    if mismatches:
        raise DataError(
            f"checksum mismatch for {filename}: expected SHA-256 {expected}, got:\n  "
            + "\n  ".join(mismatches + [f"(no file) {failure}" for failure in failures])
            + f"\nThe downloaded temporary file was removed and {folder / filename} was not "
            f"written. Try again later, or get the file yourself and put it in {folder}."
        )
    return failures


def _fetch(url, filename, out):
    """Copy url into the open file out, with progress on stderr; return the SHA-256."""
    tty = sys.stderr.isatty()
    _say(f"downloading {filename} from {url} ..." + ("\n" if tty else ""))
    digest = hashlib.sha256()
    done = 0
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        total = int(response.headers.get("Content-Length") or 0)
        while chunk := response.read(1 << 16):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if tty:
                _say(_progress_bar(filename, done, total))
    return digest.hexdigest()


def _progress_bar(filename, done, total):
    if not total:
        return f"\r{filename}: {done / 1e6:.1f} MB"
    filled = 30 * min(done, total) // total
    return (
        f"\r{filename}: [{'#' * filled}{'-' * (30 - filled)}] {100 * done // total:3d}% "
        f"{done / 1e6:.1f}/{total / 1e6:.1f} MB"
    )
