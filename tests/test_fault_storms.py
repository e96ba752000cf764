"""Fault storms through the real Worker and a real database (issue 13, "Proof under stress").

Strava and Garmin go through the real stravalib and garminconnect clients with HTTP mocked by
`responses` (the fakes of test_strava and test_garmin); the clock is injected and nothing
sleeps, except the SQLite lock tests, which hold a real lock for about a second (SQLite's busy
wait has no clock to inject). After every storm: no activity stored twice, no traceback in the
logs, and the cycle returned normally.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from sqlalchemy.engine import make_url

from helpers import Clock, assert_nothing_twice, gpx_track, stored_ids, storm, straight_route
from hillsync import paths
from hillsync.app.accounts import record_account
from hillsync.app.context import AppContext
from hillsync.config import DEFAULT_ATHLETE, FolderSettings
from hillsync.daemon import Daemon
from hillsync.errors import StoreError
from hillsync.model import SourceKind
from hillsync.store import db as store_db
from hillsync.store import repo
from hillsync.store.db import Database, open_database
from hillsync.worker import CycleResult, SourceOutcome
from test_garmin import LIST_URL as GARMIN_LIST_URL
from test_garmin import FakeGarminServer, add_profile
from test_garmin import summary as garmin_summary
from test_strava import (
    LIST_URL,
    REFRESH_INVALID,
    STREAMS_RE,
    TOKEN_URL,
    FakeStrava,
    write_tokens,
)
from test_strava import history as strava_history
from test_strava import summary as strava_summary
from test_worker import NOW, Env, aware

pytestmark = pytest.mark.usefixtures("garmin_offline")

#: Strava's answer to a 429 (its API description's Fault shape).
RATE_LIMIT_EXCEEDED = {"message": "Rate Limit Exceeded", "errors": []}
#: A 401 that does not say the athlete revoked the application (no `invalid` code).
UNAUTHORIZED_PLAIN = {"message": "Authorization Error", "errors": []}
HTML_PAGE = "<!DOCTYPE html><html><body><h1>We'll be right back</h1></body></html>"


@pytest.fixture
def env(tmp_path: Path, db: Database, database_url: str, capsys: pytest.CaptureFixture[str]) -> Env:
    """A runner's machine (test_worker's Env) on the test database."""
    return Env(tmp_path, db, database_url, capsys)


# --- what holds after every storm ------------------------------------------------------------


def one(result: CycleResult, name: str) -> SourceOutcome:
    """The outcome of the source `name` in a cycle."""
    (outcome,) = [o for o in result.outcomes if o.name == name]
    return outcome


def assert_one_line_error(outcome: SourceOutcome, *words: str) -> None:
    """The outcome failed with a one-line reason holding every word (case-insensitive)."""
    assert outcome.error is not None
    assert "\n" not in outcome.error
    assert "Traceback" not in outcome.error
    for word in words:
        assert word.lower() in outcome.error.lower()


def next_sync_at(env: Env, name: str) -> datetime:
    """When the source `name` is due next (aware UTC)."""
    _state, next_sync = env.state(name)
    due = aware(next_sync)
    assert due is not None
    return due


def recovered(env: Env, clock: Clock, name: str) -> datetime:
    """Move the clock to the failing source's next sync (its backoff) and return it."""
    assert env.state(name)[0] in ("error", "rate_limited")
    clock.now = next_sync_at(env, name)
    return clock.now


def strava_ids(summaries: list[dict[str, Any]]) -> list[str]:
    """The ids of the runs among Strava summaries (what the worker stores as runs)."""
    return sorted(str(s["id"]) for s in summaries)


def poll_minutes(env: Env, kind: SourceKind) -> float:
    """The configured poll interval of an API source."""
    settings = env.settings()
    return (
        settings.strava.poll_minutes if kind is SourceKind.STRAVA else settings.garmin.poll_minutes
    )


def add_folder(env: Env, clock: Clock, count: int = 2) -> list[str]:
    """A folder source holding `count` finished GPX runs a day apart; their file names."""
    folder = env.tmp / "watch"
    folder.mkdir(exist_ok=True)
    names = []
    for i in range(count):
        start = clock.now - timedelta(days=4 + i, hours=3)
        name = f"run-{i}.gpx"
        path = folder / name
        path.write_text(gpx_track(straight_route(3000.0, lambda d: 300.0), start=start))
        old = (clock.now - timedelta(hours=2)).timestamp()
        os.utime(path, (old, old))
        names.append(name)
    env.me = replace(env.me, folders=(FolderSettings(path=folder, name="folder"),))
    return names


# --- Strava ----------------------------------------------------------------------------------


class TestStravaServerErrors:
    """A burst of 5xx answers on Strava's activity list, then recovery."""

    def test_burst_then_recovery(self, env: Env, rsps: responses.RequestsMock) -> None:
        """Retries spent: error with a one-line reason and a backoff; after it, every run once."""
        env.connect_strava(NOW + timedelta(hours=5))
        acts = [strava_summary(700 + i, NOW - timedelta(days=3 - i)) for i in range(3)]
        fake = FakeStrava(rsps, acts)
        fake.fail_next = [502, 503, 500, 504]  # one more than the worker's three attempts
        clock = Clock(NOW)
        worker = env.worker(clock)
        with storm():
            first = one(worker.sync_cycle(due_only=True), "strava")
            assert first.state == "error"
            assert_one_line_error(first, "HTTP 500")
            assert env.state("strava")[0] == "error"
            # DESIGN 6: "5xx and timeouts -> retry ..., then `error` until the next poll".
            poll = timedelta(minutes=poll_minutes(env, SourceKind.STRAVA))
            assert next_sync_at(env, "strava") >= NOW + poll
            assert stored_ids(env.db, "strava") == []
            calls = len(fake.tokens_seen)
            early = worker.sync_cycle(due_only=True)
            # Not due yet: not claimed, not synced (a due-only cycle lists what it synced).
            assert [o.name for o in early.outcomes if o.skipped is None] == []
            assert len(fake.tokens_seen) == calls
            recovered(env, clock, "strava")
            second = one(worker.sync_cycle(due_only=True), "strava")
            assert (second.state, second.new) == ("ok", 3)
            assert stored_ids(env.db, "strava") == strava_ids(acts)
            clock.advance(hours=1)
            third = one(worker.sync_cycle(full=True), "strava")
            assert (third.state, third.new, third.updated) == ("ok", 0, 0)
        assert env.state("strava")[0] == "ok"
        assert_nothing_twice(env.db)

    def test_short_burst_absorbed(self, env: Env, rsps: responses.RequestsMock) -> None:
        """Two 5xx then answers: the retries absorb them within the cycle, the source is ok."""
        env.connect_strava(NOW + timedelta(hours=5))
        acts = [strava_summary(710 + i, NOW - timedelta(days=2 - i)) for i in range(2)]
        fake = FakeStrava(rsps, acts)
        fake.fail_next = [503, 502]
        with storm():
            outcome = one(env.worker(Clock(NOW)).sync_cycle(), "strava")
        assert (outcome.state, outcome.new, outcome.error) == ("ok", 2, None)
        assert stored_ids(env.db, "strava") == strava_ids(acts)
        assert_nothing_twice(env.db)


@pytest.mark.parametrize(
    "fault",
    [
        requests.exceptions.ConnectionError("('Connection aborted.', ConnectionResetError(104))"),
        requests.exceptions.ReadTimeout("HTTPSConnectionPool: Read timed out. (read timeout=60)"),
    ],
    ids=["connection-reset", "read-timeout"],
)
class TestStravaNetworkFaults:
    """Timeouts and connection resets on Strava's activity list."""

    def test_fault_then_recovery(
        self,
        env: Env,
        rsps: responses.RequestsMock,
        fault: Exception,
    ) -> None:
        """Each attempt fails: the error names the failure; after the backoff, all once."""
        env.connect_strava(NOW + timedelta(hours=5))
        for _ in range(3):  # the worker's three attempts; registered first, used first
            rsps.add(responses.GET, LIST_URL, body=fault)
        acts = [strava_summary(720 + i, NOW - timedelta(days=3 - i)) for i in range(3)]
        FakeStrava(rsps, acts)
        clock = Clock(NOW)
        worker = env.worker(clock)
        with storm():
            first = one(worker.sync_cycle(due_only=True), "strava")
            assert first.state == "error"
            assert_one_line_error(first, type(fault).__name__)
            assert stored_ids(env.db, "strava") == []
            recovered(env, clock, "strava")
            second = one(worker.sync_cycle(due_only=True), "strava")
        assert (second.state, second.new) == ("ok", 3)
        assert stored_ids(env.db, "strava") == strava_ids(acts)
        assert_nothing_twice(env.db)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('[{"id": 730, "name": "Morning Run", "start_da', "application/json"),
        (HTML_PAGE, "text/html"),
        ('{"activities": []}', "application/json"),
        ("", "application/json"),
    ],
    ids=["truncated", "html-with-200", "object-for-list", "empty-body"],
)
class TestStravaMalformedList:
    """Malformed answers (status 200) on Strava's activity list."""

    def test_unreadable_list_then_recovery(
        self,
        env: Env,
        rsps: responses.RequestsMock,
        body: str,
        content_type: str,
    ) -> None:
        """The poll fails with a one-line reason, nothing is stored; the next poll stores all."""
        env.connect_strava(NOW + timedelta(hours=5))
        rsps.add(responses.GET, LIST_URL, body=body, status=200, content_type=content_type)
        acts = [strava_summary(730 + i, NOW - timedelta(days=3 - i)) for i in range(3)]
        FakeStrava(rsps, acts)
        clock = Clock(NOW)
        worker = env.worker(clock)
        with storm():
            first = one(worker.sync_cycle(due_only=True), "strava")
            assert first.state == "error"
            assert_one_line_error(first, "strava")
            assert stored_ids(env.db, "strava") == []
            recovered(env, clock, "strava")
            second = one(worker.sync_cycle(due_only=True), "strava")
        assert (second.state, second.new) == ("ok", 3)
        assert stored_ids(env.db, "strava") == strava_ids(acts)
        assert_nothing_twice(env.db)


class TestStravaMalformedItems:
    """JSON lists where objects belong, inside answers that are otherwise fine."""

    def test_list_items_that_are_not_objects(self, env: Env, rsps: responses.RequestsMock) -> None:
        """Entries that are lists or null are rejected with a reason; the runs beside them stay."""
        env.connect_strava(NOW + timedelta(hours=5))
        good = [strava_summary(740 + i, NOW - timedelta(days=2 - i)) for i in range(2)]
        rsps.add(responses.GET, LIST_URL, json=[good[0], [1, 2], None, good[1]])
        FakeStrava(rsps, good)
        clock = Clock(NOW)
        worker = env.worker(clock)
        with storm():
            first = one(worker.sync_cycle(), "strava")
            assert (first.state, first.new, first.rejected) == ("ok", 2, 2)
            clock.advance(hours=1)
            again = one(worker.sync_cycle(), "strava")
        assert (again.state, again.new, again.updated) == ("ok", 0, 0)
        assert stored_ids(env.db, "strava") == strava_ids(good)
        assert_nothing_twice(env.db)

    def test_streams_answer_is_a_list_of_lists(
        self, env: Env, rsps: responses.RequestsMock
    ) -> None:
        """A point-to-point run whose streams are unreadable keeps its summary and is stored."""
        env.connect_strava(NOW + timedelta(hours=5))
        p2p = strava_summary(750, NOW - timedelta(days=2), loop=False)
        p2p["elev_high"] = p2p["elev_low"] = None  # so the label needs the profile
        rsps.add(responses.GET, STREAMS_RE, json=[[1, 2, 3], [4, 5]])
        fake = FakeStrava(rsps, [p2p])
        with storm():
            outcome = one(env.worker(Clock(NOW)).sync_cycle(), "strava")
        assert (outcome.state, outcome.new) == ("ok", 1)
        assert fake.stream_calls == []  # the odd answer came from the mock registered first
        (run,) = env.runs()
        assert run.distance_m == pytest.approx(p2p["distance"])
        assert_nothing_twice(env.db)

    def test_token_answer_is_a_list(self, env: Env, rsps: responses.RequestsMock) -> None:
        """A refresh answered with a JSON list fails the poll on one line; the token survives."""
        token_path = env.connect_strava(NOW - timedelta(minutes=1))  # expired: refresh first
        before = token_path.read_text()
        rsps.add(responses.POST, TOKEN_URL, json=[{"access_token": "x"}])
        acts = [strava_summary(760, NOW - timedelta(days=1))]
        FakeStrava(rsps, acts)
        clock = Clock(NOW)
        worker = env.worker(clock)
        with storm():
            first = one(worker.sync_cycle(due_only=True), "strava")
            assert first.state == "error"
            assert_one_line_error(first, "token")
            assert token_path.read_text() == before
            rsps.replace(
                responses.POST,
                TOKEN_URL,
                json={
                    "access_token": "ACCESS-new-1",
                    "refresh_token": "REFRESH-new-1",
                    "expires_at": int((NOW + timedelta(hours=6)).timestamp()),
                },
            )
            recovered(env, clock, "strava")
            second = one(worker.sync_cycle(due_only=True), "strava")
        assert (second.state, second.new) == ("ok", 1)
        assert stored_ids(env.db, "strava") == strava_ids(acts)
        assert_nothing_twice(env.db)


class TestStravaRateLimited:
    """A 429 parks Strava until its window resets; the other sources keep syncing."""

    def run_storm(
        self,
        env: Env,
        rsps: responses.RequestsMock,
        headers: dict[str, str],
        resume_at: datetime,
    ) -> None:
        clock = Clock(NOW)
        files = add_folder(env, clock)
        env.connect_garmin()
        env.connect_strava(NOW + timedelta(days=2))  # valid past UTC midnight
        add_profile(rsps)
        garmin = [garmin_summary(880 + i, NOW - timedelta(days=1 + i, hours=6)) for i in range(2)]
        FakeGarminServer(rsps, garmin)
        rsps.add(responses.GET, LIST_URL, status=429, json=RATE_LIMIT_EXCEEDED, headers=headers)
        acts = [strava_summary(770 + i, NOW - timedelta(days=2 - i, hours=1)) for i in range(2)]
        fake = FakeStrava(rsps, acts)
        worker = env.worker(clock)
        with storm():
            first = worker.sync_cycle(due_only=True)
            strava = one(first, "strava")
            assert strava.state == "rate_limited"
            assert_one_line_error(strava, "429")
            assert (one(first, "garmin").state, one(first, "garmin").new) == ("ok", 2)
            assert (one(first, "folder").state, one(first, "folder").new) == ("ok", len(files))
            state, next_sync = env.state("strava")
            assert (state, aware(next_sync)) == ("rate_limited", resume_at)
            # Just before the window resets: parked, no request to Strava at all.
            clock.now = resume_at - timedelta(seconds=1)
            calls = len(fake.tokens_seen)
            parked = one(worker.sync_cycle(), "strava")
            assert parked.skipped is not None
            assert parked.skipped.startswith("rate-limited until")
            assert len(fake.tokens_seen) == calls
            clock.now = resume_at
            again = worker.sync_cycle(due_only=True)
            assert (one(again, "strava").state, one(again, "strava").new) == ("ok", 2)
        assert stored_ids(env.db, "strava") == strava_ids(acts)
        assert stored_ids(env.db, "garmin") == sorted(str(s["activityId"]) for s in garmin)
        assert len(stored_ids(env.db, "folder")) == len(files)
        assert_nothing_twice(env.db)

    def test_short_window_spent(self, env: Env, rsps: responses.RequestsMock) -> None:
        """Strava's headers show the 15-minute read budget spent: parked until the quarter hour."""
        headers = {
            "X-ReadRateLimit-Usage": "101,300",
            "X-ReadRateLimit-Limit": "100,1000",
            "X-RateLimit-Usage": "120,320",
            "X-RateLimit-Limit": "200,2000",
        }
        # NOW is 12:05 UTC: windows reset at :00, :15, :30, :45 (API notes).
        self.run_storm(env, rsps, headers, datetime(2026, 3, 10, 12, 15, tzinfo=UTC))

    def test_daily_budget_spent(self, env: Env, rsps: responses.RequestsMock) -> None:
        """Strava's headers show the daily read budget spent: parked until UTC midnight."""
        headers = {
            "X-ReadRateLimit-Usage": "40,1000",
            "X-ReadRateLimit-Limit": "100,1000",
            "X-RateLimit-Usage": "40,1100",
            "X-RateLimit-Limit": "200,2000",
        }
        self.run_storm(env, rsps, headers, datetime(2026, 3, 11, tzinfo=UTC))

    def test_no_headers(self, env: Env, rsps: responses.RequestsMock) -> None:
        """A 429 without any rate header: parked until the next quarter hour, no traceback."""
        self.run_storm(env, rsps, {}, datetime(2026, 3, 10, 12, 15, tzinfo=UTC))


class TestStravaRevokedMidBackfill:
    """The access token is refused mid-backfill: first pages answered, then 401."""

    def backfill(
        self, env: Env, rsps: responses.RequestsMock, refresh: Mapping[str, Any]
    ) -> tuple[FakeStrava, list[dict[str, Any]], Clock]:
        """A 450-activity history whose list answers 401 from its third page on, and a refresh
        refused with `refresh`; returns the fake, the history and the clock."""
        env.connect_strava(NOW + timedelta(hours=5))
        acts = strava_history(450)
        fake = FakeStrava(rsps, acts)
        served = fake._list

        def list_then_401(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
            if len(fake.list_calls) >= 2:
                fake.tokens_seen.append(str(request.headers.get("Authorization", "")))
                return 401, fake.headers(), '{"message": "Authorization Error", "errors": []}'
            return served(request)

        rsps.remove(responses.GET, LIST_URL)
        rsps.add_callback(responses.GET, LIST_URL, callback=list_then_401)
        rsps.add(
            responses.POST,
            TOKEN_URL,
            status=401 if refresh is UNAUTHORIZED_PLAIN else 400,
            json=refresh,
        )
        return fake, acts, Clock(NOW)

    def reconnect(
        self, env: Env, rsps: responses.RequestsMock, fake: FakeStrava, clock: Clock
    ) -> None:
        """`hillsync connect strava` again: fresh tokens, the account connected, the list healed."""
        write_tokens(
            paths.token_path(env.environ, DEFAULT_ATHLETE, "strava"),
            expires_at=clock.now + timedelta(hours=5),
            access="ACCESS-reconnected-9999",
            refresh="REFRESH-reconnected-9999",
        )
        ctx = AppContext(env.settings(), env.environ, clock=clock)
        try:
            record_account(
                ctx,
                DEFAULT_ATHLETE,
                SourceKind.STRAVA,
                remote_id="134815",
                display_name=None,
                token_path=paths.token_path(env.environ, DEFAULT_ATHLETE, "strava"),
                scope="read,activity:read_all",
            )
        finally:
            ctx.db.close()
        rsps.remove(responses.GET, LIST_URL)
        rsps.add_callback(responses.GET, LIST_URL, callback=fake._list)

    def test_pages_stay_and_resume(self, env: Env, rsps: responses.RequestsMock) -> None:
        """Two pages stored, needs_auth, cursor at the third page; reconnected: the rest, once."""
        fake, acts, clock = self.backfill(env, rsps, UNAUTHORIZED_PLAIN)
        worker = env.worker(clock)
        with storm():
            first = one(worker.sync_cycle(), "strava")
            assert first.state == "needs_auth"
            assert_one_line_error(first, "hillsync connect strava")
            # Strava lists oldest first, 200 a page (API notes): two pages are stored, the
            # oldest activities without a hole (a page may start with the previous page's
            # last activity again, so 399 or 400 of them).
            stored = stored_ids(env.db, "strava")
            assert stored == strava_ids(acts[: len(stored)])
            assert 399 <= len(stored) <= 400
            with env.db.session(readonly=True) as session:
                (row,) = [s for s in repo.all_sync_states(session) if s.name == "strava"]
                cursor = dict(row.cursor or {})
            newest_stored = datetime.fromisoformat(acts[len(stored) - 1]["start_date"])
            assert cursor["newest"] == int(newest_stored.timestamp())
            # The backfill is not done: it resumes at the first activity not stored.
            assert cursor["listing"]["after"] < int(
                datetime.fromisoformat(acts[len(stored)]["start_date"]).timestamp()
            )
            assert [m[0] for m in env.messages()] == ["needs_auth"]
            skipped = one(worker.sync_cycle(), "strava")
            assert skipped.skipped == "needs re-authentication"
            calls = len(fake.list_calls)
            self.reconnect(env, rsps, fake, clock)
            clock.advance(minutes=1)
            resumed = one(worker.sync_cycle(), "strava")
            assert (resumed.state, resumed.new) == ("ok", len(acts) - len(stored))
            assert len(fake.list_calls) - calls == 1  # one short page, not the history again
        assert stored_ids(env.db, "strava") == strava_ids(acts)
        assert env.state("strava")[0] == "ok"
        assert_nothing_twice(env.db)

    def test_access_revoked_deletes_then_resyncs_once(
        self, env: Env, rsps: responses.RequestsMock
    ) -> None:
        """The athlete revoked access (refresh token refused): Strava's data goes (DESIGN 6);
        reconnected, the whole history comes back once."""
        fake, acts, clock = self.backfill(env, rsps, REFRESH_INVALID)
        worker = env.worker(clock)
        with storm():
            first = one(worker.sync_cycle(), "strava")
            assert first.state == "needs_auth"
            assert_one_line_error(first, "revoked", "hillsync connect strava")
            assert stored_ids(env.db, "strava") == []
            self.reconnect(env, rsps, fake, clock)
            clock.advance(minutes=1)
            resumed = one(worker.sync_cycle(), "strava")
            assert (resumed.state, resumed.new) == ("ok", 450)
        assert stored_ids(env.db, "strava") == strava_ids(acts)
        assert_nothing_twice(env.db)


# --- Garmin ----------------------------------------------------------------------------------


def garmin_ids(summaries: list[dict[str, Any]]) -> list[str]:
    """The ids of Garmin summaries."""
    return sorted(str(s["activityId"]) for s in summaries)


Answer = tuple[int, dict[str, str], str | Exception]
JSON = {"Content-Type": "application/json"}

#: Storms on Garmin's activity list: (status, headers, body); an exception body is raised.
GARMIN_FAULTS: dict[str, Answer] = {
    "503": (503, {"Content-Type": "text/html"}, "<html>Service Temporarily Unavailable</html>"),
    "500": (500, JSON, '{"message": "Internal Server Error"}'),
    "reset": (0, {}, requests.exceptions.ConnectionError("Connection reset by peer")),
    "read-timeout": (0, {}, requests.exceptions.ReadTimeout("Read timed out. (timeout=10)")),
    "truncated": (200, JSON, '[{"activityId": 9, "startTimeGMT": "2026-'),
    "html-with-200": (200, {"Content-Type": "text/html"}, HTML_PAGE),
    "object-for-list": (200, JSON, '{"activityList": []}'),
}


class Faulty:
    """An endpoint answering `fault` while `on`, and what the fake behind it answers after."""

    def __init__(
        self,
        rsps: responses.RequestsMock,
        url: str,
        healthy: Callable[[requests.PreparedRequest], tuple[int, dict[str, str], str]],
        fault: Answer,
    ) -> None:
        self.on = True
        self.hits = 0
        self.fault = fault
        self.healthy = healthy
        rsps.remove(responses.GET, url)
        rsps.add_callback(responses.GET, url, callback=self.answer)

    def answer(self, request: requests.PreparedRequest) -> Answer:
        if self.on:
            self.hits += 1
            return self.fault
        return self.healthy(request)


@pytest.mark.parametrize("fault", list(GARMIN_FAULTS.values()), ids=list(GARMIN_FAULTS))
class TestGarminStorms:
    """The same storms on Garmin Connect's activity list."""

    def test_storm_then_recovery(
        self, env: Env, rsps: responses.RequestsMock, fault: Answer
    ) -> None:
        """The storm fails the poll on one line, nothing stored; after the backoff, all once."""
        env.connect_garmin()
        add_profile(rsps)
        runs = [garmin_summary(900 + i, NOW - timedelta(days=2 + 3 * i)) for i in range(3)]
        server = FakeGarminServer(rsps, runs)
        faulty = Faulty(rsps, GARMIN_LIST_URL, server._list, fault)
        clock = Clock(NOW)
        worker = env.worker(clock)
        with storm():
            first = one(worker.sync_cycle(due_only=True), "garmin")
            assert first.state == "error"
            assert_one_line_error(first, "garmin")
            assert faulty.hits >= 1
            poll = timedelta(minutes=poll_minutes(env, SourceKind.GARMIN))
            assert next_sync_at(env, "garmin") >= NOW + poll
            assert stored_ids(env.db, "garmin") == []
            faulty.on = False
            recovered(env, clock, "garmin")
            second = one(worker.sync_cycle(due_only=True), "garmin")
            assert (second.state, second.new) == ("ok", 3)
            clock.advance(hours=2)
            third = one(worker.sync_cycle(), "garmin")
            assert (third.state, third.new, third.updated) == ("ok", 0, 0)
        assert stored_ids(env.db, "garmin") == garmin_ids(runs)
        assert_nothing_twice(env.db)


class TestGarminMalformedItems:
    """JSON lists (or nulls) where Garmin's activity objects belong."""

    def test_items_rejected_runs_kept(self, env: Env, rsps: responses.RequestsMock) -> None:
        """Odd entries are rejected with a reason; the runs on the same page are stored once."""
        env.connect_garmin()
        add_profile(rsps)
        good = [garmin_summary(950 + i, NOW - timedelta(days=1 + i)) for i in range(2)]
        rsps.add(responses.GET, GARMIN_LIST_URL, json=[good[0], [1, 2], None, good[1]])
        FakeGarminServer(rsps, good)
        clock = Clock(NOW)
        worker = env.worker(clock)
        with storm():
            first = one(worker.sync_cycle(), "garmin")
            assert (first.state, first.new, first.rejected) == ("ok", 2, 2)
            clock.advance(hours=2)
            again = one(worker.sync_cycle(), "garmin")
        assert (again.state, again.new, again.updated) == ("ok", 0, 0)
        assert stored_ids(env.db, "garmin") == garmin_ids(good)
        assert_nothing_twice(env.db)


# --- the database ----------------------------------------------------------------------------


def sqlite_path(env: Env) -> Path:
    """The SQLite file of the test database (the lock tests need SQLite)."""
    if not env.db.is_sqlite:
        pytest.skip("a held write lock is SQLite's; PostgreSQL's row locks are another test")
    database = make_url(env.url).database
    assert database is not None
    return Path(database)


@contextmanager
def exclusive(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding SQLite's write lock (BEGIN EXCLUSIVE) until the block ends."""
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield other
        other.execute("ROLLBACK")
    finally:
        other.close()


class TestDatabaseLocked:
    """Another process holds SQLite's write lock while a cycle runs."""

    def test_short_lock_is_waited_out(self, env: Env) -> None:
        """A lock held for 1 s (real time: SQLite's busy wait) delays the cycle; all is stored."""
        path = sqlite_path(env)
        clock = Clock(NOW)
        files = add_folder(env, clock, count=3)
        worker = env.worker(clock)
        taken, release = threading.Event(), threading.Event()

        def hold() -> None:
            with exclusive(path):
                taken.set()
                release.wait(1.0)

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert taken.wait(5)
            with storm():
                result = worker.sync_cycle()
        finally:
            release.set()
            holder.join()
        assert (one(result, "folder").state, one(result, "folder").new) == ("ok", len(files))
        assert len(stored_ids(env.db, "folder")) == len(files)
        assert_nothing_twice(env.db)

    def test_lock_beyond_the_busy_timeout(
        self,
        env: Env,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A lock outlasting the busy timeout (cut to 0.2 s here, 30 s in service): the cycle
        fails with a one-line StoreError, the daemon's guard logs it and carries on, and the
        next cycle stores everything once."""
        path = sqlite_path(env)
        monkeypatch.setattr(store_db, "SQLITE_BUSY_TIMEOUT_MS", 200)
        db = open_database(env.url)  # its connections get the short busy timeout
        try:
            clock = Clock(NOW)
            files = add_folder(env, clock)
            settings = env.settings()
            daemon = Daemon(lambda: settings, environ=env.environ, clock=clock)
            with storm() as events:
                with exclusive(path):
                    worker = env.worker(clock)
                    worker.db = db
                    with pytest.raises(StoreError) as caught:
                        worker.sync_cycle()
                    assert "\n" not in str(caught.value)
                    assert "locked" in str(caught.value)
                    wait_s = daemon._guarded_cycle(settings, db)
                    assert 0 < wait_s <= daemon.max_sleep_s
                failed = [e for e in events if e["event"] == "cycle failed"]
                assert len(failed) == 1
                assert "locked" in failed[0]["error"]
                assert stored_ids(env.db, "folder") == []
                clock.advance(minutes=1)
                daemon._guarded_cycle(settings, db)
            assert len(stored_ids(env.db, "folder")) == len(files)
            assert env.state("folder")[0] == "ok"
        finally:
            db.close()
        assert_nothing_twice(env.db)
