"""Apprise delivery from the outbox.

Each delivery (one message to one URL) is claimed, sent and marked in its own transaction,
so a crash re-sends at most the one delivery that was in flight, never one already marked,
and a dead URL is retried with backoff without re-sending to the URLs that have the message.
A failing URL never raises out of `deliver_pending`: syncing goes on.

URLs are secrets (tokens, topics, passwords inside them): they are never logged, stored or
put in an error text. Logs name a URL by its scheme and its `url_key`.
apprise is imported lazily: it costs about half a second at start-up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session

from hillsync.backoff import exponential
from hillsync.errors import ConfigError
from hillsync.model import Secret
from hillsync.store import outbox

log = structlog.get_logger(__name__)

#: First retry delay after a failed delivery; it doubles with every failure.
BACKOFF_FIRST = timedelta(minutes=1)
#: Longest delay between two attempts.
BACKOFF_MAX = timedelta(hours=6)

#: What a broken plugin or network may raise out of apprise (it normally returns False).
_SEND_ERRORS = (OSError, ValueError, RuntimeError, TypeError, LookupError, AttributeError)

TEST_TITLE = "hillsync test"
TEST_BODY = "This is a test message from hillsync: notifications reach you here."


#: Third-party loggers that print notification URLs or request paths (tokens) at DEBUG.
_CHATTY_LOGGERS = ("apprise", "urllib3.connectionpool", "urllib3.connection")


class _UrlScrubber(logging.Filter):
    """Masks every part of the configured notification URLs in apprise's and urllib3's logs.

    apprise masks passwords but prints user names and path tokens (webhook ids, topics),
    and urllib3 prints request paths; hillsync's own redaction only knows whole secrets.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fragments: set[str] = set()

    def add(self, url: str) -> None:
        rest = url.split("://", 1)[-1]
        self.fragments.update(p for p in re.split(r"[:/@?&=#,;+]", rest) if len(p) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.fragments:
            return True
        text = record.getMessage()
        for fragment in sorted(self.fragments, key=len, reverse=True):
            text = text.replace(fragment, "***")
        record.msg, record.args = text, None
        return True


@contextmanager
def _scrubbing(scrubber: _UrlScrubber) -> Iterator[None]:
    """`scrubber` on the chatty loggers while a notifier talks to apprise, then removed:
    no filter (and no URL fragment) outlives the notifier that needs it."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    for logger in loggers:
        logger.addFilter(scrubber)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(scrubber)


#: How long a claimed delivery is reserved for the worker sending it.
CLAIM_LEASE = timedelta(minutes=10)


def default_backoff(attempts: int) -> timedelta:
    """Delay before the next attempt after `attempts` failures: 1 min doubling, max 6 h."""
    return exponential(BACKOFF_FIRST, attempts, BACKOFF_MAX)


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "?"


def redact_url(url: str) -> str:
    """A URL shown without any of its parts but the scheme: `ntfy://… (key 1a2b3c4d)`."""
    return f"{_scheme(url)}://… (key {outbox.url_key(url)[:8]})"


@dataclass(frozen=True)
class DeliveryResult:
    """What one `deliver_pending` pass did."""

    sent: int = 0
    failed: int = 0
    logged: int = 0


def _attachment(name: str, data: bytes) -> Any:
    """An in-memory apprise attachment (no temporary file)."""
    import apprise
    from apprise.attachment import memory

    # apprise's attachment classes are untyped
    attach_memory: Any = memory.AttachMemory
    mimetype = "image/png" if name.lower().endswith(".png") else "application/octet-stream"
    attach = apprise.AppriseAttachment()
    attach.add(attach_memory(content=data, name=name, mimetype=mimetype))
    return attach


def _default_factory() -> Any:
    import apprise  # lazily: start-up footprint

    return apprise.Apprise()


class Notifier:
    """Delivers outbox messages to Apprise URLs (or to the log when there is none)."""

    def __init__(
        self,
        urls: Sequence[Secret],
        *,
        clock: Callable[[], datetime],
        apprise_factory: Callable[[], Any] | None = None,
        backoff: Callable[[int], timedelta] = default_backoff,
    ) -> None:
        self._urls = tuple(urls)
        self._by_key = {outbox.url_key(u.reveal()): u for u in self._urls}
        self._clock = clock
        self._factory = apprise_factory or _default_factory
        self._backoff = backoff
        self._scrubber = _UrlScrubber()
        for url in self._urls:
            self._scrubber.add(url.reveal())

    @property
    def url_keys(self) -> list[str]:
        """The keys of the configured URLs, in config order (duplicates once)."""
        return list(self._by_key)

    def check_urls(self, key_path: str = "notify.urls") -> None:
        """Check that apprise understands every URL.

        Raises ConfigError with one problem per unusable URL ("notify.urls[2]: apprise
        cannot use this URL"); the URL itself is never in the message.
        """
        with _scrubbing(self._scrubber):
            problems = [
                f"{key_path}[{i}]: apprise cannot use this URL ({_scheme(u.reveal())}://…)"
                for i, u in enumerate(self._urls)
                if not self._factory().add(u.reveal())
            ]
        if problems:
            raise ConfigError(problems[0] if len(problems) == 1 else "; ".join(problems), problems)

    def _send(
        self, url: str, title: str, body: str, attachment: tuple[str, bytes] | None = None
    ) -> str | None:
        """Send to one URL; None on success, else a one-line reason without the URL.

        `attachment` (file name, bytes) goes along where the service takes attachments;
        apprise sends the text alone to the others.
        """
        with _scrubbing(self._scrubber):
            return self._send_scrubbed(url, title, body, attachment)

    def _send_scrubbed(
        self, url: str, title: str, body: str, attachment: tuple[str, bytes] | None
    ) -> str | None:
        try:
            ap = self._factory()
            if not ap.add(url):
                return "apprise cannot use this URL"
            extra: dict[str, Any] = {}
            if attachment is not None:
                extra["attach"] = _attachment(*attachment)
            if not ap.notify(body=body, title=title, **extra):
                return "the notification service did not accept the message"
        except _SEND_ERRORS as exc:
            # str(exc) may quote the URL: keep only the type
            return f"sending failed ({type(exc).__name__})"
        return None

    def deliver_pending(
        self,
        db_session_factory: Callable[[], AbstractContextManager[Session]],
        *,
        stop: Callable[[], bool] = lambda: False,
    ) -> DeliveryResult:
        """Deliver every due delivery whose URL is configured, and log the log-only messages.

        A message whose URLs were all removed from the config goes to the log instead. A
        URL that fails is not tried again in the same pass (its other messages wait for its
        backoff), and `stop` is checked before each send, so a dead URL never holds up a
        shutdown. No transaction stays open during a send. Never raises for a failing URL;
        raises StoreError or SQLAlchemy errors if the database itself fails.
        """
        now = self._clock()
        logged = 0
        with db_session_factory() as session:
            for message in outbox.log_only_messages(session):
                log.warning("notification", title=message.title, body=message.body)
                outbox.mark_logged(session, message, now)
                logged += 1
            for message in outbox.orphan_messages(session, self.url_keys):
                # Its remaining URLs were removed from the config. Reached nowhere: the log
                # has it. Reached elsewhere already: it is simply done.
                if not any(d.sent_at is not None for d in message.deliveries):
                    log.warning("notification", title=message.title, body=message.body)
                    logged += 1
                outbox.mark_logged(session, message, now)
            due = [d.id for d in outbox.due_deliveries(session, now) if d.url_key in self._by_key]

        sent = failed = 0
        failing: set[str] = set()
        for delivery_id in due:
            if stop():
                break
            # Claimed from the time of the claim: a pass longer than the lease must not hand
            # out claims that have already expired.
            claimed = self._claim(db_session_factory, delivery_id, self._clock(), failing)
            if claimed is None:
                continue
            url_key, title, body, attempts, attachment = claimed
            url = self._by_key[url_key].reveal()
            error = self._send(url, title, body, attachment)
            with db_session_factory() as session:
                delivery = outbox.get_delivery(session, delivery_id)
                if error is None:
                    outbox.mark_sent(session, delivery, self._clock())
                    sent += 1
                    log.info(
                        "notification_sent",
                        scheme=_scheme(url),
                        url_key=url_key,
                        message_id=delivery.message_id,
                    )
                else:
                    failing.add(url_key)
                    retry_at = self._clock() + self._backoff(attempts + 1)
                    outbox.mark_failed(session, delivery, error=error, next_attempt_at=retry_at)
                    failed += 1
                    log.warning(
                        "notification_failed",
                        scheme=_scheme(url),
                        url_key=url_key,
                        error=error,
                        attempts=delivery.attempts,
                        retry_at=retry_at.isoformat(),
                    )
        return DeliveryResult(sent=sent, failed=failed, logged=logged)

    def _claim(
        self,
        db_session_factory: Callable[[], AbstractContextManager[Session]],
        delivery_id: int,
        now: datetime,
        failing: set[str],
    ) -> tuple[str, str, str, int, tuple[str, bytes] | None] | None:
        """Take one due delivery: (url key, title, body, attempts, attachment), or None.

        The claim moves the delivery's next attempt a lease ahead and commits, so that no
        other worker sends it meanwhile and the send runs outside any transaction; a crash
        before the outcome is marked sends it once more after the lease.
        """
        with db_session_factory() as session:
            delivery = outbox.claim_delivery(session, delivery_id, now)
            if delivery is None or delivery.url_key in failing:
                return None  # another worker has it, it was sent meanwhile, or its URL is down
            delivery.next_attempt_at = now + CLAIM_LEASE
            message = delivery.message
            attachment = None
            if message.attachment is not None:
                attachment = (message.attachment_name or "attachment.png", message.attachment)
            return delivery.url_key, message.title, message.body, delivery.attempts, attachment

    def send_test(self) -> list[tuple[str, bool, str | None]]:
        """Send a test message to every URL: (redacted URL, ok, error or None) per URL."""
        results: list[tuple[str, bool, str | None]] = []
        for secret in self._urls:
            url = secret.reveal()
            error = self._send(url, TEST_TITLE, TEST_BODY)
            results.append((redact_url(url), error is None, error))
        return results
