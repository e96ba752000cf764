"""Where hillsync keeps its config, state (tokens) and data (database).

XDG base directories for a user, or the directories systemd hands a service through
CONFIGURATION_DIRECTORY / STATE_DIRECTORY / CREDENTIALS_DIRECTORY.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote


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


APP = "hillsync"
DATABASE_FILE = "hillsync.db"


def _home(environ: Mapping[str, str]) -> Path:
    home = environ.get("HOME")
    return Path(home) if home else Path.home()


def _systemd_dir(environ: Mapping[str, str], variable: str) -> Path | None:
    # systemd passes a colon-separated list when a unit names several directories; the
    # first one is the unit's own.
    value = environ.get(variable, "")
    first = value.split(":", 1)[0]
    return Path(first) if first else None


def _xdg_dir(environ: Mapping[str, str], variable: str, default: str) -> Path:
    # The XDG spec says a relative value is invalid and must be ignored.
    value = environ.get(variable, "")
    base = Path(value) if value and os.path.isabs(value) else _home(environ) / default
    return base / APP


def state_dir(environ: Mapping[str, str]) -> Path:
    """Where tokens and other state live: $STATE_DIRECTORY, else $XDG_STATE_HOME/hillsync."""
    return _systemd_dir(environ, "STATE_DIRECTORY") or _xdg_dir(
        environ, "XDG_STATE_HOME", ".local/state"
    )


def data_dir(environ: Mapping[str, str]) -> Path:
    """Where the SQLite database lives: $STATE_DIRECTORY under systemd (a service keeps its
    data as state), else $XDG_DATA_HOME/hillsync."""
    return _systemd_dir(environ, "STATE_DIRECTORY") or _xdg_dir(
        environ, "XDG_DATA_HOME", ".local/share"
    )


def config_dir(environ: Mapping[str, str]) -> Path:
    """Where config.toml is looked for: $CONFIGURATION_DIRECTORY, else
    $XDG_CONFIG_HOME/hillsync."""
    return _systemd_dir(environ, "CONFIGURATION_DIRECTORY") or _xdg_dir(
        environ, "XDG_CONFIG_HOME", ".config"
    )


def credentials_dir(environ: Mapping[str, str]) -> Path | None:
    """systemd's $CREDENTIALS_DIRECTORY (LoadCredential=), or None outside such a unit."""
    return _systemd_dir(environ, "CREDENTIALS_DIRECTORY")


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file, quoted so any path (spaces, %, ?, #) survives."""
    return "sqlite:///" + quote(str(path), safe=" /:+@,;=~!$&'()*")


def default_database_url(environ: Mapping[str, str]) -> str:
    """The SQLite URL of the default database in the data directory."""
    return sqlite_url(data_dir(environ) / DATABASE_FILE)


def token_dir(environ: Mapping[str, str], athlete: str, kind: str) -> Path:
    """The folder of one account's token files (garminconnect keeps a folder of them)."""
    return state_dir(environ) / "tokens" / athlete / kind


def token_path(environ: Mapping[str, str], athlete: str, kind: str) -> Path:
    """The token file of one account: state_dir/tokens/<athlete>/<kind>.json."""
    return state_dir(environ) / "tokens" / athlete / f"{kind}.json"
