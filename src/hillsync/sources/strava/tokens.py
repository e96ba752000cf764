"""The Strava token file: read, rotated after a refresh, written 0600 (atomically)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog

from hillsync.errors import AuthRequired
from hillsync.model import Secret
from hillsync.sources.strava.mapping import KIND

log = structlog.get_logger(__name__)


#: Refresh the access token when it expires within this margin.
REFRESH_MARGIN = timedelta(minutes=10)


def refreshed_tokens(current: Tokens, info: Mapping[str, Any]) -> Tokens:
    """The tokens after a refresh: what the answer gives, else what was there.

    An expiry of 0 (the answer had no usable access token or expiry) forces another refresh
    at the next poll, with the refresh token that was kept either way.
    """

    def text(key: str) -> str | None:
        value = info.get(key)
        return value if isinstance(value, str) and value else None

    access, refresh = text("access_token"), text("refresh_token")
    try:
        expires_at = int(info.get("expires_at"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        expires_at = 0
    return replace(
        current,
        access_token=Secret(access) if access else current.access_token,
        refresh_token=Secret(refresh) if refresh else current.refresh_token,
        expires_at=expires_at if access else 0,
    )


@dataclass(frozen=True)
class Tokens:
    """One athlete's OAuth tokens, and the application (`client_id`) that issued them."""

    access_token: Secret
    refresh_token: Secret
    expires_at: int
    athlete_id: str
    scope: str
    display_name: str | None = None
    client_id: int | None = None

    def to_json(self) -> bytes:
        """The token file's content (it holds the secrets: write it 0600 only)."""
        return json.dumps(
            {
                "access_token": self.access_token.reveal(),
                "refresh_token": self.refresh_token.reveal(),
                "expires_at": self.expires_at,
                "athlete_id": self.athlete_id,
                "scope": self.scope,
                "display_name": self.display_name,
                "client_id": self.client_id,
            },
            indent=2,
        ).encode()


def not_connected(command: str) -> AuthRequired:
    """The error of a source whose token file is missing."""
    return AuthRequired(f"strava is not connected: run {command}", source=KIND, command=command)


def read_tokens(path: Path, command: str) -> Tokens:
    """The tokens stored at `path`.

    Raises AuthRequired when the file is missing or unreadable (the runner must reconnect).
    """
    try:
        data = json.loads(path.read_bytes())
        return Tokens(
            access_token=Secret(str(data["access_token"])),
            refresh_token=Secret(str(data["refresh_token"])),
            expires_at=int(data["expires_at"]),
            athlete_id=str(data.get("athlete_id") or ""),
            scope=str(data.get("scope") or ""),
            display_name=data.get("display_name"),
            client_id=int(data["client_id"]) if data.get("client_id") is not None else None,
        )
    except FileNotFoundError:
        raise not_connected(command) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AuthRequired(
            f"the strava token file cannot be read ({type(e).__name__}): run {command}",
            source=KIND,
            command=command,
        ) from None
