"""stravalib's client as hillsync uses it: a session with timeouts, no self-refresh, the
retry policy, and what an HTTP error says."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import requests
import structlog
import tenacity
from requests.adapters import HTTPAdapter
from stravalib.client import Client

from hillsync.sources.strava.budget import Budget

log = structlog.get_logger(__name__)


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


def make_client(
    session: requests.Session, access_token: str | None, budget: Budget | None
) -> Client:
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
    return client


def fault_status(error: BaseException) -> int | None:
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return int(error.response.status_code)
    return None


def transient(error: BaseException) -> bool:
    """Server errors and network failures are worth retrying; nothing else is."""
    if isinstance(error, requests.HTTPError):
        status = fault_status(error)
        return status is not None and status >= 500
    return isinstance(error, requests.ConnectionError | requests.Timeout)


def default_retrying() -> tenacity.Retrying:
    """Four attempts with exponential backoff and jitter, at most about a minute in all."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(4) | tenacity.stop_after_delay(60),
        wait=tenacity.wait_exponential_jitter(initial=1, max=20),
    )


def policy(retrying: tenacity.Retrying | None) -> tenacity.Retrying:
    # Whatever policy is passed in, only transient errors are retried, and the last error
    # itself (not a RetryError) comes out, so it can be mapped to a clear message.
    return (retrying or default_retrying()).copy(
        retry=tenacity.retry_if_exception(transient), reraise=True
    )


def error_codes(error: requests.HTTPError) -> list[Mapping[str, Any]]:
    try:
        body = error.response.json() if error.response is not None else {}
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
