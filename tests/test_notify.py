"""notify: Apprise delivery from the outbox, exactly once per URL, never raising."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from sqlalchemy import select
from structlog.testing import capture_logs

from helpers import Clock
from hillsync.errors import ConfigError
from hillsync.model import Message, Secret
from hillsync.notify import DeliveryResult, Notifier, default_backoff, redact_url
from hillsync.store import outbox
from hillsync.store.db import Database
from hillsync.store.tables import Athlete, OutboxDelivery, OutboxMessage

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
GOOD = "json://good.invalid/hook"
DEAD = "ntfy://ntfy.invalid/s3cret-topic"
MESSAGE = Message(kind="balance_high", title="Hill share high", body="Swap one hill run.")


class FakeApprise:
    """Stands in for apprise.Apprise: records what each URL received."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.urls: list[str] = []

    def add(self, url: str) -> bool:
        if url in self.world.invalid:
            return False
        self.urls.append(url)
        return True

    def notify(self, body: str, title: str = "") -> bool:
        for url in self.urls:
            self.world.attempts[url] = self.world.attempts.get(url, 0) + 1
            if url in self.world.raising:
                raise ConnectionError(f"cannot reach {url}")
            if url in self.world.down:
                return False
            self.world.received.setdefault(url, []).append((title, body))
        return True


class FakeWorld:
    """The fake notification services: which are down, what each received."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.raising: set[str] = set()
        self.invalid: set[str] = set()
        self.received: dict[str, list[tuple[str, str]]] = {}
        self.attempts: dict[str, int] = {}

    def factory(self) -> FakeApprise:
        return FakeApprise(self)


def enqueue(db: Database, urls: list[str], message: Message = MESSAGE) -> int:
    with db.session() as s:
        athlete = s.scalars(select(Athlete).where(Athlete.name == "me")).first()
        if athlete is None:
            athlete = Athlete(name="me", created_at=T0)
            s.add(athlete)
            s.flush()
        row = outbox.enqueue(
            s, message, athlete_id=athlete.id, url_keys=[outbox.url_key(u) for u in urls], now=T0
        )
        return row.id


def delivery(db: Database, url: str) -> OutboxDelivery:
    with db.session(readonly=True) as s:
        d = s.scalars(select(OutboxDelivery).where(OutboxDelivery.url_key == outbox.url_key(url)))
        row = d.one()
        s.expunge(row)
        return row


def pending(db: Database) -> int:
    with db.session(readonly=True) as s:
        return outbox.pending_count(s)


class TestExactlyOnce:
    """Each URL gets a message once; a dead one is retried with backoff."""

    def test_dead_url_retried_good_url_once(self, db: Database) -> None:
        """The good URL gets the message once; the dead one gets it once when it comes back."""
        world = FakeWorld()
        world.down.add(DEAD)
        clock = Clock(T0)
        notifier = Notifier(
            [Secret(GOOD), Secret(DEAD)], clock=clock, apprise_factory=world.factory
        )
        enqueue(db, [GOOD, DEAD])

        assert notifier.deliver_pending(db.session) == DeliveryResult(sent=1, failed=1)
        dead = delivery(db, DEAD)
        assert dead.attempts == 1
        assert dead.next_attempt_at == T0 + timedelta(minutes=1)
        assert dead.last_error == "the notification service did not accept the message"

        clock.advance(seconds=30)
        assert notifier.deliver_pending(db.session) == DeliveryResult()
        clock.advance(seconds=30)
        assert notifier.deliver_pending(db.session) == DeliveryResult(failed=1)
        assert delivery(db, DEAD).next_attempt_at == clock.now + timedelta(minutes=2)
        assert pending(db) == 1

        world.down.clear()
        clock.advance(minutes=2)
        assert notifier.deliver_pending(db.session) == DeliveryResult(sent=1)
        clock.advance(hours=7)
        assert notifier.deliver_pending(db.session) == DeliveryResult()

        assert world.received[GOOD] == [(MESSAGE.title, MESSAGE.body)]
        assert world.received[DEAD] == [(MESSAGE.title, MESSAGE.body)]
        assert pending(db) == 0
        with db.session(readonly=True) as s:
            assert s.scalars(select(OutboxMessage.done_at)).one() == clock.now - timedelta(hours=7)

    def test_restart_sends_nothing_again(self, db: Database) -> None:
        """A new notifier (a restarted process) does not re-send what was marked sent."""
        world = FakeWorld()
        enqueue(db, [GOOD])
        Notifier([Secret(GOOD)], clock=Clock(T0), apprise_factory=world.factory).deliver_pending(
            db.session
        )
        again = Notifier(
            [Secret(GOOD)], clock=Clock(T0 + timedelta(days=1)), apprise_factory=world.factory
        )
        assert again.deliver_pending(db.session) == DeliveryResult()
        assert len(world.received[GOOD]) == 1

    def test_unconfigured_url_left_pending(self, db: Database) -> None:
        """A delivery for a URL no longer configured is kept, and sent if the URL returns."""
        world = FakeWorld()
        enqueue(db, [GOOD, DEAD])
        only_good = Notifier([Secret(GOOD)], clock=Clock(T0), apprise_factory=world.factory)
        assert only_good.deliver_pending(db.session) == DeliveryResult(sent=1)
        assert pending(db) == 1
        both = Notifier(
            [Secret(GOOD), Secret(DEAD)], clock=Clock(T0), apprise_factory=world.factory
        )
        assert both.deliver_pending(db.session) == DeliveryResult(sent=1)
        assert pending(db) == 0
        assert len(world.received[GOOD]) == 1

    def test_removed_url_goes_to_the_log(self, db: Database) -> None:
        """A message whose only URL left the config is logged once and done."""
        world = FakeWorld()
        enqueue(db, [DEAD])
        notifier = Notifier([Secret(GOOD)], clock=Clock(T0), apprise_factory=world.factory)
        with capture_logs() as events:
            assert notifier.deliver_pending(db.session) == DeliveryResult(logged=1)
            assert notifier.deliver_pending(db.session) == DeliveryResult()
        assert [e["title"] for e in events if e["event"] == "notification"] == [MESSAGE.title]
        assert pending(db) == 0
        assert world.received == {}

    def test_removed_url_after_another_got_it(self, db: Database) -> None:
        """A message that reached a URL still configured is done, not logged, once the
        other URL is removed."""
        world = FakeWorld()
        enqueue(db, [GOOD, DEAD])
        only_good = Notifier([Secret(GOOD)], clock=Clock(T0), apprise_factory=world.factory)
        assert only_good.deliver_pending(db.session) == DeliveryResult(sent=1)
        assert only_good.deliver_pending(db.session) == DeliveryResult()
        assert pending(db) == 0

    def test_dead_url_tried_once_per_pass(self, db: Database) -> None:
        """Five messages for a dead URL cost one attempt per pass, not five."""
        world = FakeWorld()
        world.down.add(DEAD)
        for _ in range(5):
            enqueue(db, [DEAD])
        notifier = Notifier([Secret(DEAD)], clock=Clock(T0), apprise_factory=world.factory)
        assert notifier.deliver_pending(db.session) == DeliveryResult(failed=1)
        assert world.attempts[DEAD] == 1

    def test_stop_is_obeyed_between_sends(self, db: Database) -> None:
        """A stop request ends the pass before the next send."""
        world = FakeWorld()
        enqueue(db, [GOOD])
        enqueue(db, [GOOD])
        notifier = Notifier([Secret(GOOD)], clock=Clock(T0), apprise_factory=world.factory)
        assert notifier.deliver_pending(db.session, stop=lambda: True) == DeliveryResult()
        assert pending(db) == 2

    def test_duplicate_url_once(self, db: Database) -> None:
        """The same URL configured twice gets one delivery."""
        world = FakeWorld()
        enqueue(db, [GOOD, GOOD])
        notifier = Notifier(
            [Secret(GOOD), Secret(GOOD)], clock=Clock(T0), apprise_factory=world.factory
        )
        assert notifier.deliver_pending(db.session) == DeliveryResult(sent=1)
        assert notifier.url_keys == [outbox.url_key(GOOD)]

    def test_claimed_delivery_not_claimed_twice(self, db: Database) -> None:
        """A delivery already sent cannot be claimed again (another worker sent it)."""
        enqueue(db, [GOOD])
        did = delivery(db, GOOD).id
        with db.session() as s:
            d = outbox.claim_delivery(s, did, T0)
            assert d is not None
            outbox.mark_sent(s, d, T0)
        with db.session() as s:
            assert outbox.claim_delivery(s, did, T0) is None


class TestFailures:
    """A failing URL never raises and never leaks its secret."""

    def test_raising_url_never_raises(self, db: Database) -> None:
        """An exception inside apprise becomes a failed delivery, the other URL still gets it."""
        world = FakeWorld()
        world.raising.add(DEAD)
        enqueue(db, [DEAD, GOOD])
        notifier = Notifier(
            [Secret(DEAD), Secret(GOOD)], clock=Clock(T0), apprise_factory=world.factory
        )
        with structlog.testing.capture_logs() as logs:
            result = notifier.deliver_pending(db.session)
        assert result == DeliveryResult(sent=1, failed=1)
        assert delivery(db, DEAD).last_error == "sending failed (ConnectionError)"
        assert "s3cret" not in repr(logs)
        failed = [e for e in logs if e["event"] == "notification_failed"]
        assert failed[0]["scheme"] == "ntfy"
        assert failed[0]["url_key"] == outbox.url_key(DEAD)

    def test_secret_never_logged_with_real_apprise(
        self, db: Database, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A real apprise failure to a closed port logs no part of the URL's secret."""
        url = "json://hilluser:pa55word-xyz@127.0.0.1:9/t0ken-abc"
        enqueue(db, [url])
        notifier = Notifier([Secret(url)], clock=Clock(T0))
        caplog.set_level(logging.DEBUG)
        with structlog.testing.capture_logs() as logs:
            result = notifier.deliver_pending(db.session)
        assert result.failed == 1
        ours = repr(logs) + (delivery(db, url).last_error or "") + caplog.text
        for secret in ("hilluser", "pa55word-xyz", "t0ken-abc"):
            assert secret not in ours

    def test_backoff_doubles_and_caps(self) -> None:
        """The default backoff is 1 min doubling per failure, at most 6 hours."""
        assert [default_backoff(n) for n in (1, 2, 3)] == [
            timedelta(minutes=1),
            timedelta(minutes=2),
            timedelta(minutes=4),
        ]
        assert default_backoff(9) == timedelta(hours=4, minutes=16)
        assert default_backoff(10) == timedelta(hours=6)
        assert default_backoff(10_000) == timedelta(hours=6)

    def test_invalid_url_is_a_config_error(self) -> None:
        """A URL apprise cannot use is a ConfigError naming its index, not its text."""
        notifier = Notifier(
            [Secret("json://ok.invalid/"), Secret("nosuchscheme://s3cret-part/x")],
            clock=Clock(T0),
        )
        with pytest.raises(
            ConfigError, match=r"^notify\.urls\[1\]: apprise cannot use this URL"
        ) as excinfo:
            notifier.check_urls()
        assert "s3cret" not in str(excinfo.value)
        assert excinfo.value.problems == (
            "notify.urls[1]: apprise cannot use this URL (nosuchscheme://…)",
        )

    def test_valid_urls_pass_check(self) -> None:
        """Well-formed URLs of known services pass the check."""
        Notifier(
            [Secret("json://127.0.0.1:8080/"), Secret("ntfy://ntfy.sh/topic")], clock=Clock(T0)
        ).check_urls()


class TestLogOnly:
    """With no URL configured, messages go to the log."""

    def test_no_url_logs_once(self, db: Database) -> None:
        """A log-only message is logged with its title and body, marked done, logged once."""
        enqueue(db, [])
        notifier = Notifier([], clock=Clock(T0))
        with structlog.testing.capture_logs() as logs:
            assert notifier.deliver_pending(db.session) == DeliveryResult(logged=1)
            assert notifier.deliver_pending(db.session) == DeliveryResult()
        notes = [e for e in logs if e["event"] == "notification"]
        assert len(notes) == 1
        assert notes[0]["title"] == MESSAGE.title
        assert notes[0]["body"] == MESSAGE.body
        assert notes[0]["log_level"] == "warning"
        assert pending(db) == 0


class TestRealApprise:
    """Delivery through the real apprise package to a loopback server."""

    def test_delivered_json(self, db: Database, loopback: tuple[str, list[dict[str, Any]]]) -> None:
        """The loopback server receives the message's title and body once."""
        url, received = loopback
        enqueue(db, [url])
        notifier = Notifier([Secret(url)], clock=Clock(T0))
        assert notifier.deliver_pending(db.session) == DeliveryResult(sent=1)
        assert notifier.deliver_pending(db.session) == DeliveryResult()
        assert len(received) == 1
        assert received[0]["title"] == MESSAGE.title
        assert received[0]["message"] == MESSAGE.body

    def test_send_test(self, loopback: tuple[str, list[dict[str, Any]]]) -> None:
        """notify test reports per URL: redacted URL, ok, error."""
        url, received = loopback
        dead = "json://user:pw-s3cret@127.0.0.1:9/"
        results = Notifier([Secret(url), Secret(dead)], clock=Clock(T0)).send_test()
        assert results[0] == (redact_url(url), True, None)
        assert results[1][1] is False
        assert results[1][2]
        assert "s3cret" not in repr(results)
        assert results[1][0].startswith("json://…")
        assert received[0]["title"] == "hillsync test"


def test_redact_url_keeps_only_scheme() -> None:
    """A redacted URL shows its scheme and a key prefix, nothing of host, user or path."""
    shown = redact_url("ntfy://user:pass@ntfy.example/topic-x")
    assert shown.startswith("ntfy://… (key ")
    for part in ("user", "pass", "ntfy.example", "topic-x"):
        assert part not in shown
