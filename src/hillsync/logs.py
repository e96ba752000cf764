"""structlog setup: a console on a TTY, JSON lines otherwise (and always under journald).

Every event, from hillsync or from a library logging through the standard `logging`
module (stravalib, urllib3, garminconnect, apprise), goes through one redaction step that
masks every known `Secret` value wherever it appears, and the values of keys that name a
credential (token, password, cookie, ...).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from hillsync.model import Secret

MASK = "***"

#: Keys whose values are credentials whatever they hold.
SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "authorization",
        "code",
        "cookie",
        "set-cookie",
        "api_key",
        "apikey",
    }
)
_SENSITIVE_SUFFIXES = ("_token", "_secret", "_password", "password", "cookie")

#: Package loggers that are ours: they log at the chosen level; the rest at WARNING.
_OWN_LOGGER = "hillsync"
_HANDLER_MARK = "_hillsync_handler"


def _is_sensitive_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    k = key.lower()
    return k in SENSITIVE_KEYS or k.endswith(_SENSITIVE_SUFFIXES)


def _redact_text(text: str, secrets: tuple[str, ...]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


def _redact_value(value: Any, secrets: tuple[str, ...]) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _redact_text(value, secrets)
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, Mapping):
        return {
            k: (MASK if _is_sensitive_key(k) and v else _redact_value(v, secrets))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v, secrets) for v in value]
    if isinstance(value, BaseException):
        return _redact_text(f"{type(value).__name__}: {value}", secrets)
    # Anything else is rendered with str()/repr() later, which could show a secret it
    # holds (a URL object, a request); render it here, where it can still be masked.
    return _redact_text(str(value), secrets)


def _known_secrets() -> tuple[str, ...]:
    # Longest first, so that a secret containing another one is masked whole.
    return tuple(sorted(Secret.known_values(), key=len, reverse=True))


def redact(text: str) -> str:
    """`text` with every known secret value masked: the one masking of free text (log
    events use it through `redact_secrets`, the CLI for its error lines). Raises nothing."""
    return _redact_text(text, _known_secrets())


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secrets in every value (nested too) of an event."""
    secrets = _known_secrets()
    out: MutableMapping[str, Any] = {}
    for key, value in event_dict.items():
        if key.startswith("_"):
            out[key] = value  # structlog's own bookkeeping (_record, _from_structlog)
        elif _is_sensitive_key(key) and value:
            out[key] = MASK
        else:
            out[key] = _redact_value(value, secrets)
    return dict(out)


def one_line_library_errors(
    _logger: WrappedLogger, _method: str, event_dict: EventDict
) -> EventDict:
    """structlog processor (without -v): an exception a library logs becomes one line,
    `exception: "Type: message"`, instead of its traceback. garminconnect logs every 5xx
    and network error with its traceback, while hillsync reports the same failure itself
    in a line that says what it means. hillsync's own tracebacks (a bug caught at the
    worker's fault boundary) stay. Raises nothing."""
    record = event_dict.get("_record")
    exc_info = event_dict.get("exc_info")
    name = getattr(record, "name", _OWN_LOGGER)
    if not exc_info or name == _OWN_LOGGER or name.startswith(_OWN_LOGGER + "."):
        return event_dict
    del event_dict["exc_info"]
    error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    if isinstance(error, BaseException):
        lines = str(error).strip().splitlines()
        event_dict["exception"] = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return event_dict


def _level(verbosity: int) -> int:
    if verbosity < 0:
        return logging.WARNING
    if verbosity == 0:
        return logging.INFO
    return logging.DEBUG


def wants_json(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """JSON lines under journald (JOURNAL_STREAM) or when the stream is not a terminal."""
    if environ.get("JOURNAL_STREAM"):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return not (callable(isatty) and isatty())
    except ValueError:  # a closed stream
        return True


def configure_logging(
    verbosity: int = 0,
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Set up structlog and the standard `logging` module for the whole process.

    verbosity: -1 (-q) warnings only, 0 info, 1+ (-v) debug, third-party libraries too
    (their tracebacks only then).
    Calling it again replaces the earlier setup (tests do this with a captured stream).
    Raises nothing.
    """
    out = stream if stream is not None else sys.stderr
    level = _level(verbosity)
    as_json = wants_json(out, environ)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if as_json:
        renderer = structlog.processors.JSONRenderer(sort_keys=False, default=str)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            *([one_line_library_errors] if verbosity <= 0 else []),
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text before redaction, so a secret in an exception's
            # message or a local's repr is masked too.
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
    root.addHandler(handler)
    # Libraries stay at WARNING unless -v; hillsync's own loggers follow the verbosity.
    root.setLevel(logging.DEBUG if verbosity > 0 else logging.WARNING)
    logging.getLogger(_OWN_LOGGER).setLevel(level)
    logging.captureWarnings(True)
    # A log line that cannot be written (stderr closed under a restarting journald) must
    # neither stop the service nor dump a call stack with source lines onto stderr.
    logging.raiseExceptions = False

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a later configure_logging() (SIGHUP, tests) must take effect on
        # module-level loggers made before it.
        cache_logger_on_first_use=False,
    )
