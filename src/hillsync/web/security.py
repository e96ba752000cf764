"""Who may see what: the login, CSRF tokens, rate limits, share-link tokens, headers.

- On the loopback address without a password, whoever reaches the port is the operator
  (the same trust as the CLI on that machine). With a password (required on any other
  address), the operator logs in; the session is a signed cookie (HttpOnly, SameSite=Lax,
  Secure behind https).
- Every form carries a CSRF token bound to the session.
- A share link's token opens one athlete's pages, read-only; only its hash is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from starlette.requests import Request

from hillsync.model import Secret

SESSION_COOKIE = "hillsync_session"
SESSION_MAX_AGE_S = 14 * 24 * 3600
OPERATOR = "operator"
#: The Content-Security-Policy of every page: nothing from elsewhere, no script at all.
CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "form-action 'self' https://www.strava.com; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Share tokens and OAuth codes sit in URLs: never hand them on in a Referer.
    "Referrer-Policy": "no-referrer",
}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def session_key(password: Secret | None) -> str:
    """The key that signs session cookies.

    Derived from the password, so a restart keeps people logged in and a new password logs
    everyone out; without a password a fresh random key per process.
    """
    if password is None:
        return secrets.token_urlsafe(32)
    return hmac.new(password.reveal().encode(), b"hillsync-session-v1", hashlib.sha256).hexdigest()


def password_matches(password: Secret, given: str) -> bool:
    """Constant-time comparison of the configured password and what was typed."""
    return hmac.compare_digest(password.reveal().encode(), given.encode())


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 20:
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, given: object) -> bool:
    """True when a form's token is the session's."""
    token = request.session.get("csrf")
    return (
        isinstance(token, str)
        and isinstance(given, str)
        and bool(given)
        and hmac.compare_digest(token, given)
    )


def share_hash(token: str) -> str:
    """What the store keeps of a share token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_share_token() -> str:
    """A fresh, unguessable share token."""
    return secrets.token_urlsafe(24)


@dataclass
class _Window:
    start: datetime
    count: int


class RateLimiter:
    """At most `limit` requests per key in each `window` (fixed windows), thread-safe.

    The clock is passed in so tests need no sleeping. Keys are client addresses; the
    table is bounded (oldest windows dropped) so a flood of addresses cannot grow it.
    """

    def __init__(
        self,
        limit: int,
        window: timedelta,
        clock: Callable[[], datetime],
        *,
        max_keys: int = 10_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Count one request of `key`; False when it is over the limit."""
        now = self.clock()
        with self._lock:
            w = self._windows.get(key)
            if w is None or now - w.start >= self.window:
                if w is None and len(self._windows) >= self.max_keys:
                    oldest = min(self._windows, key=lambda k: self._windows[k].start)
                    del self._windows[oldest]
                w = _Window(now, 0)
                self._windows[key] = w
            w.count += 1
            return w.count <= self.limit
