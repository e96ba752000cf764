"""A one-shot HTTP listener that catches an OAuth redirect on 127.0.0.1.

It binds the loopback interface only (never 0.0.0.0: the code in the redirect is a
credential), answers the one redirect it waits for, answers 404 to anything else a browser
asks for (favicon.ico) without stopping, and gives up after a timeout.

The browser's page tells the truth: the redirect is answered only once the caller has
finished with it (the token exchange and the scope check), with the same outcome the
terminal prints.
"""

from __future__ import annotations

import hmac
import html
import sys
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
import structlog

from hillsync.errors import AuthRequired, HillsyncError

log = structlog.get_logger(__name__)

LOOPBACK = "127.0.0.1"
CALLBACK_PATH = "/authorized"

_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>hillsync</title></head>"
    "<body style='font-family:sans-serif'><h1>{title}</h1>"
    "<p>{text}</p><p>{hint}</p></body></html>"
)

#: What the caller's completion may raise that is an answer, not a bug: the page shows it.
_EXPECTED = (HillsyncError, requests.RequestException, OSError, ValueError, KeyError, TypeError)


def page(ok: bool, text: str) -> str:
    """The HTML page answering the redirect: success or failure, with `text` (escaped)."""
    if ok:
        return _PAGE.format(
            title="hillsync is connected", text=html.escape(text), hint="You can close this tab."
        )
    return _PAGE.format(
        title="hillsync could not connect",
        text=html.escape(text),
        hint="The terminal says the same, and what to do.",
    )


class NoRedirect(AuthRequired):
    """No redirect reached the listener before its timeout."""


class _Handler(BaseHTTPRequestHandler):
    server: _OneShotServer

    def do_GET(self) -> None:
        parts = urlsplit_path(self.path)
        if parts[0] != CALLBACK_PATH:
            self._answer(404, "<!doctype html><p>not found</p>")
            return
        params = parts[1]
        server = self.server
        server.params = params
        if not hmac.compare_digest(params.get("state", ""), server.expected_state):
            log.warning("oauth_state_mismatch")
            server.error = AuthRequired(
                "the authorization answer did not match this request (state mismatch): refused"
            )
            self._answer(400, page(False, str(server.error)))
            return
        try:
            server.value, message = server.complete(params)
        except _EXPECTED as e:
            server.error = e
            text = str(e) if isinstance(e, HillsyncError) else "see the terminal"
            self._answer(200, page(False, text))
            return
        self._answer(200, page(True, message))

    def _answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line holds the authorization code: never let http.server print it.
        return


def urlsplit_path(path: str) -> tuple[str, dict[str, str]]:
    """The path and query parameters of a request line's target."""
    parts = urlsplit(path)
    return parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))


class _OneShotServer(HTTPServer):
    def __init__(
        self,
        port: int,
        expected_state: str,
        complete: Callable[[Mapping[str, str]], tuple[Any, str]],
    ) -> None:
        super().__init__((LOOPBACK, port), _Handler)
        self.expected_state = expected_state
        self.complete = complete
        self.params: dict[str, str] | None = None
        self.value: Any = None
        self.error: BaseException | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print the traceback (whose locals may hold the code) to
        # stderr and carry on waiting: keep the error for wait() to raise instead.
        self.error = sys.exc_info()[1]


def _params_as_value(params: Mapping[str, str]) -> tuple[dict[str, str], str]:
    return dict(params), "The authorization reached hillsync."


class RedirectListener:
    """Listens on 127.0.0.1:`port` (0 picks a free port) for one OAuth redirect.

    Use as a context manager so the socket is closed whatever happens. Binding happens at
    construction, so `redirect_uri` is known before the browser is sent anywhere.

    Raises OSError when the port cannot be bound.
    """

    def __init__(self, expected_state: str, *, port: int = 0) -> None:
        self._expected_state = expected_state
        self._server: _OneShotServer = _OneShotServer(port, expected_state, _params_as_value)
        self.port: int = int(self._server.server_address[1])

    @property
    def redirect_uri(self) -> str:
        """The address to give the authorization server as `redirect_uri`."""
        return f"http://{LOOPBACK}:{self.port}{CALLBACK_PATH}"

    def wait(self, timeout_s: float = 300.0) -> dict[str, str]:
        """Serve requests until the redirect arrives; return its query parameters.

        Raises AuthRequired when the redirect's `state` does not match (a forged or stale
        answer), NoRedirect when no redirect arrives within `timeout_s` seconds.
        """
        return self.complete(timeout_s, _params_as_value)

    def complete[T](
        self, timeout_s: float, finish: Callable[[Mapping[str, str]], tuple[T, str]]
    ) -> T:
        """Serve requests until the redirect arrives, answer it once `finish` is done.

        `finish` gets the redirect's query parameters and returns a value and the line the
        page shows; what it raises is shown on the page and raised here.

        Raises AuthRequired (state mismatch), NoRedirect (timeout), or what `finish` raised.
        """
        self._server.complete = finish
        deadline = time.monotonic() + timeout_s
        # A short poll interval keeps Ctrl-C and the deadline responsive.
        self._server.timeout = min(0.25, max(timeout_s, 0.01))
        while self._server.params is None and self._server.error is None:
            if time.monotonic() >= deadline:
                raise NoRedirect(
                    f"no answer from the browser within {timeout_s:g} s: run the command again,"
                    " or pass --redirect-url or --code"
                )
            self._server.handle_request()
        if self._server.error is not None:
            raise self._server.error
        value: T = self._server.value
        return value

    def close(self) -> None:
        """Close the listening socket."""
        self._server.server_close()

    def __enter__(self) -> RedirectListener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
