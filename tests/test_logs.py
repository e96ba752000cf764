"""Tests of the logging setup and its secret redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from hillsync.logs import configure_logging
from hillsync.model import Secret

SECRET = "s3cr3t-value-do-not-show"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    own_level = logging.getLogger("hillsync").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("hillsync").setLevel(own_level)
    structlog.reset_defaults()


def _lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


class TestRendering:
    """JSON lines off a terminal and under journald, a console on a terminal."""

    def test_json_on_non_tty(self) -> None:
        """A captured (non-TTY) stream gets one JSON object per event with its fields."""
        buf = io.StringIO()
        configure_logging(stream=buf, environ={})
        structlog.get_logger("hillsync.test").info("synced", source="strava", new=3)
        [event] = _lines(buf)
        assert event["event"] == "synced"
        assert event["source"] == "strava"
        assert event["new"] == 3
        assert event["level"] == "info"
        assert event["timestamp"].endswith("Z")

    def test_console_on_tty(self) -> None:
        """On a terminal the output is human-readable, not JSON."""
        buf = _Tty()
        configure_logging(stream=buf, environ={})
        structlog.get_logger("hillsync.test").info("synced", new=3)
        text = buf.getvalue()
        assert "synced" in text
        assert "new=3" in text
        assert not text.lstrip().startswith("{")

    def test_journal_forces_json(self) -> None:
        """With JOURNAL_STREAM set, the output is JSON even on a terminal."""
        buf = _Tty()
        configure_logging(stream=buf, environ={"JOURNAL_STREAM": "8:1234"})
        structlog.get_logger("hillsync.test").info("synced")
        assert _lines(buf)[0]["event"] == "synced"


class TestLevels:
    """-q, default and -v choose what is shown."""

    def test_default_hides_debug(self) -> None:
        """By default info is shown and debug is not."""
        buf = io.StringIO()
        configure_logging(0, stream=buf, environ={})
        log = structlog.get_logger("hillsync.test")
        log.debug("hidden")
        log.info("shown")
        assert [e["event"] for e in _lines(buf)] == ["shown"]

    def test_quiet_shows_warnings_only(self) -> None:
        """With -q only warnings and worse are shown."""
        buf = io.StringIO()
        configure_logging(-1, stream=buf, environ={})
        log = structlog.get_logger("hillsync.test")
        log.info("hidden")
        log.warning("shown")
        assert [e["event"] for e in _lines(buf)] == ["shown"]

    def test_verbose_shows_debug_and_libraries(self) -> None:
        """With -v, debug events and third-party info logs are shown."""
        buf = io.StringIO()
        configure_logging(1, stream=buf, environ={})
        structlog.get_logger("hillsync.test").debug("ours")
        logging.getLogger("urllib3.connectionpool").info("theirs")
        assert [e["event"] for e in _lines(buf)] == ["ours", "theirs"]

    def test_libraries_at_warning_by_default(self) -> None:
        """Without -v, a library's info log is dropped and its warning kept."""
        buf = io.StringIO()
        configure_logging(0, stream=buf, environ={})
        logging.getLogger("stravalib.client").info("chatter")
        logging.getLogger("stravalib.client").warning("limit near")
        assert [e["event"] for e in _lines(buf)] == ["limit near"]


class TestRedaction:
    """A Secret's value never reaches the output, wherever it hides."""

    @pytest.fixture
    def buf(self) -> io.StringIO:
        Secret(SECRET)
        out = io.StringIO()
        configure_logging(0, stream=out, environ={})
        return out

    def test_in_message(self, buf: io.StringIO) -> None:
        """A secret inside the event text is masked."""
        structlog.get_logger("hillsync.test").info(f"token is {SECRET}")
        assert SECRET not in buf.getvalue()
        assert _lines(buf)[0]["event"] == "token is ***"

    def test_in_nested_field(self, buf: io.StringIO) -> None:
        """A secret inside a URL in a nested dict or list is masked."""
        structlog.get_logger("hillsync.test").info(
            "sending", target={"urls": [f"pover://{SECRET}@user"]}
        )
        assert SECRET not in buf.getvalue()
        assert _lines(buf)[0]["target"]["urls"] == ["pover://***@user"]

    def test_sensitive_keys(self, buf: io.StringIO) -> None:
        """Values of credential-named keys are masked even when not a known Secret."""
        structlog.get_logger("hillsync.test").info(
            "exchange",
            code="abc123",
            refresh_token="r-tok",
            headers={"Authorization": "B x"},
            exit_code=3,
        )
        event = _lines(buf)[0]
        assert event["code"] == "***"
        assert event["refresh_token"] == "***"
        assert event["headers"]["Authorization"] == "***"
        assert event["exit_code"] == 3

    def test_in_exception_text(self, buf: io.StringIO) -> None:
        """A secret in an exception's message, logged with its traceback, is masked."""
        log = structlog.get_logger("hillsync.test")
        try:
            raise ValueError(f"refused {SECRET}")
        except ValueError as exc:
            log.exception("failed")
            log.warning("failed again", error=exc)
        out = buf.getvalue()
        assert SECRET not in out
        first, second = _lines(buf)
        assert "ValueError: refused ***" in first["exception"]
        assert second["error"] == "ValueError: refused ***"

    def test_in_stdlib_logger(self, buf: io.StringIO) -> None:
        """A secret in a library's stdlib log message (with %-args) is masked."""
        logging.getLogger("stravalib.protocol").warning("GET with token %s", SECRET)
        assert SECRET not in buf.getvalue()
        assert _lines(buf)[0]["event"] == "GET with token ***"

    def test_in_stdlib_exception(self, buf: io.StringIO) -> None:
        """A secret in the traceback of a stdlib logger.exception call is masked."""
        try:
            raise RuntimeError(SECRET)
        except RuntimeError:
            logging.getLogger("apprise").exception("delivery failed")
        assert SECRET not in buf.getvalue()
        assert "RuntimeError: ***" in _lines(buf)[0]["exception"]
