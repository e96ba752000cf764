"""Sync end to end through the Worker: API sources mocked over HTTP, a real database.

Strava and Garmin go through the real stravalib and garminconnect clients with HTTP mocked
by `responses` (payload helpers come from the sources' contract tests); folders are real
files. Settings are built in code; `cli.main` is run against the same database.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import responses
import tenacity
from sqlalchemy import func, select
from structlog.testing import capture_logs

from helpers import Clock, gpx_track
from hillsync import paths
from hillsync.cli import main
from hillsync.config import (
    DEFAULT_ATHLETE,
    AthleteSettings,
    DatabaseSettings,
    FolderSettings,
    NotifySettings,
    Settings,
    StravaSettings,
)
from hillsync.model import Secret
from hillsync.paths import write_private_file
from hillsync.sources.fileformats import read_activity
from hillsync.store import repo
from hillsync.store.db import Database
from hillsync.store.tables import ActivityRow, OutboxDelivery, OutboxMessage
from hillsync.worker import SourceOutcome, Worker
from test_garmin import FakeGarminServer, add_profile, token_json
from test_garmin import summary as garmin_summary
from test_strava import LIST_URL, REFRESH_INVALID, TOKEN_URL, FakeStrava, write_tokens
from test_strava import summary as strava_summary

pytestmark = pytest.mark.usefixtures("garmin_offline")

CLIENT_ID = 4242
CLIENT_SECRET = "CLIENT-SECRET-fedcba9876543210"
SECRET_ENV = "HILLSYNC_TEST_STRAVA_SECRET"
NOW = datetime(2026, 3, 10, 12, 5, tzinfo=UTC)
FIT = Path(__file__).parent / "data" / "fit"
HILLY_FIT = FIT / "2013-02-06-12-11-14.fit"


def no_wait() -> tenacity.Retrying:
    """Three attempts, no waiting."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none(), sleep=lambda _s: None
    )


class Env:
    """A runner's machine: XDG folders in tmp, settings built in code, the CLI on the same db."""

    def __init__(
        self, tmp: Path, db: Database, url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.tmp = tmp
        self.db = db
        self.url = url
        self.capsys = capsys
        self.environ = {
            "HOME": str(tmp / "home"),
            "XDG_STATE_HOME": str(tmp / "state"),
            "XDG_CONFIG_HOME": str(tmp / "config"),
            "XDG_DATA_HOME": str(tmp / "data"),
            "PATH": os.environ.get("PATH", ""),
            SECRET_ENV: CLIENT_SECRET,
        }
        self.me = AthleteSettings(DEFAULT_ATHLETE)
        self.config = tmp / "config.toml"

    def settings(self) -> Settings:
        return Settings(
            database=DatabaseSettings(url=self.url),
            strava=StravaSettings(client_id=CLIENT_ID, client_secret=Secret(CLIENT_SECRET)),
            athletes={DEFAULT_ATHLETE: self.me},
        )

    def worker(self, clock: Clock) -> Worker:
        return Worker(self.settings(), self.db, environ=self.environ, clock=clock, retrying=no_wait)

    def connect_strava(self, expires_at: datetime) -> Path:
        path = paths.token_path(self.environ, DEFAULT_ATHLETE, "strava")
        write_tokens(path, expires_at=expires_at)
        self._account("strava", "134815", path)
        return path

    def connect_garmin(self) -> Path:
        folder = paths.token_dir(self.environ, DEFAULT_ATHLETE, "garmin")
        write_private_file(folder / "garmin_tokens.json", token_json().encode())
        self._account("garmin", "987654", folder)
        return folder

    def _account(self, kind: str, remote_id: str, token_path: Path) -> None:
        with self.db.session() as session:
            athlete = repo.ensure_athlete(session, DEFAULT_ATHLETE)
            repo.upsert_account(session, athlete, kind, remote_id, None, str(token_path), None, NOW)

    def cli(self, *args: str) -> tuple[int, str, str]:
        """`hillsync --config CFG ARGS` in-process, on the same database and token folder."""
        self.config.write_text(
            f'[database]\nurl = "{self.url}"\n\n'
            f'[sources.strava]\nclient_id = {CLIENT_ID}\nclient_secret = "env:{SECRET_ENV}"\n'
        )
        self.capsys.readouterr()
        code = main(["--config", str(self.config), *args], environ=self.environ)
        out, err = self.capsys.readouterr()
        return code, out, err

    def runs(self) -> list[repo.RunView]:
        with self.db.session() as session:
            return repo.list_runs(session)

    def messages(self) -> list[tuple[str, str, str]]:
        with self.db.session() as session:
            rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
            return [(m.kind, m.title, m.body) for m in rows]

    def state(self, name: str) -> tuple[str, datetime | None]:
        with self.db.session() as session:
            row = next(s for s in repo.all_sync_states(session) if s.name == name)
            return row.state, row.next_sync


@pytest.fixture
def env(tmp_path: Path, db: Database, database_url: str, capsys: pytest.CaptureFixture[str]) -> Env:
    return Env(tmp_path, db, database_url, capsys)


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they are UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class TestStravaSync:
    """A connected Strava account synced through the worker."""

    def test_runs_stored_with_labels(self, env: Env, rsps: responses.RequestsMock) -> None:
        """Runs are stored and labelled, a ride is no run, a point-to-point run gets its stream."""
        env.connect_strava(NOW + timedelta(hours=5))
        p2p = strava_summary(502, NOW - timedelta(days=2), loop=False)
        p2p["elev_high"] = p2p["elev_low"] = None  # the summary cannot bound its loss
        fake = FakeStrava(
            rsps,
            [
                strava_summary(501, NOW - timedelta(days=3)),
                p2p,
                strava_summary(503, NOW - timedelta(days=1), sport_type="Ride"),
                strava_summary(504, NOW - timedelta(hours=5), gain=400.0),
            ],
        )
        result = env.worker(Clock(NOW)).sync_cycle()
        assert [(o.name, o.state, o.new) for o in result.outcomes] == [("strava", "ok", 4)]
        assert fake.stream_calls == [502]
        runs = env.runs()
        assert [r.sources for r in runs] == [
            (("strava", "501"),),
            (("strava", "502"),),
            (("strava", "504"),),
        ]
        assert [r.label for r in runs] == ["flat", "flat", "uphill"]
        # Strava gives no loss: the point-to-point run's comes from its stream's profile.
        assert runs[1].elevation_loss_m is not None
        assert runs[1].elevation_loss_m > 50
        code, out, err = env.cli("activities", "--json")
        assert code == 0, err
        listed = json.loads(out)
        assert [row["sources"] for row in listed] == [
            [{"source": "strava", "source_id": i}] for i in ("501", "502", "504")
        ]
        assert [row["label"] for row in listed] == ["flat", "flat", "uphill"]
        assert listed[0]["start_time"] == (NOW - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def test_quiet_second_cycle(self, env: Env, rsps: responses.RequestsMock) -> None:
        """A second cycle with nothing new stores nothing and costs one list request."""
        env.connect_strava(NOW + timedelta(hours=5))
        fake = FakeStrava(rsps, [strava_summary(601, NOW - timedelta(days=3))])
        worker = env.worker(Clock(NOW))
        worker.sync_cycle()
        fake.list_calls.clear()
        again = worker.sync_cycle()
        assert again.stored == 0
        assert len(fake.list_calls) == 1
        assert len(env.runs()) == 1

    def test_status_shows_the_rate_budget(self, env: Env, rsps: responses.RequestsMock) -> None:
        """`status --json` shows the read budget as Strava's headers last reported it."""
        env.connect_strava(NOW + timedelta(hours=5))
        FakeStrava(rsps, [strava_summary(601, NOW - timedelta(days=3))])
        env.worker(Clock(NOW)).sync_cycle()
        code, out, err = env.cli("status", "--json")
        assert code == 0, err
        [strava] = [s for s in json.loads(out)["sources"] if s["kind"] == "strava"]
        assert strava["rate_budget"]["read"] == {
            "15min": {"used": 10, "limit": 100},
            "daily": {"used": 100, "limit": 1000},
        }


class TestStravaRevoked:
    """A 401 from Strava: needs_auth, one message, no more requests."""

    def test_needs_auth_once(self, env: Env, rsps: responses.RequestsMock) -> None:
        """One needs_auth message naming the command, then cycles and `sync` leave the API alone."""
        env.connect_strava(NOW + timedelta(hours=5))
        rsps.add(
            responses.GET,
            LIST_URL,
            status=401,
            json={"message": "Authorization Error", "errors": [{"code": "invalid"}]},
        )
        rsps.add(responses.POST, TOKEN_URL, status=400, json=REFRESH_INVALID)
        worker = env.worker(Clock(NOW))
        first = worker.sync_cycle()
        assert first.outcomes[0].state == "needs_auth"
        assert first.partial
        assert env.state("strava")[0] == "needs_auth"
        messages = env.messages()
        assert [m[0] for m in messages] == ["needs_auth"]
        assert "hillsync connect strava" in messages[0][2]
        assert len(rsps.calls) == 2  # the list's 401, then the refused refresh
        second = worker.sync_cycle()
        assert second.outcomes[0].skipped is not None
        assert len(rsps.calls) == 2
        assert len(env.messages()) == 1
        code, out, err = env.cli("sync")
        assert code == 3, err
        assert "strava: skipped" in out
        assert len(rsps.calls) == 2
        assert len(env.messages()) == 1
        with env.db.session() as session:
            account = repo.get_account(session, DEFAULT_ATHLETE, "strava")
            assert account is not None
            assert account.state == "needs_auth"

    def test_status_shows_needs_auth(self, env: Env, rsps: responses.RequestsMock) -> None:
        """`status --json` reports the revoked source as needs_auth with its error."""
        env.connect_strava(NOW + timedelta(hours=5))
        rsps.add(responses.GET, LIST_URL, status=401, json={"message": "Authorization Error"})
        rsps.add(responses.POST, TOKEN_URL, status=400, json=REFRESH_INVALID)
        env.worker(Clock(NOW)).sync_cycle()
        code, out, err = env.cli("status", "--json")
        assert code == 0, err
        (source,) = json.loads(out)["sources"]
        assert source["name"] == "strava"
        assert source["state"] == "needs_auth"
        assert "hillsync connect strava" in source["last_error"]


class TestStravaRateLimited:
    """A 429 parks the source until the quarter hour; a sync right after skips it."""

    def test_parked_until_quarter_hour(self, env: Env, rsps: responses.RequestsMock) -> None:
        """rate_limited with next_sync at the next quarter hour; `sync` sends nothing, exits 3."""
        # The CLI's worker reads the real clock, so this test does too.
        now = datetime.now(UTC)
        env.connect_strava(now + timedelta(hours=5))
        rsps.add(
            responses.GET,
            LIST_URL,
            status=429,
            json={"message": "Rate Limit Exceeded", "errors": []},
            headers={"X-ReadRateLimit-Usage": "101,300", "X-ReadRateLimit-Limit": "100,1000"},
        )
        result = env.worker(Clock(now)).sync_cycle()
        assert result.outcomes[0].state == "rate_limited"
        assert result.partial
        state, next_sync = env.state("strava")
        quarter = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
        assert state == "rate_limited"
        assert aware(next_sync) == quarter + timedelta(minutes=15)
        assert len(rsps.calls) == 1
        code, out, err = env.cli("sync")
        assert code == 3, err
        assert "strava: skipped, rate-limited until" in out
        assert len(rsps.calls) == 1
        assert env.messages() == []


@pytest.mark.parametrize("order", ["garmin_first", "strava_first"])
class TestGarminAndStrava:
    """One run uploaded by Garmin to Strava arrives twice; it is one run."""

    def test_one_run_elevation_from_garmin(
        self, env: Env, rsps: responses.RequestsMock, order: str
    ) -> None:
        """One run with both sources, Garmin's elevation, counted once by the balance."""
        start = NOW - timedelta(days=1)
        env.connect_garmin()
        env.connect_strava(NOW + timedelta(hours=5))
        add_profile(rsps)
        garmin = FakeGarminServer(rsps, [garmin_summary(5001, start, gain=160.0, loss=158.0)])
        on_strava = strava_summary(9001, start + timedelta(seconds=1), gain=42.0)
        on_strava["external_id"] = "garmin_ping_5001"
        FakeStrava(rsps, [on_strava])
        worker = env.worker(Clock(NOW))
        kinds = ["garmin", "strava"] if order == "garmin_first" else ["strava", "garmin"]
        for kind in kinds:
            (outcome,) = worker.sync_cycle(only=kind).outcomes
            assert (outcome.state, outcome.new) == ("ok", 1)
        assert garmin.downloads == []
        (run,) = env.runs()
        assert set(run.sources) == {("garmin", "5001"), ("strava", "9001")}
        assert run.elevation_gain_m == pytest.approx(160.0)
        assert run.elevation_loss_m == pytest.approx(158.0)
        assert run.label == "uphill"
        report = worker.evaluate_balances()[DEFAULT_ATHLETE]
        assert report.runs == 1
        assert report.distance_m == pytest.approx(run.distance_m)
        with env.db.session() as session:
            assert session.scalar(select(func.count()).select_from(ActivityRow)) == 2


@pytest.mark.parametrize("order", ["file_first", "strava_first"])
class TestFileAndStrava:
    """A FIT file in a folder and the same run on Strava are one run, elevation from the file."""

    def test_one_run_elevation_from_file(
        self, env: Env, rsps: responses.RequestsMock, order: str
    ) -> None:
        """Start within 120 s and distance within 5 %: one run with the device's 168 m gain."""
        fit = read_activity(HILLY_FIT)
        assert fit.distance_m is not None
        clock = Clock(fit.start_time + timedelta(days=1))
        folder = env.tmp / "watch"
        folder.mkdir()
        copy = folder / "morning.fit"
        shutil.copy(HILLY_FIT, copy)
        old = (clock.now - timedelta(hours=2)).timestamp()
        os.utime(copy, (old, old))
        env.me = replace(env.me, folders=(FolderSettings(path=folder, name="folder"),))
        env.connect_strava(clock.now + timedelta(hours=5))
        on_strava = strava_summary(7001, fit.start_time + timedelta(seconds=40), gain=90.0)
        on_strava["distance"] = fit.distance_m * 1.03
        on_strava["external_id"] = None
        FakeStrava(rsps, [on_strava])
        worker = env.worker(clock)
        kinds = ["folder", "strava"] if order == "file_first" else ["strava", "folder"]
        for kind in kinds:
            (outcome,) = worker.sync_cycle(only=kind).outcomes
            assert (outcome.state, outcome.new) == ("ok", 1)
        (run,) = env.runs()
        assert {s for s, _ in run.sources} == {"folder", "strava"}
        assert run.elevation_gain_m == pytest.approx(168, abs=1)
        assert run.distance_m == pytest.approx(fit.distance_m)
        assert run.label == "uphill"


def gpx_climb(start: datetime, n: int = 2000) -> str:
    """A GPX run heading north about 3 m a point, one second apart, climbing 0.25 m a point."""
    points = [(46.0 + i * 0.000027, 7.0, 1000 + i * 0.25) for i in range(n)]
    return gpx_track(points, start=start, sport="running")


class TestBalanceWarning:
    """Hilly runs for a road-marathon goal: one warning, delivered once."""

    def test_one_warning_delivered_once(
        self, env: Env, loopback: tuple[str, list[dict[str, Any]]]
    ) -> None:
        """Whatever the number of cycles, one message in the outbox and one POST received."""
        url, received = loopback
        first = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)
        folder = env.tmp / "runs"
        folder.mkdir()
        for i in range(5):
            path = folder / f"climb-{i}.gpx"
            path.write_text(gpx_climb(first + timedelta(days=3 * i)))
            os.utime(path, (first.timestamp(), first.timestamp()))
        env.me = replace(
            env.me,
            folders=(FolderSettings(path=folder, name="folder"),),
            notify=NotifySettings(urls=(Secret(url),)),
        )
        clock = Clock(first + timedelta(days=14))
        worker = env.worker(clock)
        result = worker.sync_cycle()
        assert result.outcomes[0].new == 5
        report = result.reports[DEFAULT_ATHLETE]
        assert str(report.status) == "high"
        for _ in range(3):
            clock.now += timedelta(hours=6)
            worker.sync_cycle()
        messages = env.messages()
        assert len(messages) == 1
        kind, title, body = messages[0]
        assert kind == "high" or "high" in kind
        assert "%" in body
        assert len(received) == 1
        assert received[0]["title"] == title
        with env.db.session() as session:
            deliveries = list(session.scalars(select(OutboxDelivery)))
            assert len(deliveries) == 1
            assert deliveries[0].sent_at is not None
        again = env.worker(clock)
        again.sync_cycle()
        assert len(received) == 1
        assert len(env.messages()) == 1


class BrokenSource:
    """A source with a bug: it raises something no source is allowed to raise."""

    name = "folder"
    kind = "folder"

    def fetch(self, state: Any) -> Iterator[Any]:
        raise RuntimeError("a bug")
        yield  # pragma: no cover - makes this a generator


class TestUnexpectedFailure:
    """A bug inside a source is never recorded as a good sync."""

    def test_state_is_error_with_backoff(self, env: Env) -> None:
        """The bug is contained: the source is left in error until a later retry."""
        from hillsync.model import SourceKind
        from hillsync.registry import SourceSpec

        clock = Clock(NOW)
        worker = env.worker(clock)
        spec = SourceSpec("folder", SourceKind.FOLDER, "me", 5.0, BrokenSource)
        with capture_logs() as events:
            outcome = worker.sync_source(spec)
        assert outcome.state == "error"
        assert outcome.partial
        assert "RuntimeError" in (outcome.error or "")
        assert any(e["event"] == "source_failed" for e in events)
        state, next_sync = env.state("folder")
        assert state == "error"
        assert next_sync is not None
        next_at = aware(next_sync)
        assert next_at is not None
        assert next_at >= NOW + timedelta(minutes=5)


class TestSourceTypo:
    """`--source` naming nothing is refused before anything is evaluated or sent."""

    def test_nothing_evaluated(self, env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
        """No balance is evaluated (so no warning can be queued) for a typo."""
        from hillsync.errors import UsageError

        worker = env.worker(Clock(NOW))
        called: list[str] = []
        monkeypatch.setattr(worker, "evaluate_balances", lambda: called.append("evaluated"))
        with pytest.raises(UsageError, match="stravva"):
            worker.sync_cycle(only="stravva")
        assert called == []


class TestOneCycle:
    """`sync_cycle` is the one cycle: its hooks are what `run` and `demo` change."""

    def folder_env(self, env: Env) -> None:
        runs = env.tmp / "runs"
        runs.mkdir()
        shutil.copy2(HILLY_FIT, runs / HILLY_FIT.name)
        # Written long before the test clock's now: complete, not still being written.
        os.utime(runs / HILLY_FIT.name, (1_500_000_000, 1_500_000_000))
        env.me = AthleteSettings(
            DEFAULT_ATHLETE, folders=(FolderSettings(path=runs, name="runs", poll_minutes=5.0),)
        )

    def test_evaluate_hook_sees_what_was_stored(self, env: Env) -> None:
        """`evaluate(stored)` gets the number stored; False leaves the balances alone."""
        self.folder_env(env)
        seen: list[int] = []

        def never(outcomes: Sequence[SourceOutcome]) -> bool:
            seen.append(sum(o.new for o in outcomes))
            return False

        result = env.worker(Clock(NOW)).sync_cycle(evaluate=never, deliver=False)
        assert seen == [1]
        assert not result.evaluated
        assert result.reports == {}
        assert [s.name for s in result.specs] == ["runs"]
        with env.db.session() as session:
            assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0

    def test_once_leaves_an_unchanged_athlete_unless_forced(self, env: Env) -> None:
        """Among workers an athlete evaluated an hour ago with nothing new is left alone;
        after a restart or a config reload (forced) it is evaluated again at once."""
        self.folder_env(env)
        clock = Clock(NOW)
        worker = env.worker(clock)
        first = worker.sync_cycle(due_only=True, deliver=False)
        assert set(first.reports) == {DEFAULT_ATHLETE}
        clock.advance(hours=1)
        assert worker.evaluate_balances(once=True) == {}
        forced = worker.evaluate_balances(once=True, force=True)
        assert set(forced) == {DEFAULT_ATHLETE}

    def test_stop_before_a_source(self, env: Env) -> None:
        """A stop request ends the cycle before the next source; nothing is evaluated."""
        self.folder_env(env)
        worker = Worker(
            env.settings(), env.db, environ=env.environ, clock=Clock(NOW), stop=lambda: True
        )
        result = worker.sync_cycle()
        assert result.outcomes == []
        assert not result.evaluated
        assert env.runs() == []

    def test_balance_at(self, env: Env) -> None:
        """`balance_at()` is when the balance is evaluated (the demo's last sample run)."""
        self.folder_env(env)
        at = datetime(2013, 2, 7, tzinfo=UTC)
        result = env.worker(Clock(NOW)).sync_cycle(balance_at=lambda: at, deliver=False)
        report = result.reports[DEFAULT_ATHLETE]
        assert report.window_end == at
        assert report.runs == 1
