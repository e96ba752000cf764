"""A one-shot HTTP listener that catches an OAuth redirect on 127.0.0.1.

It binds the loopback interface only (never 0.0.0.0: the code in the redirect is a
credential), answers the one redirect it waits for, answers 404 to anything else a browser
asks for (favicon.ico) without stopping, and gives up after a timeout.
"""

from __future__ import annotations

import hmac
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import structlog

from hillsync.errors import AuthRequired

log = structlog.get_logger(__name__)

LOOPBACK = "127.0.0.1"
CALLBACK_PATH = "/authorized"

_DONE_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>hillsync</title></head>"
    "<body style='font-family:sans-serif'><h1>hillsync is connected</h1>"
    "<p>You can close this tab.</p></body></html>"
)
_REFUSED_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>hillsync</title></head>"
    "<body style='font-family:sans-serif'><h1>hillsync could not connect</h1>"
    "<p>{reason}</p><p>Go back to the terminal for what to do.</p></body></html>"
)


class _Handler(BaseHTTPRequestHandler):
    server: _OneShotServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != CALLBACK_PATH:
            self._answer(404, "<!doctype html><p>not found</p>")
            return
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.server.result = params
        if not hmac.compare_digest(params.get("state", ""), self.server.expected_state):
            self._answer(400, _REFUSED_PAGE.format(reason="The answer did not match this request."))
        elif "error" in params:
            self._answer(200, _REFUSED_PAGE.format(reason="The authorization was not granted."))
        else:
            self._answer(200, _DONE_PAGE)

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


class _OneShotServer(HTTPServer):
    def __init__(self, port: int, expected_state: str) -> None:
        super().__init__((LOOPBACK, port), _Handler)
        self.expected_state = expected_state
        self.result: dict[str, str] | None = None


class RedirectListener:
    """Listens on 127.0.0.1:`port` (0 picks a free port) for one OAuth redirect.

    Use as a context manager so the socket is closed whatever happens. Binding happens at
    construction, so `redirect_uri` is known before the browser is sent anywhere.

    Raises OSError when the port cannot be bound.
    """

    def __init__(self, expected_state: str, *, port: int = 0) -> None:
        self._server = _OneShotServer(port, expected_state)
        self.port: int = int(self._server.server_address[1])

    @property
    def redirect_uri(self) -> str:
        """The address to give the authorization server as `redirect_uri`."""
        return f"http://{LOOPBACK}:{self.port}{CALLBACK_PATH}"

    def wait(self, timeout_s: float = 300.0) -> dict[str, str]:
        """Serve requests until the redirect arrives; return its query parameters.

        Raises AuthRequired when the redirect's `state` does not match (a forged or stale
        answer) or when no redirect arrives within `timeout_s` seconds.
        """
        deadline = time.monotonic() + timeout_s
        # A short poll interval keeps Ctrl-C and the deadline responsive.
        self._server.timeout = min(0.25, max(timeout_s, 0.01))
        while self._server.result is None:
            if time.monotonic() >= deadline:
                raise AuthRequired(
                    f"no answer from the browser within {timeout_s:g} s: run the command again,"
                    " or pass --redirect-url or --code"
                )
            self._server.handle_request()
        params = self._server.result
        if not hmac.compare_digest(params.get("state", ""), self._server.expected_state):
            log.warning("oauth_state_mismatch")
            raise AuthRequired(
                "the authorization answer did not match this request (state mismatch): refused"
            )
        return params

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
