"""Running the web app under uvicorn: options from the config, the loopback rule, shutdown."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from types import FrameType
from typing import Any

import structlog

from hillsync.config import Settings
from hillsync.errors import ConfigError
from hillsync.web.app import WebOptions, create_app
from hillsync.web.backend import WebBackend
from hillsync.web.security import is_loopback

log = structlog.get_logger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def check_options(options: WebOptions) -> None:
    """Refuse to serve on a non-loopback address without a password.

    Raises ConfigError naming the key to set.
    """
    if not is_loopback(options.host) and options.password is None:
        raise ConfigError(
            f"web.password: required to serve on {options.host} (any address but loopback):"
            ' set it to a secret reference such as "credential:web-password", or serve on'
            " 127.0.0.1 behind a reverse proxy"
        )
    if options.public_url and not options.public_url.startswith(("https://", "http://")):
        raise ConfigError("web.public_url: must start with https:// or http://")


def web_options(settings: Settings, host: str | None, port: int | None) -> WebOptions:
    """The server's options: command-line host/port over `[web]`, the webhook token."""
    web = settings.web
    return WebOptions(
        host=host or web.host,
        port=port or web.port,
        public_url=web.public_url,
        password=web.password,
        webhook_verify_token=settings.strava.webhook_verify_token,
    )


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, stopping cleanly on SIGTERM/SIGINT with exit code 0.

        uvicorn re-raises the stop signal after its graceful shutdown, so the process would
        die by SIGTERM; `hillsync serve`, like `hillsync run`, exits 0 on a stop request.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self._stop) for sig in _STOP_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def _stop(self, sig: int, _frame: FrameType | None) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C: do not wait for open requests
            else:
                self.should_exit = True

    return Server


def serve(
    backend: WebBackend,
    options: WebOptions,
    *,
    clock: Callable[[], datetime] | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn handles both and finishes open requests).

    Raises ConfigError (see `check_options`) and OSError when the port cannot be bound.
    """
    import uvicorn

    check_options(options)
    app = (
        create_app(backend, options) if clock is None else create_app(backend, options, clock=clock)
    )
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_config=None,  # hillsync's own logging (structlog) stays in charge
        access_log=False,  # URLs can hold share tokens and OAuth codes
        proxy_headers=bool(options.public_url),
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    server = _server_class()(config)
    where = f"http://{options.host}:{options.port}"
    log.info("web_serving", address=where, login=options.login_required)
    if ready is not None:
        ready(where)
    server.run()
