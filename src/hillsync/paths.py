"""Where hillsync keeps its config, state (tokens) and data (database).

XDG base directories for a user, or the directories systemd hands a service through
CONFIGURATION_DIRECTORY / STATE_DIRECTORY / CREDENTIALS_DIRECTORY.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_private_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, mode 0600, in a folder of mode 0700.

    A temporary file in the same folder is written, fsynced and renamed over `path`, and
    the folder is fsynced, so that a crash leaves either the old or the new content (a
    rotated OAuth refresh token must never be lost half-written).

    Raises OSError when the folder cannot be made or written.
    """
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
