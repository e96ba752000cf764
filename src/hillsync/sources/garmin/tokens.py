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


def token_file(token_dir: Path) -> Path:
    return token_dir / TOKEN_FILE


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
