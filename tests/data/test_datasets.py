"""Tests of portanet.datasets; all offline (downloads go through file:// mirrors). The loaders
read files into NumPy arrays on the host, whatever the backend: these run in the numpy session."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from helpers import write_idx

from portanet import datasets
from portanet.errors import DataError, InputError

pytestmark = pytest.mark.backend_independent

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def write_set(folder, n_train=5, n_test=3, gzipped=True):
    """Write the four tiny MNIST-style files into folder; return the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test),
    }
    for name, array in arrays.items():
        write_idx(folder / (name if gzipped else name.removesuffix(".gz")), array, gzipped)
    return arrays


def check_set(result, arrays):
    (x_train, y_train), (x_test, y_test) = result
    for got, name in zip((x_train, y_train, x_test, y_test), datasets.FILES, strict=True):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[name])


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real cache, no system copies, no network: every mirror is an absent local folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PORTANET_DATA", raising=False)
    absent = [(tmp_path / "no-mirror").as_uri() + "/"]
    monkeypatch.setattr(datasets, "MIRRORS", {"mnist": absent, "fashion-mnist": absent})
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", {"mnist": [], "fashion-mnist": []})


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A file:// mirror serving the tiny set, with its real SHA-256 values; returns the arrays."""
    folder = tmp_path / "mirror"
    arrays = write_set(folder)
    hashes = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in datasets.FILES}
    monkeypatch.setitem(datasets.MIRRORS, "mnist", [folder.as_uri() + "/"])
    monkeypatch.setitem(datasets.SHA256, "mnist", hashes)
    return arrays


@pytest.mark.parametrize(("gzipped", "name"), [(True, "a.gz"), (True, "a"), (False, "a")])
def test_read_idx_round_trip(tmp_path, gzipped, name):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    labels = np.array([7, 0, 255])
    np.testing.assert_array_equal(
        datasets.read_idx(write_idx(tmp_path / f"i{name}", images, gzipped)), images
    )
    got = datasets.read_idx(write_idx(tmp_path / f"l{name}", labels, gzipped))
    assert got.dtype == np.uint8 and got.shape == (3,) and got.flags.writeable
    np.testing.assert_array_equal(got, labels)


@pytest.mark.parametrize(
    ("header", "message"),
    [(b"PK\x03\x04", "not an IDX file"), (b"\x00\x00\x0d\x01", "type code 0x0d")],
)
def test_read_idx_wrong_magic_or_dtype(tmp_path, header, message):
    path = tmp_path / "bad.idx"
    path.write_bytes(header + (1).to_bytes(4, "big") + b"\x00" * 4)
    with pytest.raises(DataError, match=message) as info:
        datasets.read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("damage", ["truncate", "bad crc"])
def test_read_idx_damaged_gzip(tmp_path, damage):
    path = write_idx(tmp_path / "x.gz", np.arange(200).reshape(2, 10, 10))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:-8] + b"\0" * 8)
    with pytest.raises(DataError, match="damaged or truncated gzip") as info:
        datasets.read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("change", [-1, 1])
def test_read_idx_payload_length(tmp_path, change):
    path = tmp_path / "x"
    data = write_idx(path, np.zeros((2, 3, 3)), gzipped=False).read_bytes()
    path.write_bytes(data[:change] if change < 0 else data + b"\0")
    with pytest.raises(DataError, match="announces shape") as info:
        datasets.read_idx(path)
    assert str(path) in str(info.value)


def test_load_mnist_from_data_dir(tmp_path):
    gz = write_set(tmp_path / "gz")
    check_set(datasets.load_mnist(data_dir=tmp_path / "gz", download=False), gz)
    raw = write_set(tmp_path / "raw", gzipped=False)
    check_set(datasets.load_mnist(data_dir=tmp_path / "raw", download=False), raw)


def test_count_mismatch_names_both_files(tmp_path):
    write_set(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4))
    with pytest.raises(DataError, match="5 images but 4 labels") as info:
        datasets.load_mnist(data_dir=tmp_path, download=False)
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert "train-labels-idx1-ubyte.gz" in str(info.value)


def test_wrong_image_size_names_both_files(tmp_path):
    write_set(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((5, 8, 8)))
    with pytest.raises(DataError, match="28x28") as info:
        datasets.load_mnist(data_dir=tmp_path, download=False)
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert "train-labels-idx1-ubyte.gz" in str(info.value)


def test_download_through_file_mirror(tmp_path, mirror, capsys):
    target = tmp_path / "new" / "folder"
    check_set(datasets.load_mnist(data_dir=target), mirror)
    assert sorted(p.name for p in target.iterdir()) == sorted(datasets.FILES)
    assert "downloading train-images-idx3-ubyte.gz from file://" in capsys.readouterr().err


def test_download_goes_to_cache_by_default(tmp_path, mirror):
    check_set(datasets.load("mnist"), mirror)
    assert sorted(p.name for p in (tmp_path / "xdg" / "portanet" / "mnist").iterdir()) == sorted(
        datasets.FILES
    )


def test_checksum_mismatch_leaves_folder_untouched(tmp_path, mirror, monkeypatch):
    target = tmp_path / "target"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    wrong = dict(datasets.SHA256["mnist"], **{"train-images-idx3-ubyte.gz": "0" * 64})
    monkeypatch.setitem(datasets.SHA256, "mnist", wrong)
    real = hashlib.sha256((tmp_path / "mirror" / "train-images-idx3-ubyte.gz").read_bytes())
    with pytest.raises(DataError, match="checksum mismatch for train-images-idx3-ubyte.gz") as info:
        datasets.load_mnist(data_dir=target)
    message = str(info.value)
    assert "0" * 64 in message and real.hexdigest() in message and "removed" in message
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert (target / "notes.txt").read_text() == "mine"


def test_interrupted_download_leaves_no_partial_file(tmp_path, mirror, monkeypatch):
    def interrupted(url, filename, out):
        out.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets, "_fetch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        datasets.load_mnist(data_dir=tmp_path / "t")
    assert list((tmp_path / "t").iterdir()) == []


def test_first_mirror_failing_then_second(tmp_path, mirror, monkeypatch):
    good = datasets.MIRRORS["mnist"]
    monkeypatch.setitem(datasets.MIRRORS, "mnist", [(tmp_path / "gone").as_uri() + "/", *good])
    check_set(datasets.load_mnist(data_dir=tmp_path / "t"), mirror)


def test_no_files_and_download_off_names_folder(tmp_path):
    with pytest.raises(DataError, match="downloading is off") as info:
        datasets.load_mnist(download=False)
    message = str(info.value)
    assert str(tmp_path / "xdg" / "portanet" / "mnist") in message
    assert all(name in message for name in datasets.FILES)
    assert "PORTANET_DATA" in message and "data_dir" in message


def test_no_network_names_folders(tmp_path, monkeypatch):
    system = tmp_path / "system"
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "fashion-mnist", [system])
    with pytest.raises(DataError, match="download failed") as info:
        datasets.load_fashion_mnist()
    message = str(info.value)
    assert str(tmp_path / "xdg" / "portanet" / "fashion-mnist") in message
    assert str(system) in message and "PORTANET_DATA" in message
    assert all(name in message for name in datasets.FILES)
    assert list((tmp_path / "xdg" / "portanet" / "fashion-mnist").iterdir()) == []


def test_portanet_data_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTANET_DATA", str(tmp_path / "shared"))
    arrays = write_set(tmp_path / "shared" / "mnist")
    check_set(datasets.load_mnist(download=False), arrays)


def test_system_copy_used_only_when_complete(tmp_path, monkeypatch):
    system = tmp_path / "system"
    arrays = write_set(system)
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "fashion-mnist", [system])
    check_set(datasets.load_fashion_mnist(download=False), arrays)
    (system / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz not found"):
        datasets.load_fashion_mnist(download=False)


def test_load_digits():
    (x_train, y_train), (x_test, y_test) = datasets.load_digits()
    assert x_train.shape[1:] == x_test.shape[1:] == (8, 8)
    assert len(x_train) == len(y_train) and len(x_test) == len(y_test)
    assert len(x_test) in range(440, 460) and len(x_train) + len(x_test) == 1797
    for array in (x_train, y_train, x_test, y_test):
        assert array.dtype == np.uint8
    assert x_train.max() == 16 and set(y_train) == set(y_test) == set(range(10))
    (x_again, y_again), _ = datasets.load_digits()
    np.testing.assert_array_equal(x_again, x_train)
    np.testing.assert_array_equal(y_again, y_train)
    (x_other, _), _ = datasets.load_digits(seed=1)
    assert not np.array_equal(x_other, x_train)


def test_load_digits_split_is_disjoint_and_complete():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    (x_train, y_train), (x_test, y_test) = datasets.load_digits(test_fraction=0.3, seed=5)
    x, y = np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])
    # Every original sample appears exactly once across the two parts.
    got = sorted(image.tobytes() + bytes([label]) for image, label in zip(x, y, strict=True))
    want = sorted(
        image.astype(np.uint8).tobytes() + bytes([label])
        for image, label in zip(bunch.images, bunch.target, strict=True)
    )
    assert got == want


def test_load_digits_bad_fraction():
    with pytest.raises(InputError, match="test_fraction"):
        datasets.load_digits(test_fraction=1.0)


def test_load_by_name():
    (x_train, _), _ = datasets.load("digits", data_dir="ignored")
    assert x_train.shape[1:] == (8, 8)
    with pytest.raises(DataError, match="digits, mnist, fashion-mnist"):
        datasets.load("cifar")


@pytest.mark.skipif(
    not all((DEBIAN_FASHION / name).is_file() for name in datasets.FILES),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "fashion-mnist", [DEBIAN_FASHION])
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(download=False)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    for array in (x_train, y_train, x_test, y_test):
        assert array.dtype == np.uint8
    assert set(np.unique(y_train)) == set(np.unique(y_test)) == set(range(10))
