"""garminconnect's token file in hillsync's state directory (0600 in a 0700 folder)."""

from __future__ import annotations

import json
from pathlib import Path

import structlog

from hillsync.errors import (
    AuthRequired,
)
from hillsync.paths import write_private_file
from hillsync.sources.garmin.errors import CONNECT_COMMAND

log = structlog.get_logger(__name__)


#: The file garminconnect reads and writes inside the token folder.
TOKEN_FILE = "garmin_tokens.json"  # noqa: S105 - a file name, not a secret


def real_dir(token_dir: Path) -> Path:
    """`token_dir` with every symlink resolved.

    garminconnect refuses a token path with a symlink not owned by root anywhere in it
    (a guard against planted links), and says only that the tokens did not load; a state
    directory under a symlinked home is common, so hillsync hands it the real path.
    """
    return token_dir.expanduser().resolve()


def token_file(token_dir: Path) -> Path:
    """The token file garminconnect reads and writes in `token_dir` (its real path)."""
    return real_dir(token_dir) / TOKEN_FILE


def fresh_login_store(token_dir: Path) -> str:
    """A token path that holds nothing, for a login that must use the password.

    garminconnect falls back to the GARMINTOKENS environment variable when it gets no
    token path: hillsync uses its own token path only, so it always passes one.
    """
    return str(real_dir(token_dir) / "fresh-login.json")


def write_tokens(token_dir: Path, data: bytes) -> None:
    """Write the token file 0600 in a 0700 folder, atomically.

    Raises AuthRequired when the content is not a garminconnect token file.
    """
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if not isinstance(parsed, dict) or not parsed.get("di_token"):
        raise AuthRequired(
            "that is not a garminconnect token file (a JSON object with di_token, "
            "di_refresh_token, di_client_id); make one with garminconnect >= 0.3.20",
            source="garmin",
            command=CONNECT_COMMAND,
        )
    write_private_file(token_file(token_dir), data)


def disconnect_garmin(token_dir: Path) -> None:
    """Delete the saved tokens (Garmin offers no way to revoke them remotely).

    Raises OSError when the file exists but cannot be removed.
    """
    token_file(token_dir).unlink(missing_ok=True)
