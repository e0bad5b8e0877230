"""Files written safely: paths checked before long work, writes that never leave a damaged
file behind."""

from __future__ import annotations

import os
from pathlib import Path

from .._checks import file_path
from ..errors import InputError


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
                         "is not writable")
    return path


def write_atomically(path, write) -> Path:
    """Call ``write(stream)`` on a temporary file next to ``path``, then rename it into place:
    an interrupted write never leaves a damaged ``path``."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
