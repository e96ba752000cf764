"""Running the web app under uvicorn: options from the config, the loopback rule, shutdown."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
import structlog

from hillsync.config import Settings
from hillsync.errors import ConfigError
from hillsync.web.app import WebOptions, create_app
from hillsync.web.backend import WebBackend
from hillsync.web.security import is_loopback

log = structlog.get_logger(__name__)


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
    server = uvicorn.Server(config)
    where = f"http://{options.host}:{options.port}"
    log.info("web_serving", address=where, login=options.login_required)
    if ready is not None:
        ready(where)
    server.run()
