"""Several `hillsync run` workers on one PostgreSQL database: leases, takeover, no overlap.

Workers are real subprocesses writing JSON logs to files; the test reads their logs and the
database. A sync's start is logged after its claim committed and its end before its
release, so two syncs of one source holding the lease in turn can never overlap in the log.
The SQLite run lock is checked the same way, with two processes on one file.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

import helpers
from conftest import _postgres_database
from helpers import Clock
from hillsync import paths
from hillsync.cli import main
from hillsync.config import (
    DEFAULT_ATHLETE,
    AthleteSettings,
    DatabaseSettings,
    FolderSettings,
    Settings,
    StravaSettings,
)
from hillsync.errors import RateLimited
from hillsync.model import Batch, Secret
from hillsync.sources.base import SourceState
from hillsync.store import leases, repo
from hillsync.store.budgets import Reserve
from hillsync.store.db import Database, open_database
from hillsync.store.tables import ActivityRow, Run, SyncState
from hillsync.worker import Worker
from test_strava import DATA as STRAVA_DATA
from test_strava import (
    LIST_URL,
    STREAMS_RE,
    FakeStrava,
    drain,
    no_wait,
    write_tokens,
)
from test_strava import summary as strava_summary

pytestmark = pytest.mark.slow

ATHLETES = 30
FILES = 6
LEASE_S = 4.0
START_TIMEOUT = 120.0
TIMEOUT = 120.0


def wait_for(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """`helpers.wait_for` with this file's default timeout."""
    return helpers.wait_for(what, check, timeout)


def gpx(start: datetime, climb: float, n: int = 400) -> str:
    """A small GPX run heading north about 3 m a point, one second apart."""
    pts = "".join(
        f'<trkpt lat="{46.0 + i * 0.000027:.6f}" lon="7.000000"><ele>{800 + i * climb:.1f}</ele>'
        f"<time>{(start + timedelta(seconds=i)):%Y-%m-%dT%H:%M:%SZ}</time></trkpt>"
        for i in range(n)
    )
    return (
        '<?xml version="1.0"?><gpx version="1.1" creator="test" '
        'xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk><type>running</type><trkseg>{pts}</trkseg></trk></gpx>"
    )


def athlete_folders(root: Path, athletes: int, files: int) -> list[Path]:
    """One folder per athlete with `files` runs each, all on distinct days, aged an hour."""
    now = datetime.now(UTC).replace(microsecond=0)
    old = time.time() - 3600
    folders = []
    for a in range(athletes):
        folder = root / f"a{a:02d}"
        folder.mkdir(parents=True)
        for f in range(files):
            path = folder / f"run-{f}.gpx"
            path.write_text(gpx(now - timedelta(days=f + 1, hours=a % 12), (f % 3) * 0.1))
            os.utime(path, (old, old))
        folders.append(folder)
    return folders


def events(log: Path, name: str) -> list[dict[str, Any]]:
    """The JSON log lines of `log` whose event is `name`."""
    found: list[dict[str, Any]] = []
    if not log.exists():
        return found
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("event") == name:
            found.append(entry)
    return found


def when(value: str) -> datetime:
    """An ISO time from a log line."""
    return datetime.fromisoformat(value)


class Cluster:
    """Worker processes sharing one database and one config."""

    def __init__(self, tmp: Path, url: str, tables: str, lease_s: float = LEASE_S) -> None:
        self.tmp = tmp
        self.url = url
        self.config = tmp / "config.toml"
        self.config.write_text(
            f'[database]\nurl = "{url}"\n\n[sync]\nlease_seconds = {lease_s}\n\n{tables}'
        )
        self.env = {
            "HOME": str(tmp / "home"),
            "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
            "XDG_STATE_HOME": str(tmp / "xdg-state"),
            "XDG_DATA_HOME": str(tmp / "xdg-data"),
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join(sys.path),
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self._engine: Engine | None = None

    def start(self, n: int) -> None:
        """Start `n` workers and wait until each has said it started."""
        for _ in range(n):
            log = self.tmp / f"worker-{len(self.procs)}.log"
            with log.open("wb") as err:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "hillsync", "--config", str(self.config), "run"],
                        env=self.env,
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                    )
                )
            self.logs.append(log)
        for log in self.logs[-n:]:
            wait_for(f"{log.name} to start", partial(events, log, "started"), START_TIMEOUT)

    def worker_id(self, i: int) -> str:
        """The id worker `i` claims leases with (from its log)."""
        started = events(self.logs[i], "started")
        return str(started[0]["worker"])

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.url)
        return self._engine

    def states(self) -> list[SyncState]:
        with self.engine().connect() as conn:
            return list(conn.execute(select(SyncState)).all())  # type: ignore[arg-type]

    def count(self, what: Any) -> int:
        with self.engine().connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(what)) or 0)

    def stop_all(self) -> list[int | None]:
        """SIGTERM every live worker; their exit codes (None for one already dead)."""
        codes: list[int | None] = []
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=15))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes.append(None)
        return codes

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self._engine is not None:
            self._engine.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (skipped without HILLSYNC_TEST_DATABASE_URL)."""
    yield from _postgres_database()


class TestThreeWorkersOneKilled:
    """Three workers share 30 athletes' folders; one killed -9 mid-sync loses nothing."""

    def test_every_run_once_no_overlap_takeover_within_lease(
        self, tmp_path: Path, pg_url: str
    ) -> None:
        """Each run stored once, no IntegrityError, every source synced, syncs of one source
        never overlap, and the dead worker's source is taken over once its lease expires."""
        folders = athlete_folders(tmp_path / "athletes", ATHLETES, FILES)
        tables = "".join(
            f'[[athletes.{f.name}.sources.folder]]\npath = "{f}"\npoll_minutes = 0.1\n\n'
            for f in folders
        )
        cluster = Cluster(tmp_path, pg_url, tables)
        try:
            cluster.start(3)
            victim = cluster.worker_id(0)

            def frozen_mid_sync() -> dict[str, datetime | None]:
                # Stopped first, so that what it holds cannot change before it is killed.
                cluster.procs[0].send_signal(signal.SIGSTOP)
                held = {s.name: s.lease_until for s in cluster.states() if s.lease_owner == victim}
                if not held:
                    cluster.procs[0].send_signal(signal.SIGCONT)
                return held

            held = wait_for("worker 0 to hold a source", frozen_mid_sync)
            cluster.procs[0].send_signal(signal.SIGKILL)
            cluster.procs[0].wait(timeout=30)
            killed_at = datetime.now(UTC)

            def taken_over() -> bool:
                starts = [e for log in cluster.logs[1:] for e in events(log, "sync_started")]
                return all(
                    any(e["source"] == name and when(e["at"]) > killed_at for e in starts)
                    for name in held
                )

            wait_for("the dead worker's sources to be taken over", taken_over)
            total = ATHLETES * FILES
            wait_for("every run stored", lambda: cluster.count(ActivityRow) == total)
            wait_for(
                "every source synced",
                lambda: all(s.state == "ok" and s.last_sync for s in cluster.states()),
            )
            assert cluster.stop_all()[1:] == [0, 0]

            assert cluster.count(ActivityRow) == total
            assert cluster.count(Run) == total
            with cluster.engine().connect() as conn:
                distinct = conn.scalar(
                    select(func.count()).select_from(
                        select(ActivityRow.source, ActivityRow.source_id).distinct().subquery()
                    )
                )
            assert distinct == total
            states = cluster.states()
            assert len(states) == ATHLETES
            assert all(s.lease_owner is None for s in states), "SIGTERM released every lease"
            for log in cluster.logs:
                text = log.read_text(errors="replace")
                assert "IntegrityError" not in text
                assert "Traceback" not in text

            # Taken over within the lease time (a dead process of this host even sooner:
            # its leases count as expired; the others wake when the lease would expire).
            starts = [e for log in cluster.logs[1:] for e in events(log, "sync_started")]
            for name, until in held.items():
                first = min(
                    when(e["at"])
                    for e in starts
                    if e["source"] == name and when(e["at"]) > killed_at
                )
                assert until is not None
                assert first - killed_at <= timedelta(seconds=LEASE_S + 2)

            # No two syncs of one source overlap (the dead worker's last runs to its death).
            spans: dict[str, list[tuple[datetime, datetime, str]]] = {}
            for i, log in enumerate(cluster.logs):
                for e in events(log, "synced"):
                    spans.setdefault(e["source"], []).append(
                        (when(e["started"]), when(e["ended"]), f"worker {i}")
                    )
            finished = {e["started"] for e in events(cluster.logs[0], "synced")}
            for e in events(cluster.logs[0], "sync_started"):
                if e["at"] not in finished:
                    spans.setdefault(e["source"], []).append((when(e["at"]), killed_at, "killed"))
            assert set(spans) == {s.name for s in states}
            for name, runs in spans.items():
                runs.sort()
                for (_s1, end1, who1), (start2, _e2, who2) in itertools.pairwise(runs):
                    assert start2 > end1, f"{name}: {who1} and {who2} synced it at once"
        finally:
            cluster.close()


class TestSqliteOneWorker:
    """SQLite takes one worker: a second `hillsync run` on the same file is refused."""

    def test_second_run_refused_with_a_clear_message(self, tmp_path: Path) -> None:
        """The second exits 1 at once, naming the running worker and PostgreSQL."""
        folder = tmp_path / "runs"
        folder.mkdir()
        url = f"sqlite:///{tmp_path / 'hillsync.db'}"
        tables = f'[[sources.folder]]\npath = "{folder}"\npoll_minutes = 1\n'
        cluster = Cluster(tmp_path, url, tables)
        try:
            cluster.start(1)
            second = subprocess.run(
                [sys.executable, "-m", "hillsync", "--config", str(cluster.config), "run"],
                env=cluster.env,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT,
                check=False,
            )
            assert second.returncode == 1
            assert "another `hillsync run`" in second.stderr
            assert cluster.worker_id(0) in second.stderr
            assert "PostgreSQL" in second.stderr
            assert "Traceback" not in second.stderr
            assert cluster.stop_all() == [0]
        finally:
            cluster.close()


class AppStub:
    """One Strava application's list and streams endpoints for several athletes (told apart
    by their access tokens): it counts the application's requests per quarter hour, reports
    them in Strava's rate headers, and answers 429 beyond the limit."""

    def __init__(
        self,
        rsps: responses.RequestsMock,
        clock: Clock,
        histories: dict[str, list[dict[str, Any]]],
        limit: int,
    ) -> None:
        self.clock = clock
        self.histories = histories
        self.limit = limit
        self.lock = threading.Lock()
        self.by_window: dict[datetime, int] = {}
        self.by_token: dict[str, int] = {}
        self.refused = 0
        rsps.add_callback(responses.GET, LIST_URL, callback=self._list)
        rsps.add_callback(responses.GET, STREAMS_RE, callback=self._streams)

    def _count(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str]] | None:
        token = str(request.headers.get("Authorization", "")).removeprefix("Bearer ")
        now = self.clock()
        window = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
        with self.lock:
            used = self.by_window.get(window, 0) + 1
            self.by_window[window] = used
            self.by_token[token] = self.by_token.get(token, 0) + 1
            day = sum(n for w, n in self.by_window.items() if w.date() == now.date())
            if used > self.limit:
                self.refused += 1
        headers = {
            "X-ReadRateLimit-Usage": f"{used},{day}",
            "X-ReadRateLimit-Limit": f"{self.limit},1000",
            "X-RateLimit-Usage": f"{used},{day}",
            "X-RateLimit-Limit": "200,2000",
        }
        return (429 if used > self.limit else 200), headers

    def _list(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        status, headers = self._count(request)  # type: ignore[misc]
        if status != 200:
            return status, headers, json.dumps({"message": "Rate Limit Exceeded", "errors": []})
        token = str(request.headers.get("Authorization", "")).removeprefix("Bearer ")
        return 200, headers, json.dumps(self.histories.get(token, []))

    def _streams(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        status, headers = self._count(request)  # type: ignore[misc]
        if status != 200:
            return status, headers, json.dumps({"message": "Rate Limit Exceeded", "errors": []})
        return 200, headers, (STRAVA_DATA / "streams_p2p.json").read_text()

    @property
    def total(self) -> int:
        return sum(self.by_window.values())


class TestOneStravaApplication:
    """Ten athletes on one Strava application over three workers share its rate budget."""

    LIMIT = 20
    ATHLETES = 10
    RUNS = 3  # runs each: a list request and a stream each (streams = "always")

    def test_budget_never_exceeded_and_every_source_parked(
        self, tmp_path: Path, db: Database, database_url: str, rsps: responses.RequestsMock
    ) -> None:
        """The application's requests stay within its limit less the reserve, whichever
        worker makes them; once spent, every source of the application is parked until the
        quarter hour (also those that made no request), and then synced."""
        clock = Clock(datetime(2026, 3, 10, 12, 5, tzinfo=UTC))
        environ = {
            "HOME": str(tmp_path / "home"),
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        }
        names = [f"a{i:02d}" for i in range(self.ATHLETES)]
        histories: dict[str, list[dict[str, Any]]] = {}
        for i, name in enumerate(names):
            token = f"ACCESS-{name}-0123456789abcdef"
            path = paths.token_path(environ, name, "strava")
            write_tokens(path, expires_at=clock() + timedelta(hours=5), access=token)
            with db.session() as s:
                athlete = repo.ensure_athlete(s, name)
                repo.upsert_account(
                    s, athlete, "strava", str(1000 + i), None, str(path), None, clock()
                )
            histories[token] = [
                strava_summary(10_000 * (i + 1) + r, clock() - timedelta(days=r + 1), loop=False)
                for r in range(self.RUNS)
            ]
        stub = AppStub(rsps, clock, histories, self.LIMIT)
        settings = Settings(
            database=DatabaseSettings(url=database_url),
            strava=StravaSettings(
                client_id=4242, client_secret=Secret("CLIENT-SECRET-x"), streams="always"
            ),
            athletes={n: AthleteSettings(n) for n in names},
        )
        dbs = [open_database(database_url, upgrade=False) for _ in range(3)]
        try:
            workers = [
                Worker(settings, d, environ=environ, clock=clock, retrying=no_wait,
                       worker_id=f"test:{i}:w")
                for i, d in enumerate(dbs)
            ]  # fmt: skip

            def round_of_syncs() -> None:
                errors: list[BaseException] = []

                def run(w: Worker) -> None:
                    try:
                        w.sync_due()
                    except BaseException as exc:  # noqa: BLE001 - reported below
                        errors.append(exc)

                threads = [threading.Thread(target=run, args=(w,)) for w in workers]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(timeout=120)
                assert errors == []

            round_of_syncs()
            assert stub.refused == 0
            assert stub.total <= self.LIMIT - Reserve().short
            with db.session() as s:
                states = {st.name: st for st in repo.all_sync_states(s)}
            quarter = datetime(2026, 3, 10, 12, 15, tzinfo=UTC)
            synced = [n for n, st in states.items() if st.state == "ok"]
            parked = [n for n, st in states.items() if st.state == "rate_limited"]
            assert sorted(synced + parked) == sorted(f"{n}/strava" for n in names)
            assert len(parked) >= self.ATHLETES - (self.LIMIT // (self.RUNS + 1))
            assert all(states[n].next_sync == quarter for n in parked)
            untouched = [n for n in names if not stub.by_token.get(f"ACCESS-{n}-0123456789abcdef")]
            assert untouched, "some athletes never got a request before the budget was spent"
            assert all(states[f"{n}/strava"].state == "rate_limited" for n in untouched)

            before = stub.total
            round_of_syncs()  # still inside the quarter hour: nothing is asked of Strava
            assert stub.total == before

            for _ in range(4):  # each quarter hour a share of the rest, never over the limit
                clock.now = clock.now.replace(second=0) + timedelta(minutes=15)
                round_of_syncs()
            assert stub.refused == 0
            assert max(stub.by_window.values()) <= self.LIMIT - Reserve().short
            with db.session() as s:
                assert {st.state for st in repo.all_sync_states(s)} == {"ok"}
                assert repo.count_activities(s) == self.ATHLETES * self.RUNS
        finally:
            for d in dbs:
                d.close()


def folder_worker(
    tmp: Path, db: Database, url: str, worker_id: str, clock: Clock, files: int = 45, **kw: Any
) -> Worker:
    """A worker on one folder of `files` small runs (more than two batches of 20)."""
    folder = tmp / "runs"
    if not folder.exists():
        athlete_folders(tmp, 1, files)
        (tmp / "a00").rename(folder)
    me = AthleteSettings(DEFAULT_ATHLETE, folders=(FolderSettings(path=folder, name="folder"),))
    settings = Settings(database=DatabaseSettings(url=url), athletes={DEFAULT_ATHLETE: me})
    return Worker(settings, db, environ={}, clock=clock, worker_id=worker_id, **kw)


class TestHandOver:
    """A stopping worker hands its source over at once; a taken-over one writes no more."""

    def test_stop_releases_the_lease_at_once(
        self, tmp_path: Path, db: Database, database_url: str
    ) -> None:
        """Stopped after its first batch, the source is free and due: another worker
        finishes it without any clock moving."""
        clock = Clock(datetime.now(UTC))
        batches: list[str] = []
        first = folder_worker(
            tmp_path, db, database_url, "a:1:a", clock,
            progress=lambda name, _n, _t: batches.append(name), stop=lambda: bool(batches),
        )  # fmt: skip
        [outcome] = first.sync_due()
        assert (outcome.state, outcome.new) == ("ok", 20)
        with db.session() as s:
            [row] = repo.all_sync_states(s)
            assert (row.lease_owner, row.lease_until) == (None, None)
            assert row.next_sync is not None
            assert row.next_sync <= clock()
        second = folder_worker(tmp_path, db, database_url, "b:2:b", clock)
        [rest] = second.sync_due()
        assert (rest.state, rest.new) == ("ok", 25)

    def test_taken_over_worker_writes_nothing_more(
        self, tmp_path: Path, db: Database, database_url: str
    ) -> None:
        """When another worker took the source over between two batches (this one stalled
        past its lease), the next batch is refused and nothing of it is recorded."""
        clock = Clock(datetime.now(UTC))
        later = clock() + timedelta(minutes=5)

        def stall(_name: str, _n: int, _total: int | None) -> None:
            with db.session() as s:
                [row] = repo.all_sync_states(s)
                assert leases.claim(s, row.id, "b:2:b", now=later) is not None

        slow = folder_worker(
            tmp_path, db, database_url, "a:1:a", clock, progress=stall,
            lease=timedelta(minutes=2),
        )  # fmt: skip
        [outcome] = slow.sync_due()
        assert outcome.state == "interrupted"
        with db.session() as s:
            [row] = repo.all_sync_states(s)
            assert row.lease_owner == "b:2:b"
            assert row.state == "never_synced"
            assert repo.count_activities(s) == 20


class TestStatusShowsTheHolder:
    """`status` names the worker holding each source and since when."""

    def test_json_and_table(
        self, tmp_path: Path, db: Database, database_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A held source has `worker` and `lease_expires`; a free one has nulls."""
        folder = tmp_path / "runs"
        folder.mkdir()
        config = tmp_path / "config.toml"
        config.write_text(
            f'[database]\nurl = "{database_url}"\n\n'
            f'[[sources.folder]]\nname = "held"\npath = "{folder}"\n\n'
            f'[[sources.folder]]\nname = "free"\npath = "{folder}"\n'
        )
        now = datetime.now(UTC).replace(microsecond=0)
        with db.session() as s:
            me = repo.ensure_athlete(s, DEFAULT_ATHLETE)
            held = repo.ensure_sync_state(s, me, "held", "folder")
            repo.ensure_sync_state(s, me, "free", "folder")
            s.flush()
            leases.claim(s, held.id, "box:4242:abcdef", now=now, ttl=timedelta(minutes=2))
        environ = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
        capsys.readouterr()
        assert main(["--config", str(config), "status", "--json"], environ=environ) == 0
        doc = json.loads(capsys.readouterr().out)
        by_name = {src["name"]: src for src in doc["sources"]}
        assert by_name["held"]["worker"] == "box:4242:abcdef"
        expires = datetime.fromisoformat(by_name["held"]["lease_expires"])
        assert expires == now + timedelta(minutes=2)
        assert (by_name["free"]["worker"], by_name["free"]["lease_expires"]) == (None, None)
        assert main(["--config", str(config), "status"], environ=environ) == 0
        table = capsys.readouterr().out
        assert f"box:4242:abcdef since {now:%H:%M}" in table


class RecordingBudget:
    """A SharedBudget that grants `allow` requests, then refuses, and records reports."""

    def __init__(self, allow: int, resume_at: datetime) -> None:
        self.allow = allow
        self.resume_at = resume_at
        self.acquired: list[str] = []
        self.reports: list[dict[str, tuple[int, int, int, int]]] = []

    def acquire(self, method: str) -> None:
        if len(self.acquired) >= self.allow:
            raise RateLimited("spent", resume_at=self.resume_at, source="strava")
        self.acquired.append(method)

    def report(self, rates: Mapping[str, tuple[int, int, int, int]], at: datetime) -> None:
        self.reports.append(dict(rates))


class TestStravaSharedBudget:
    """The Strava source takes every request from its shared budget and reports the headers."""

    def test_every_request_taken_and_reported_then_refused(
        self, tmp_path: Path, rsps: responses.RequestsMock
    ) -> None:
        """Each request is acquired first; Strava's figures are passed on; when the budget
        refuses, no further request is made and the source is rate-limited."""
        from hillsync.sources.strava import StravaSource

        clock = Clock(datetime(2026, 3, 10, 12, 5, tzinfo=UTC))
        fake = FakeStrava(
            rsps,
            [
                strava_summary(500 + i, clock() - timedelta(days=i + 1), loop=False)
                for i in range(4)
            ],
        )
        token = tmp_path / "strava.json"
        write_tokens(token, expires_at=clock() + timedelta(hours=5))
        budget = RecordingBudget(3, clock() + timedelta(minutes=10))
        source = StravaSource(
            "strava", client_id=4242, client_secret=Secret("CLIENT-SECRET-x"),
            token_path=token, needs_profile=lambda _a: True, clock=clock,
            retrying=no_wait(), budget=budget,
        )  # fmt: skip
        batches: list[Batch] = []
        with pytest.raises(RateLimited) as limited:
            drain(source, SourceState(since=clock() - timedelta(days=30)), batches)
        assert limited.value.resume_at == budget.resume_at
        assert budget.acquired == ["GET", "GET", "GET"]
        assert fake.requests == source.requests_made == 3
        assert budget.reports[-1]["read"] == (10, 100, 100, 1000)
        assert len(budget.reports) == 3
        assert sum(len(b.activities) for b in batches) == 2  # the page's first two streams


class TestOutboxAcrossWorkers:
    """Two workers delivering the same outbox at once send each message once."""

    def test_each_message_sent_once(
        self, db: Database, database_url: str, loopback: tuple[str, list[dict[str, Any]]]
    ) -> None:
        """Six messages, two notifiers on their own connections in parallel: six posts."""
        from hillsync.model import Message
        from hillsync.notify import Notifier
        from hillsync.store import outbox

        url, received = loopback
        now = datetime.now(UTC)
        with db.session() as s:
            athlete_id = repo.ensure_athlete(s, DEFAULT_ATHLETE).id
            for i in range(6):
                outbox.enqueue(
                    s, Message(kind="test", title=f"message {i}", body="body"),
                    athlete_id=athlete_id, url_keys=[outbox.url_key(url)], now=now,
                )  # fmt: skip
        other = open_database(database_url, upgrade=False)
        errors: list[BaseException] = []

        def deliver(database: Database) -> None:
            try:
                Notifier([Secret(url)], clock=lambda: now).deliver_pending(database.session)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        try:
            threads = [threading.Thread(target=deliver, args=(d,)) for d in (db, other)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
        finally:
            other.close()
        assert errors == []
        titles = sorted(r.get("title", "") for r in received)
        assert titles == [f"message {i}" for i in range(6)]
        with db.session() as s:
            assert outbox.pending_count(s) == 0
