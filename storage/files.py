"""Small files that must never be seen half-written: keys.

A crash mid-write must not leave an empty or partial key file (the data dir could not be
started again: "expected 32 bytes, got 0"), and two processes racing to create one must
not both win.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SECRET_FILE_MODE = 0o600


def write_secret_file(path: Path, data: bytes) -> bool:
    """Atomically create ``path`` holding ``data``, readable by its owner only; False (and
    nothing written) when it already exists.

    temp file + fsync, then ``link()`` (not ``rename()``): the final name appears only
    complete, and of two racing creators exactly one wins; then the folder is synced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, SECRET_FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            created = True
        except FileExistsError:
            created = False
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return created


def hex_key_file_content(key: bytes) -> bytes:
    """How a secp256k1 key file reads: 0x-hex and a newline."""
    return ("0x" + key.hex() + "\n").encode()
