"""Source health beyond errors: a silent source is noticed, a shared application is budgeted.

Through the worker, with Strava's API mocked over HTTP (the real stravalib client).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import ClassVar

import pytest
import responses

from helpers import Clock
from hillsync import paths
from hillsync.config import DEFAULT_ATHLETE, AthleteSettings, Settings, StravaAppSettings
from hillsync.model import Secret
from hillsync.staleness import staleness
from hillsync.store import repo
from test_strava import FakeStrava, write_tokens
from test_strava import summary as strava_summary
from test_worker import NOW, Env, env

pytestmark = pytest.mark.usefixtures("garmin_offline")
__all__ = ["env"]


def every(days: float, n: int, last: datetime) -> list[datetime]:
    """`n` start times `days` apart, the newest at `last`."""
    return [last - timedelta(days=days) * i for i in range(n)]


class TestRhythm:
    """The rule: a regular source (4+ runs, usual gap under stale_days) silent stale_days."""

    def test_regular_runner_silent_ten_days(self) -> None:
        """Runs every 2 days: nothing at 9 days of silence, a Stale at 10."""
        starts = every(2, 30, NOW - timedelta(days=10))
        assert staleness(starts, NOW - timedelta(days=1), 10) is None
        found = staleness(starts, NOW, 10)
        assert found is not None
        assert found.silent == timedelta(days=10)
        assert found.usual_gap == timedelta(days=2)

    def test_irregular_runner_never_told(self) -> None:
        """Runs every 3 weeks: a month of silence is their rhythm, not a broken source."""
        assert staleness(every(21, 6, NOW - timedelta(days=30)), NOW, 10) is None

    def test_too_few_runs(self) -> None:
        """Three runs are not a rhythm."""
        assert staleness(every(1, 3, NOW - timedelta(days=20)), NOW, 10) is None

    def test_one_holiday_does_not_break_the_rhythm(self) -> None:
        """A single two-week gap among short ones keeps the runner regular."""
        starts = every(2, 20, NOW - timedelta(days=12))
        starts += every(2, 10, starts[-1] - timedelta(days=14))
        assert staleness(starts, NOW, 10) is not None


class TestStaleSource:
    """A source that delivered regularly and went silent: one message, status, cleared by a run."""

    def test_raised_once_then_cleared(self, env: Env, rsps: responses.RequestsMock) -> None:
        """One 'stale' message across cycles, `status` shows it, a new run clears it."""
        env.connect_strava(NOW + timedelta(days=30))
        history = [strava_summary(100 + i, NOW - timedelta(days=12 + 2 * i)) for i in range(20)]
        fake = FakeStrava(rsps, history)
        worker = env.worker(Clock(NOW))
        (outcome,) = worker.sync_cycle().outcomes
        assert outcome.state == "ok"
        stale = [m for m in env.messages() if m[0] == "stale"]
        assert len(stale) == 1
        assert "strava has delivered no run for 12 days" in stale[0][2]
        worker.sync_cycle()
        env.worker(Clock(NOW + timedelta(hours=1))).sync_cycle()
        assert len([m for m in env.messages() if m[0] == "stale"]) == 1
        code, out, err = env.cli("status", "--json")
        assert code == 0, err
        (source,) = json.loads(out)["sources"]
        assert source["state"] == "ok"
        assert source["stale_since"] is not None
        fake.activities.append(strava_summary(999, NOW + timedelta(hours=1)))
        env.worker(Clock(NOW + timedelta(hours=2))).sync_cycle()
        code, out, err = env.cli("status", "--json")
        (source,) = json.loads(out)["sources"]
        assert source["stale_since"] is None
        assert len([m for m in env.messages() if m[0] == "stale"]) == 1


def club(env: Env, names: list[str], own: dict[str, int] | None = None) -> Settings:
    """Settings with these athletes, each with a connected Strava account."""
    own = own or {}
    athletes = {
        n: AthleteSettings(
            n,
            strava=StravaAppSettings(client_id=own[n], client_secret=Secret("s"))
            if n in own
            else None,
        )
        for n in names
    }
    for name in names:
        path = paths.token_path(env.environ, name, "strava")
        write_tokens(path, expires_at=NOW + timedelta(hours=5))
        with env.db.session() as session:
            athlete = repo.ensure_athlete(session, name)
            repo.upsert_account(session, athlete, "strava", name, None, str(path), None, NOW)
    base = env.settings()
    return Settings(database=base.database, strava=base.strava, athletes=athletes)


class TestPollStretching:
    """Athletes sharing one application stretch their polls to keep a daily reserve."""

    NAMES: ClassVar[list[str]] = [DEFAULT_ATHLETE, *(f"a{i}" for i in range(1, 10))]

    def test_ten_athletes_on_one_application(self, env: Env) -> None:
        """Ten athletes on one 1,000-read app poll every 36 min: 800 reads a day at most."""
        from hillsync.worker import Worker

        worker = Worker(club(env, self.NAMES), env.db, environ=env.environ, clock=Clock(NOW))
        polls = [s.poll_minutes for s in worker.source_specs() if s.kind == "strava"]
        assert len(polls) == 10
        assert polls == [pytest.approx(36.0)] * 10
        reads_per_day = sum(1440 / p * 2 for p in polls)
        assert reads_per_day <= 1000 * 0.8 + 1e-6

    def test_own_applications_keep_their_interval(self, env: Env) -> None:
        """Athletes with their own application poll at the configured 15 minutes."""
        from hillsync.worker import Worker

        own = {n: 7000 + i for i, n in enumerate(self.NAMES[5:])}
        worker = Worker(club(env, self.NAMES, own), env.db, environ=env.environ, clock=Clock(NOW))
        polls = {s.athlete: s.poll_minutes for s in worker.source_specs() if s.kind == "strava"}
        assert {polls[n] for n in self.NAMES[5:]} == {15.0}
        assert [polls[n] for n in self.NAMES[:5]] == [pytest.approx(18.0)] * 5


class TestGarminOutageThroughTheWorker:
    """Two hours of Garmin 401s with a failing token service: backoff, never needs_auth."""

    def test_heals_by_itself(self, env: Env, rsps: responses.RequestsMock) -> None:
        """Each due poll during the outage is an error with a growing wait; then it syncs."""
        from test_garmin import Outage
        from test_garmin import history as garmin_history

        env.connect_garmin()
        outage = Outage(rsps, garmin_history(3, days=5, newest=NOW - timedelta(hours=3)))
        clock = Clock(NOW)
        waits: list[timedelta] = []
        while clock.now < NOW + timedelta(hours=2):
            (outcome,) = env.worker(clock).sync_cycle(only="garmin").outcomes
            assert outcome.state == "error"
            assert "HTTP 401" in (outcome.error or "")
            _, next_sync = env.state("garmin")
            assert next_sync is not None
            waits.append(next_sync - clock.now)
            clock.now = next_sync
        assert len(waits) >= 2
        assert waits == sorted(waits)  # the worker backs off, doubling
        assert [m for m in env.messages() if m[0] == "needs_auth"] == []
        outage.healed = True
        (outcome,) = env.worker(clock).sync_cycle(only="garmin").outcomes
        assert (outcome.state, outcome.new) == ("ok", 3)
        with env.db.session() as session:
            account = repo.get_account(session, DEFAULT_ATHLETE, "garmin")
            assert account is not None
            assert account.state == "connected"
