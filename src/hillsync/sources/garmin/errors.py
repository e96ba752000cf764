"""What a garminconnect or requests failure means for hillsync (never its text)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TypeVar

import requests
import structlog
from garminconnect import (
    GarminConnectAuthenticationError,
    GarminConnectConnectionError,
    GarminConnectTooManyRequestsError,
)

from hillsync.errors import (
    AuthRequired,
    RateLimited,
    SourceError,
    SourceUnavailable,
)

log = structlog.get_logger(__name__)


T = TypeVar("T")
#: Garmin asks for patience after a 429; it rarely lifts sooner than this.
RATE_LIMIT_PAUSE = timedelta(minutes=30)

CONNECT_COMMAND = "hillsync connect garmin"


_STATUS_RE = re.compile(r"\b(?:API Error|HTTP|status[= ]?)\s*\(?(\d{3})\b", re.IGNORECASE)


def chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def http_status(exc: BaseException) -> int | None:
    """The first HTTP status found along the exception's cause chain."""
    for e in chain(exc):
        resp = getattr(e, "response", None)
        code = getattr(resp, "status_code", None)
        if isinstance(code, int):
            return code
        match = _STATUS_RE.search(str(e))
        if match:
            return int(match.group(1))
    return None


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: network errors and 5xx, nothing else."""
    if any(isinstance(e, GarminConnectTooManyRequestsError) for e in chain(exc)):
        return False
    status = http_status(exc)
    if status is not None:
        return status >= 500
    # garminconnect reports a profile it could not fetch at login as an authentication
    # error even when the network was the cause, so the cause decides.
    return any(isinstance(e, requests.ConnectionError | requests.Timeout) for e in chain(exc))


def translate(
    exc: BaseException, *, source: str, command: str, now: datetime, during: str
) -> SourceError:
    """Turn a garminconnect/requests failure into hillsync's error, without its text.

    The library's messages can hold URLs and server replies; only the status is kept.
    """
    status = http_status(exc)
    if status in (427, 429) or any(
        isinstance(e, GarminConnectTooManyRequestsError) for e in chain(exc)
    ):
        resume = now + RATE_LIMIT_PAUSE
        return RateLimited(
            f"Garmin Connect is rate limiting {during}; pausing {source} until "
            f"{resume:%Y-%m-%d %H:%M} UTC",
            resume_at=resume,
            source=source,
        )
    if is_transient(exc):
        what = f"HTTP {status}" if status else "network error"
        return SourceUnavailable(
            f"Garmin Connect could not be reached {during} ({what}); will try again at the "
            "next poll",
            source=source,
        )
    if status == 403:
        return SourceUnavailable(
            f"Garmin Connect refused the request {during} (HTTP 403): it may be blocking "
            "this network or client; try again later",
            source=source,
        )
    if status == 401 or isinstance(exc, GarminConnectAuthenticationError):
        return AuthRequired(
            f"Garmin Connect no longer accepts the saved login of {source}: run {command}",
            source=source,
            command=command,
        )
    what = f"HTTP {status}" if status else type(exc).__name__
    return SourceUnavailable(f"Garmin Connect failed {during} ({what})", source=source)


GARMIN_ERRORS: tuple[type[BaseException], ...] = (
    GarminConnectAuthenticationError,
    GarminConnectConnectionError,
    GarminConnectTooManyRequestsError,
    requests.RequestException,
)


def reason(exc: BaseException) -> str:
    status = http_status(exc)
    if status is not None:
        return f"HTTP {status}"
    if is_transient(exc):
        return "network error"
    return type(exc).__name__


_REFRESH_STATUS_RE = re.compile(r"refresh failed: (\d{3})")


def refresh_refused(exc: BaseException | None) -> bool:
    """Whether a failed DI token refresh was Garmin refusing the refresh token (400/401:
    revoked, or rotated by another copy of the token file) rather than an outage."""
    if exc is None:
        return False
    for e in chain(exc):
        if isinstance(e, GarminConnectAuthenticationError):
            match = _REFRESH_STATUS_RE.search(str(e))
            if match and int(match.group(1)) in (400, 401):
                return True
    return False


def refresh_reason(exc: BaseException) -> str:
    """A failed refresh in a few words (its HTTP status when it has one), no library text."""
    for e in chain(exc):
        match = _REFRESH_STATUS_RE.search(str(e))
        if match:
            return f"HTTP {match.group(1)}"
    return reason(exc)
