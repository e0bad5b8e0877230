"""Files written safely: paths checked before long work, writes that never leave a damaged
file behind, and failures of the disk (full, read-only, a folder gone) told as WriteError."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from .._checks import file_path
from ..errors import InputError, WriteError


def check_writable(path, what="the network") -> Path:
    """``path`` as a Path if a file can be written there; else InputError saying why.

    Checked before long work (training) so that a bad path does not waste it.
    """
    path = file_path("path", path)
    if path.is_dir() or not path.name or path.name in (".", ".."):
        raise InputError(f"cannot save {what} to {str(path)!r}: it is a folder; give a file "
                         f"name, e.g. {str(path / 'net.npz')!r}")
    if not path.parent.is_dir():
        raise InputError(f"cannot save {what} to {str(path)!r}: folder {str(path.parent)!r} "
                         "does not exist (create it first)")
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"cannot save {what} to {str(path)!r}: folder {str(path.parent)!r} "
                         "is not writable (save elsewhere, or change its permissions)")
    return path


def writable_file(path, what, suffixes, kinds="") -> Path:
    """``path`` as a Path where ``what`` can be written: a writable place (see
    :func:`check_writable`) and a name ending in one of ``suffixes`` (``kinds`` says what they
    are)."""
    path = check_writable(path, what)
    if path.suffix not in suffixes:
        raise InputError(f"cannot save {what} to {str(path)!r}: unknown file suffix "
                         f"{path.suffix!r}; use {' or '.join(suffixes)}{kinds}")
    return path


_DENIED = ("permission denied", "write to a folder you may write to, or change its permissions")
# what went wrong and what to do, for the failures of the disk that a user can mend
_ADVICE = {
    errno.ENOSPC: ("the disk is full", "free some space, or write to another disk"),
    errno.EROFS: ("the file system is read-only", "write to another folder"),
    errno.EACCES: _DENIED,
    errno.EPERM: _DENIED,
    errno.ENOENT: ("its folder no longer exists", "create it again, or write to another folder"),
}


@contextlib.contextmanager
def _as_write_error(path, what, kept):
    """Turn an OSError of the block into a WriteError naming ``path``, what went wrong and what
    to do; ``kept`` says what the failure left of the file, where there is one."""
    try:
        yield
    except OSError as exc:
        problem, fix = _ADVICE.get(exc.errno, (exc.strerror or str(exc),
                                               "check the disk and the folder, and try again"))
        left = kept if path.exists() else "nothing was written"
        error = WriteError(f"cannot write {what} to {str(path)!r}: {problem}; {fix} ({left})")
        error.errno = exc.errno  # for code that tells disk errors apart
        raise error from None


def write_atomically(path, write, what="the network") -> Path:
    """Call ``write(stream)`` on a temporary file next to ``path``, then rename it into place:
    an interrupted or failed write never leaves a damaged ``path`` nor the temporary file.
    WriteError says why the disk refused."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with _as_write_error(path, what, f"{path.name} is unchanged"):
        try:
            with open(temporary, "wb") as stream:
                write(stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(OSError):  # the folder may be gone or read-only by now
                temporary.unlink(missing_ok=True)
    return path


def append(path, data: bytes, what) -> None:
    """Append ``data`` to ``path`` and flush it to disk. Where that fails, the file is cut back
    to what it held and WriteError says why the disk refused."""
    path = Path(path)
    with _as_write_error(path, what, f"{path.name} keeps what it held"):
        with open(path, "ab", buffering=0) as stream:
            start = stream.seek(0, os.SEEK_END)
            try:
                rest = memoryview(data)
                while rest:
                    rest = rest[stream.write(rest):]
                os.fsync(stream.fileno())
            except OSError:
                with contextlib.suppress(OSError):
                    stream.truncate(start)
                raise
