"""The disk refusing a write (full, read-only, a folder gone) while a network, a checkpoint, a CSV
log or an ONNX model is written: a portanet error naming the file and what to do, the file there
before unchanged, and no temporary file left."""

import errno
import os
import shutil

import numpy as np
import pytest

import portanet
from portanet import CSVLogger, FCLayer, ModelCheckpoint, Network
from portanet.saving import files

pytestmark = pytest.mark.backend_independent


def small_net():
    net = Network([FCLayer(3, 2)])
    net.use("mse")
    return net


def trained_for_one_epoch(callback):
    """Train a small network for one epoch with ``callback``."""
    x = np.random.default_rng(0).normal(size=(8, 3))
    small_net().fit(x, x[:, :2], epochs=1, batch_size=4, verbose=0, callbacks=[callback])


WRITERS = {  # each: (file name, write it there)
    "save .npz": ("net.npz", lambda path: small_net().save(path)),
    "save .safetensors": ("net.safetensors", lambda path: small_net().save(path)),
    "ONNX export": ("net.onnx", lambda path: portanet.export_onnx(small_net(), path)),
    "ModelCheckpoint": ("best.npz", lambda path: trained_for_one_epoch(
        ModelCheckpoint(path, monitor="loss"))),
    "CSVLogger": ("log.csv", lambda path: trained_for_one_epoch(CSVLogger(path, append=True))),
}


@pytest.fixture(params=WRITERS)
def writer(request, tmp_path):
    """``(path, write)``: a file that one writer has written once, and that writer."""
    if request.param == "save .safetensors":
        pytest.importorskip("safetensors")
    if request.param == "ONNX export":
        pytest.importorskip("onnx")
    name, write = WRITERS[request.param]
    path = tmp_path / "out" / name
    path.parent.mkdir()
    write(path)
    return path, write


class FillingDisk:
    """A file on a disk with ``room`` bytes left: the write past them stores what fits and
    raises ENOSPC."""

    def __init__(self, stream, room):
        self.stream, self.room = stream, room

    def write(self, data):
        if len(data) > self.room:
            self.stream.write(bytes(data[:self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.stream.write(data)

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.stream.close()


def opening(monkeypatch, before=None, wrap=None):
    """Make portanet's writes open their files through ``before(path)`` (called first) and
    ``wrap(stream)``; every write of a file goes through portanet.saving.files."""
    def patched_open(path, mode, **options):
        if before is not None:
            before(path)
        stream = open(path, mode, **options)
        return stream if wrap is None else wrap(stream)
    monkeypatch.setattr(files, "open", patched_open, raising=False)


def refused(write, path, *says):
    with pytest.raises(portanet.WriteError) as caught:
        write(path)
    message = str(caught.value)
    assert repr(str(path)) in message
    for words in says:
        assert words in message, message


def test_a_full_disk_keeps_the_file_and_says_what_to_do(writer, monkeypatch):
    path, write = writer
    before = path.read_bytes()
    opening(monkeypatch, wrap=lambda stream: FillingDisk(stream, room=5))
    refused(write, path, "the disk is full; free some space", f"{path.name} is unchanged"
            if path.suffix != ".csv" else f"{path.name} keeps what it held")
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]  # no temporary file left


@pytest.mark.parametrize("code, says", [
    (errno.EROFS, "the file system is read-only; write to another folder"),
    (errno.EACCES, "permission denied; write to a folder you may write to"),
    (errno.EIO, "Input/output error; check the disk and the folder"),
])
def test_a_disk_that_refuses_the_write_keeps_the_file(writer, monkeypatch, code, says):
    path, write = writer
    before = path.read_bytes()

    def refuse(path):
        raise OSError(code, os.strerror(code), str(path))

    opening(monkeypatch, before=refuse)
    refused(write, path, says)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]


def test_a_folder_that_vanished_after_the_check_is_named(writer, monkeypatch):
    path, write = writer
    opening(monkeypatch, before=lambda _: shutil.rmtree(path.parent, ignore_errors=True))
    refused(write, path, "its folder no longer exists; create it again", "nothing was written")


def read_only(path):
    """Make ``path`` and its folder read-only; skip the test where that does not stop writes
    (as root)."""
    path.chmod(0o444)
    path.parent.chmod(0o555)
    if os.access(path.parent, os.W_OK):
        writable(path)
        pytest.skip("chmod does not stop this user from writing (root)")


def writable(path):
    path.parent.chmod(0o755)
    path.chmod(0o644)


@pytest.fixture
def restore_permissions(writer):
    yield
    writable(writer[0])  # so that pytest can remove tmp_path


def test_a_read_only_folder_is_refused_before_writing(writer, restore_permissions):
    path, write = writer
    before = path.read_bytes()
    read_only(path)
    with pytest.raises(portanet.InputError, match="is not writable .save elsewhere, or change"):
        write(path)
    assert path.read_bytes() == before


def test_a_folder_made_read_only_after_the_check_is_named(writer, monkeypatch,
                                                         restore_permissions):
    path, write = writer
    before = path.read_bytes()
    opening(monkeypatch, before=lambda _: read_only(path))  # the log is appended to: it too
    refused(write, path, "permission denied")
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]


def test_a_csv_log_cut_short_by_a_full_disk_keeps_whole_rows(tmp_path, monkeypatch):
    log = tmp_path / "log.csv"

    class FillTheDisk(portanet.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 2:
                opening(monkeypatch, wrap=lambda stream: FillingDisk(stream, room=3))

    x = np.random.default_rng(0).normal(size=(8, 3))
    with pytest.raises(portanet.WriteError, match="cannot write the CSV log"):
        small_net().fit(x, x[:, :2], epochs=3, batch_size=4, verbose=0,
                        callbacks=[FillTheDisk(), CSVLogger(log)])
    assert [line.split(",")[0] for line in log.read_text().splitlines()] == ["epoch", "1"]


def test_write_errors_are_os_errors_with_the_disks_errno(tmp_path, monkeypatch):
    opening(monkeypatch, wrap=lambda stream: FillingDisk(stream, room=0))
    with pytest.raises(OSError) as caught:
        small_net().save(tmp_path / "net.npz")
    assert isinstance(caught.value, portanet.PortanetError)
    assert caught.value.errno == errno.ENOSPC
