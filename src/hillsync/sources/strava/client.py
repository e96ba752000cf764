"""stravalib's client as hillsync uses it: a session with timeouts, no self-refresh, the
retry policy, and what an HTTP error says."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import structlog
import tenacity
from requests.adapters import HTTPAdapter
from stravalib.client import Client

from hillsync.errors import ConfigError
from hillsync.retry import default_retrying
from hillsync.sources.strava.budget import Budget, next_midnight, next_quarter

log = structlog.get_logger(__name__)


#: Strava's API today (Strava announced a new host for 2027-06-01: `api_base` follows it).
STRAVA_API_BASE = "https://www.strava.com/api/v3"
#: Connect and read timeouts of every request: a hung connection must not hang the worker.
HTTP_TIMEOUT = (10.0, 60.0)


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request a timeout: stravalib passes none, and requests waits forever."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = HTTP_TIMEOUT
        return super().send(request, **kwargs)


def new_session() -> requests.Session:
    session = requests.Session()
    session.mount("https://", _TimeoutAdapter())
    return session


class _DropCredentialWarnings(logging.Filter):
    """stravalib warns at every client made without STRAVA_CLIENT_ID in the environment."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return "STRAVA_CLIENT_ID" not in msg and "client.token_expires" not in msg


def api_host(api_base: str) -> tuple[str, str]:
    """The host and path of `api_base` (`https://www.strava.com/api/v3`), as stravalib's
    ApiV3 wants them (`server`, `api_base`): it builds every URL as https://server/...

    Raises ConfigError when the address is not https://HOST[/PATH].
    """
    parts = urlsplit(api_base.strip())
    if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            f"sources.strava.api_base: expected https://HOST[/PATH], got {api_base!r}"
        )
    return parts.netloc, parts.path.rstrip("/")


def oauth_url(client: Client, name: str) -> str:
    """Strava's OAuth endpoint `name` (token, revoke, deauthorize) on the client's host.

    stravalib builds its own OAuth URLs (authorize, token) the same way: on `server`.
    """
    return f"https://{client.protocol.server}/oauth/{name}"


def make_client(
    session: requests.Session,
    access_token: str | None,
    budget: Budget | None,
    api_base: str = STRAVA_API_BASE,
) -> Client:
    """A stravalib client on `api_base`, its HTTP through `session`, refreshing nothing.

    Raises ConfigError when `api_base` is not an https address.
    """
    server, path = api_host(api_base)
    root = logging.getLogger()
    quiet = _DropCredentialWarnings()
    root.addFilter(quiet)
    try:
        if budget is None:
            client = Client(
                access_token=access_token, rate_limit_requests=False, requests_session=session
            )
        else:
            client = Client(
                access_token=access_token, rate_limiter=budget, requests_session=session
            )
    finally:
        root.removeFilter(quiet)
    # stravalib refreshes by itself when it found credentials in the environment; hillsync
    # refreshes (and persists the rotated token) itself, so that path must stay shut.
    client.protocol.client_id = None
    client.protocol.client_secret = None
    # stravalib 2.6 hard-codes www.strava.com/api/v3 as class attributes; Strava moves its
    # API in 2027, so every URL (API and OAuth) follows the configured base instead.
    client.protocol.server = server
    client.protocol.api_base = path
    return client


def fault_status(error: BaseException) -> int | None:
    """The HTTP status of a requests/stravalib error, or None (a network failure)."""
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return int(error.response.status_code)
    return None


def transient(error: BaseException) -> bool:
    """Server errors and network failures are worth retrying; nothing else is."""
    if isinstance(error, requests.HTTPError):
        status = fault_status(error)
        return status is not None and status >= 500
    return isinstance(error, requests.ConnectionError | requests.Timeout)


def policy(retrying: tenacity.Retrying | None) -> tenacity.Retrying:
    # Whatever policy is passed in, only transient errors are retried, and the last error
    # itself (not a RetryError) comes out, so it can be mapped to a clear message.
    return (retrying or default_retrying()).copy(
        retry=tenacity.retry_if_exception(transient), reraise=True
    )


def error_codes(error: requests.HTTPError) -> list[Mapping[str, Any]]:
    """The `errors` entries of a Strava error answer (resource, field, code)."""
    try:
        body = error.response.json() if error.response is not None else {}
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def minutes_until_reset(response: requests.Response | None, now: datetime) -> int:
    """Whole minutes until Strava's spent rate window resets: UTC midnight when the answer's
    headers show the daily budget spent, else the next quarter hour."""
    resume = next_quarter(now)
    headers = response.headers if response is not None else {}
    for prefix in ("X-ReadRateLimit", "X-RateLimit"):
        try:
            usage = [int(x) for x in headers.get(f"{prefix}-Usage", "").split(",")]
            limit = [int(x) for x in headers.get(f"{prefix}-Limit", "").split(",")]
        except ValueError:
            continue
        if len(usage) == 2 and len(limit) == 2 and limit[1] and usage[1] >= limit[1]:
            resume = next_midnight(now)
    return max(1, math.ceil((resume - now).total_seconds() / 60))
