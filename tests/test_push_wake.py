"""A source made due by a push event wakes the sleeping daemon; with a push subscription the
Strava sources are polled only at the safety interval."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hillsync.config import load_settings
from hillsync.daemon import Daemon
from hillsync.model import SyncStatus
from hillsync.store import pages, repo
from hillsync.store.db import Database, open_database
from hillsync.worker import SAFETY_POLL_MINUTES, Worker

NOW = datetime.now(UTC)


@pytest.fixture
def db(database_url: str) -> Database:
    database = open_database(database_url)
    with database.session() as session:
        athlete = repo.ensure_athlete(session, "me")
        state = repo.ensure_sync_state(session, athlete, "strava", "strava")
        repo.record_sync_result(
            session, state, status=SyncStatus.OK, now=NOW, next_sync=NOW + timedelta(minutes=15),
            error=None,
        )  # fmt: skip
    return database


class TestWake:
    """The daemon's sleep ends when a source becomes due sooner than it planned."""

    def daemon(self, db: Database) -> Daemon:
        daemon = Daemon(lambda: pytest.fail("no settings needed"), environ={}, due_check_s=0.05)
        daemon._watch = (db, frozenset({"strava"}), NOW + timedelta(minutes=15))
        return daemon

    def test_due_sooner_is_seen(self, db: Database) -> None:
        """Nothing changed: keep sleeping; the source marked due now: wake."""
        daemon = self.daemon(db)
        assert not daemon._due_sooner()
        with db.session() as session:
            assert pages.mark_due(session, "strava", NOW)
        assert daemon._due_sooner()

    def test_other_sources_do_not_wake_it(self, db: Database) -> None:
        """A source of another config (not watched) due now does not wake this daemon."""
        with db.session() as session:
            other = repo.ensure_athlete(session, "anna")
            state = repo.ensure_sync_state(session, other, "anna/strava", "strava")
            state.next_sync = NOW - timedelta(minutes=1)
        assert not self.daemon(db)._due_sooner()

    def test_pause_ends_when_a_source_is_marked_due(self, db: Database) -> None:
        """A 30 s sleep ends soon after another process marks the source due."""
        daemon = self.daemon(db)

        def push() -> None:
            with db.session() as session:
                pages.mark_due(session, "strava", datetime.now(UTC))

        threading.Timer(0.2, push).start()
        started = time.monotonic()
        daemon.pause(30)
        assert time.monotonic() - started < 10

    def test_parked_sources_stay_parked(self, db: Database) -> None:
        """A source waiting for its rate window or a reconnect is not made due by an event."""
        for parked in ("rate_limited", "needs_auth"):
            with db.session() as session:
                state = repo.ensure_sync_state(session, repo.ensure_athlete(session, "me"),
                                               "strava", "strava")  # fmt: skip
                state.state = parked
                assert not pages.mark_due(session, "strava", NOW)


class TestSafetyInterval:
    """With the application's push subscription stored, Strava is polled every 6 hours."""

    def test_poll_interval(self, db: Database, tmp_path: Path) -> None:
        """15 minutes without a subscription, SAFETY_POLL_MINUTES (6 h) with one."""
        config = tmp_path / "config.toml"
        config.write_text(
            '[sources.strava]\nclient_id = 4242\nclient_secret = "env:S"\npoll_minutes = 15\n'
        )
        settings = load_settings(config, {"S": "strava-client-secret-1"})
        with db.session() as session:
            repo.upsert_account(
                session, repo.ensure_athlete(session, "me"), "strava", "1", None, None, None, NOW
            )
        worker = Worker(settings, db, environ={"XDG_STATE_HOME": str(tmp_path)})
        (spec,) = [s for s in worker.source_specs() if s.kind == "strava"]
        assert spec.poll_minutes == 15
        with db.session() as session:
            pages.save_push_subscription(session, 4242, 77, "https://x/strava/webhook", NOW)
        (spec,) = [s for s in worker.source_specs() if s.kind == "strava"]
        assert spec.poll_minutes == SAFETY_POLL_MINUTES == 360
        with db.session() as session:
            pages.save_push_subscription(session, 1111, 78, "https://y/strava/webhook", NOW)
            pages.forget_push_subscription(session, 4242)
        (spec,) = [s for s in worker.source_specs() if s.kind == "strava"]
        assert spec.poll_minutes == 15  # another application's subscription does not count
