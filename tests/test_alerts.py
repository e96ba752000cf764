"""alerts: balance state and warnings written to the outbox in the caller's transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

import design
from hillsync import alerts
from hillsync.model import Goal, GoalProfile, RunForBalance, Terrain
from hillsync.store import outbox
from hillsync.store.db import Database
from hillsync.store.tables import Athlete, OutboxDelivery, OutboxMessage

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
GOAL = Goal(GoalProfile.ROAD_MARATHON, *design.GOAL_BANDS["road-marathon"])
KEYS = [outbox.url_key("json://a.example/"), outbox.url_key("ntfy://ntfy.sh/topic")]


def runs_at(now: datetime, uphill: int, total: int = 10) -> list[RunForBalance]:
    """`total` runs of 5 km in the last 20 days, `uphill` of them uphill, the rest flat."""
    return [
        RunForBalance(
            now - timedelta(days=2 * i + 1), 5_000.0, Terrain.UPHILL if i < uphill else Terrain.FLAT
        )
        for i in range(total)
    ]


def add_athlete(db: Database, name: str = "me") -> int:
    with db.session() as s:
        row = Athlete(name=name, created_at=T0)
        s.add(row)
        s.flush()
        return row.id


def kinds(db: Database) -> list[str]:
    with db.session(readonly=True) as s:
        return list(s.scalars(select(OutboxMessage.kind).order_by(OutboxMessage.id)))


def evaluate(
    db: Database, athlete_id: int, now: datetime, uphill: int | None, *, remind_days: int = 7
) -> str:
    runs = [] if uphill is None else runs_at(now, uphill)
    with db.session() as s:
        report = alerts.evaluate_athlete(
            s, athlete_id, "me", GOAL, remind_days=remind_days, url_keys=KEYS, now=now, runs=runs
        )
    return report.status.value


class TestEvaluateAthlete:
    """Messages are enqueued on entering, every remind_days, and on returning to ok."""

    def test_entering_high_enqueues_once(self, db: Database) -> None:
        """Evaluating a high share many times enqueues exactly one warning, one delivery per URL."""
        aid = add_athlete(db)
        for hour in range(6):
            assert evaluate(db, aid, T0 + timedelta(hours=hour), 4) == "high"
        assert kinds(db) == ["balance_high"]
        with db.session(readonly=True) as s:
            deliveries = list(s.scalars(select(OutboxDelivery)))
        assert sorted(d.url_key for d in deliveries) == sorted(KEYS)

    def test_reminder_every_remind_days(self, db: Database) -> None:
        """A warning that holds is reminded after remind_days, and not before."""
        aid = add_athlete(db)
        evaluate(db, aid, T0, 4)
        evaluate(db, aid, T0 + timedelta(days=6, hours=23), 4)
        assert kinds(db) == ["balance_high"]
        evaluate(db, aid, T0 + timedelta(days=7), 4)
        evaluate(db, aid, T0 + timedelta(days=8), 4)
        assert kinds(db) == ["balance_high", "reminder_high"]
        evaluate(db, aid, T0 + timedelta(days=14), 4)
        assert kinds(db) == ["balance_high", "reminder_high", "reminder_high"]

    def test_no_reminder_when_remind_days_zero(self, db: Database) -> None:
        """remind_days = 0 sends the warning once and never reminds."""
        aid = add_athlete(db)
        evaluate(db, aid, T0, 4, remind_days=0)
        evaluate(db, aid, T0 + timedelta(days=30), 4, remind_days=0)
        assert kinds(db) == ["balance_high"]

    def test_back_in_balance_once(self, db: Database) -> None:
        """Returning to ok from high enqueues one "back in balance", then nothing."""
        aid = add_athlete(db)
        evaluate(db, aid, T0, 4)
        assert evaluate(db, aid, T0 + timedelta(days=1), 2) == "ok"
        evaluate(db, aid, T0 + timedelta(days=2), 2)
        evaluate(db, aid, T0 + timedelta(days=20), 2)
        assert kinds(db) == ["balance_high", "balance_ok"]

    def test_hysteresis_uses_stored_state(self, db: Database) -> None:
        """A share just inside the band after high stays high and sends nothing new."""
        aid = add_athlete(db)
        evaluate(db, aid, T0, 4)
        # 12 runs, 3 uphill = 25%: at the edge of the band, not 2 points inside
        runs = runs_at(T0 + timedelta(days=1), 3, total=12)
        with db.session() as s:
            report = alerts.evaluate_athlete(
                s,
                aid,
                "me",
                GOAL,
                remind_days=7,
                url_keys=KEYS,
                now=T0 + timedelta(days=1),
                runs=runs,
            )
        assert report.status.value == "high"
        assert kinds(db) == ["balance_high"]

    def test_first_ok_sends_nothing(self, db: Database) -> None:
        """A first evaluation in band, or with too little data, sends nothing."""
        aid = add_athlete(db)
        assert evaluate(db, aid, T0, None) == "insufficient_data"
        assert evaluate(db, aid, T0 + timedelta(days=1), 2) == "ok"
        assert evaluate(db, aid, T0 + timedelta(days=2), None) == "insufficient_data"
        assert evaluate(db, aid, T0 + timedelta(days=3), 2) == "ok"
        assert kinds(db) == []

    def test_insufficient_data_keeps_the_warning(self, db: Database) -> None:
        """A gap without data neither ends a warning nor restarts it; the reminder clock runs on."""
        aid = add_athlete(db)
        evaluate(db, aid, T0, 4)
        assert evaluate(db, aid, T0 + timedelta(days=1), None) == "insufficient_data"
        with db.session(readonly=True) as s:
            state = outbox.get_balance_state(s, aid)
            assert state is not None
            assert state.status == "high"
            assert state.since == T0
            assert state.last_warned_at == T0
            assert state.report is not None
            assert state.report["status"] == "insufficient_data"
        evaluate(db, aid, T0 + timedelta(days=2), 4)
        assert kinds(db) == ["balance_high"]
        evaluate(db, aid, T0 + timedelta(days=7), 4)
        assert kinds(db) == ["balance_high", "reminder_high"]

    def test_nothing_written_when_caller_rolls_back(self, db: Database) -> None:
        """State and message live in the caller's transaction: a rollback drops both."""
        aid = add_athlete(db)

        class Boom(Exception):
            pass

        def evaluate_then_fail() -> None:
            with db.session() as s:
                alerts.evaluate_athlete(
                    s, aid, "me", GOAL, remind_days=7, url_keys=KEYS, now=T0, runs=runs_at(T0, 4)
                )
                raise Boom

        with pytest.raises(Boom):
            evaluate_then_fail()
        assert kinds(db) == []
        with db.session(readonly=True) as s:
            assert outbox.get_balance_state(s, aid) is None
        evaluate(db, aid, T0, 4)
        assert kinds(db) == ["balance_high"]

    def test_log_only_without_urls(self, db: Database) -> None:
        """With no URL key the message has no delivery and counts as pending."""
        aid = add_athlete(db)
        with db.session() as s:
            alerts.evaluate_athlete(
                s, aid, "me", GOAL, remind_days=7, url_keys=[], now=T0, runs=runs_at(T0, 4)
            )
        with db.session(readonly=True) as s:
            assert outbox.pending_count(s) == 1
            assert list(s.scalars(select(OutboxDelivery))) == []
            assert [m.kind for m in outbox.log_only_messages(s)] == ["balance_high"]


class TestNeedsAuth:
    """One reconnect message per needs_auth episode."""

    def enqueue(self, s: Session, aid: int, previous: str | None) -> OutboxMessage | None:
        return alerts.enqueue_needs_auth(
            s, aid, "me", "strava", "hillsync connect strava", KEYS, T0, previous_state=previous
        )

    def test_once_per_episode(self, db: Database) -> None:
        """Entering needs_auth enqueues the message; polling while still needs_auth does not."""
        aid = add_athlete(db)
        with db.session() as s:
            first = self.enqueue(s, aid, "ok")
            again = self.enqueue(s, aid, "needs_auth")
        assert first is not None
        assert again is None
        assert kinds(db) == ["needs_auth"]
        with db.session(readonly=True) as s:
            msg = s.scalars(select(OutboxMessage)).one()
            assert "hillsync connect strava" in msg.body
            assert len(msg.deliveries) == 2

    def test_new_episode_after_reconnect(self, db: Database) -> None:
        """After the account worked again, a new revocation sends a new message."""
        aid = add_athlete(db)
        with db.session() as s:
            self.enqueue(s, aid, None)
            self.enqueue(s, aid, "ok")
        assert kinds(db) == ["needs_auth", "needs_auth"]
