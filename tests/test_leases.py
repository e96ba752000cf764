"""Leases on sources, once-only balance claims, the SQLite run lock, and shared API budgets.

Every time is given (a moved clock, never a sleep). The tests that need two transactions
open at once (SKIP LOCKED, advisory locks, concurrent grants) run on PostgreSQL only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from helpers import Clock, wait_for
from hillsync.errors import StoreError
from hillsync.model import RUN_SPORTS, Batch
from hillsync.store import budgets, leases, repo
from hillsync.store.budgets import Reserve
from hillsync.store.db import Database, open_database
from hillsync.store.leases import LeaseLost
from hillsync.store.tables import SyncState
from test_store import activity, classify_all

NOW = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
TTL = timedelta(minutes=2)
A, B = "host-a:101:aaaaaa", "host-b:202:bbbbbb"


def sources(db: Database, *names: str, athlete: str = "me") -> dict[str, int]:
    """Sync states for `names` (never synced, due), by name."""
    with db.session() as s:
        me = repo.ensure_athlete(s, athlete)
        return {n: repo.ensure_sync_state(s, me, n, "folder").id for n in names}


def row(db: Database, name: str) -> SyncState:
    """The sync state `name` as committed."""
    with db.session(readonly=True) as s:
        return s.scalars(select(SyncState).where(SyncState.name == name)).one()


@pytest.fixture
def second(db: Database) -> Iterator[Database]:
    """A second connection pool on the same database: another worker's."""
    other = open_database(db.engine.url.render_as_string(hide_password=False), upgrade=False)
    try:
        yield other
    finally:
        other.close()


def postgres_only(db: Database) -> None:
    """Skip on SQLite: these tests hold two write transactions open at once."""
    if db.is_sqlite:
        pytest.skip("SQLite has one writer at a time: nothing to skip past")


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)
    return proc.pid


class TestDeadLocalWorker:
    """A dead process of this host holds nothing: `sync` killed -9 blocks no one."""

    def test_dead_local_holder_is_taken_over_at_once(self, db: Database) -> None:
        """A lease of an exited local pid is free before its expiry; a live or foreign one is
        not."""
        host = leases.new_worker_id().split(":", 1)[0]
        dead = f"{host}:{dead_pid()}:dddddd"
        alive = f"{host}:{os.getpid()}:eeeeee"
        assert leases.is_dead_here(dead)
        assert not leases.is_dead_here(alive)
        assert not leases.is_dead_here("elsewhere:1:ffffff")
        ids = sources(db, "dead", "alive", "foreign")
        with db.session() as s:
            for name, owner in (("dead", dead), ("alive", alive), ("foreign", "elsewhere:1:f")):
                assert leases.claim(s, ids[name], owner, now=NOW, ttl=TTL) is not None
        with db.session() as s:
            names = ["dead", "alive", "foreign"]
            taken = leases.claim_next(s, A, names=names, now=NOW, ttl=TTL)
            assert taken is not None
            assert taken.name == "dead"
            assert leases.claim_next(s, B, names=names, now=NOW, ttl=TTL) is None


class TestClaimNext:
    """Claiming due sources: the most overdue first, never one a live worker holds."""

    def test_two_workers_get_different_sources(self, db: Database) -> None:
        """A takes the overdue source, B the next; with both held, a third claim gets nothing."""
        sources(db, "old", "new")
        with db.session() as s:
            s.scalars(select(SyncState).where(SyncState.name == "old")).one().next_sync = (
                NOW - timedelta(hours=1)
            )
        names = ["old", "new"]
        with db.session() as s:
            a = leases.claim_next(s, A, names=names, now=NOW, ttl=TTL)
        with db.session() as s:
            b = leases.claim_next(s, B, names=names, now=NOW, ttl=TTL)
        with db.session() as s:
            none = leases.claim_next(s, "c:3:cccccc", names=names, now=NOW, ttl=TTL)
        assert a is not None
        assert b is not None
        assert (a.name, b.name, none) == ("new", "old", None)
        held = row(db, "old")
        assert (held.lease_owner, held.lease_since, held.lease_until) == (B, NOW, NOW + TTL)

    def test_not_due_needs_auth_and_other_names_are_left(self, db: Database) -> None:
        """A source parked until later, one waiting for a reconnect, and one not named stay."""
        sources(db, "later", "auth", "elsewhere")
        with db.session() as s:
            for st in s.scalars(select(SyncState)):
                if st.name == "later":
                    st.next_sync = NOW + timedelta(minutes=5)
                if st.name == "auth":
                    st.state = "needs_auth"
            assert leases.claim_next(s, A, names=["later", "auth"], now=NOW, ttl=TTL) is None

    def test_expired_lease_is_taken_over(self, db: Database) -> None:
        """A dead worker's lease is free once expired; its renewals and release then fail."""
        ids = sources(db, "folder")
        with db.session() as s:
            dead = leases.claim_next(s, A, names=["folder"], now=NOW, ttl=TTL)
        assert dead is not None
        with db.session() as s:
            early = NOW + TTL - timedelta(seconds=1)
            assert leases.claim_next(s, B, names=["folder"], now=early, ttl=TTL) is None
        later = NOW + TTL
        with db.session() as s:
            taken = leases.claim_next(s, B, names=["folder"], now=later, ttl=TTL)
        assert taken is not None
        assert (taken.state_id, taken.owner, taken.since) == (ids["folder"], B, later)
        with pytest.raises(LeaseLost), db.session() as s:
            leases.renew(s, dead, now=later, ttl=TTL)
        with db.session() as s:
            assert not leases.release(s, dead)
            assert not leases.holds(s, dead)
            assert leases.holds(s, taken)
        assert row(db, "folder").lease_owner == B

    def test_renewal_keeps_since_and_moves_expiry(self, db: Database) -> None:
        """Renewing moves the expiry only; the holder's own claim keeps its `since`."""
        sources(db, "folder")
        with db.session() as s:
            lease = leases.claim_next(s, A, names=["folder"], now=NOW, ttl=TTL)
        assert lease is not None
        with db.session() as s:
            renewed = leases.renew(s, lease, now=NOW + timedelta(minutes=1), ttl=TTL)
        assert renewed.until == NOW + timedelta(minutes=3)
        with db.session() as s:
            again = leases.claim(s, lease.state_id, A, now=NOW + timedelta(minutes=2), ttl=TTL)
        assert again is not None
        assert again.since == NOW
        assert row(db, "folder").lease_until == NOW + timedelta(minutes=4)

    def test_release_all_frees_every_source_of_a_worker(self, db: Database) -> None:
        """A stopping worker gives back all its sources at once; others' stay held."""
        sources(db, "a1", "a2", "b1")
        with db.session() as s:
            for name, owner in (("a1", A), ("a2", A), ("b1", B)):
                assert leases.claim_next(s, owner, names=[name], now=NOW, ttl=TTL) is not None
        with db.session() as s:
            assert leases.release_all(s, A) == 2
        assert [row(db, n).lease_owner for n in ("a1", "a2", "b1")] == [None, None, B]
        with db.session() as s:
            assert leases.claim_next(s, B, names=["a1"], now=NOW, ttl=TTL) is not None

    def test_claim_of_a_named_source_refused_while_held(self, db: Database) -> None:
        """`hillsync sync` cannot take a source a live worker is syncing, even when due."""
        ids = sources(db, "folder")
        with db.session() as s:
            assert leases.claim(s, ids["folder"], A, now=NOW, ttl=TTL) is not None
        with db.session() as s:
            assert leases.claim(s, ids["folder"], B, now=NOW, ttl=TTL) is None


class TestKeeper:
    """Between two commits a live worker's lease is renewed by its keeper thread."""

    def test_slow_fetch_keeps_its_source(self, db: Database, second: Database) -> None:
        """Past the lease's first expiry, the keeper has renewed it: B cannot take over."""
        ids = sources(db, "strava")
        clock = Clock(NOW)
        with db.session() as s:
            lease = leases.claim(s, ids["strava"], A, now=NOW, ttl=TTL)
        assert lease is not None
        with leases.Keeper(db, lease, clock=clock, ttl=TTL, every=0.01) as keeper:
            clock.advance(TTL * 1.5)
            renewed = wait_for(
                "a renewal", lambda: row(db, "strava").lease_until == clock.now + TTL, 10.0
            )
            with second.session() as s:
                taken = leases.claim(s, ids["strava"], B, now=clock.now, ttl=TTL)
        assert renewed
        assert taken is None
        assert not keeper.lost

    def test_taken_over_is_noticed(self, db: Database) -> None:
        """Once another worker holds the source, the keeper says so and stops renewing."""
        ids = sources(db, "strava")
        clock = Clock(NOW)
        with db.session() as s:
            lease = leases.claim(s, ids["strava"], A, now=NOW, ttl=TTL)
        assert lease is not None
        with leases.Keeper(db, lease, clock=clock, ttl=TTL, every=0.01) as keeper:
            with db.session() as s:
                assert leases.claim(s, ids["strava"], B, now=NOW + TTL, ttl=TTL) is not None
            wait_for("the takeover noticed", lambda: keeper.lost, 10.0)
        assert row(db, "strava").lease_owner == B


class TestClaimReadsAnew:
    """A claim works on the row as committed, not as the session loaded it before."""

    def test_claim_refreshes_a_row_loaded_earlier(self, db: Database, second: Database) -> None:
        """A cursor committed by another worker between the load and the claim is seen."""
        postgres_only(db)
        ids = sources(db, "strava")
        with db.session() as s:
            loaded = s.get_one(SyncState, ids["strava"])
            assert loaded.cursor in (None, {})
            with second.session() as other:
                other.get_one(SyncState, ids["strava"]).cursor = {"after": 42}
            lease = leases.claim(s, ids["strava"], A, now=NOW, ttl=TTL)
            assert lease is not None
            assert loaded.cursor == {"after": 42}


class TestFencedBatch:
    """A batch commits only while its worker still holds the source."""

    def test_batch_after_takeover_is_rolled_back(self, db: Database) -> None:
        """The old holder's renewal fails inside its batch transaction: nothing is stored."""
        ids = sources(db, "strava")
        with db.session() as s:
            old = leases.claim(s, ids["strava"], A, now=NOW, ttl=TTL)
        assert old is not None
        with db.session() as s:
            assert leases.claim(s, ids["strava"], B, now=NOW + TTL, ttl=TTL) is not None
        acts = [activity("1")]

        def store_batch() -> None:
            with db.session() as s:
                state = s.get_one(SyncState, ids["strava"])
                batch = Batch(activities=acts)
                repo.save_batch(s, state, batch, classify_all(acts), RUN_SPORTS, NOW)
                leases.renew(s, old, now=NOW + TTL, ttl=TTL)

        with pytest.raises(LeaseLost):
            store_batch()
        with db.session() as s:
            assert repo.count_activities(s) == 0


class TestSkipLocked:
    """PostgreSQL: a row another worker is claiming is skipped, not waited for."""

    def test_uncommitted_claim_is_skipped(self, db: Database, second: Database) -> None:
        """While A's claim is not committed, B claims the other source without blocking."""
        postgres_only(db)
        sources(db, "one", "two")
        with db.session() as sa:
            a = leases.claim_next(sa, A, names=["one", "two"], now=NOW, ttl=TTL)
            with second.session() as sb:
                b = leases.claim_next(sb, B, names=["one", "two"], now=NOW, ttl=TTL)
                assert a is not None
                assert b is not None
                assert {a.name, b.name} == {"one", "two"}
                with second.session() as sc:
                    assert leases.claim_next(sc, "c:1:c", names=["one", "two"], now=NOW) is None

    def test_balance_claimed_by_one_worker(self, db: Database, second: Database) -> None:
        """While A evaluates an athlete, B's non-waiting claim of it is refused."""
        postgres_only(db)
        with db.session() as s:
            athlete_id = repo.ensure_athlete(s, "anna").id
        with db.session() as sa:
            assert leases.claim_balance(sa, athlete_id, wait=False)
            with second.session() as sb:
                assert not leases.claim_balance(sb, athlete_id, wait=False)
        with second.session() as sb:
            assert leases.claim_balance(sb, athlete_id, wait=False)


class TestBalanceDue:
    """When an athlete's balance needs evaluating, and when another worker will do it."""

    def test_due_never_stale_or_changed(self, db: Database) -> None:
        """Due when never evaluated, a day old, or an activity changed since; else not."""
        from hillsync.store import outbox

        ids = sources(db, "strava")
        with db.session() as s:
            athlete_id = repo.ensure_athlete(s, "me").id
            day = timedelta(days=1)
            assert leases.balance_due(s, athlete_id, NOW, day)
            outbox.set_balance_state(
                s, athlete_id, status="ok", since=NOW, evaluated_at=NOW,
                last_warned_at=None, report=None,
            )  # fmt: skip
            assert not leases.balance_due(s, athlete_id, NOW + timedelta(hours=23), day)
            assert leases.balance_due(s, athlete_id, NOW + day, day)
            state = s.get_one(SyncState, ids["strava"])
            acts = [activity("1")]
            later = NOW + timedelta(minutes=1)
            repo.save_batch(s, state, Batch(activities=acts), classify_all(acts), RUN_SPORTS, later)
            assert leases.balance_due(s, athlete_id, later, day)

    def test_busy_elsewhere(self, db: Database) -> None:
        """Another live worker's lease on one of the athlete's sources makes it busy."""
        ids = sources(db, "strava", "folder")
        with db.session() as s:
            athlete_id = repo.ensure_athlete(s, "me").id
            assert not leases.busy_elsewhere(s, athlete_id, A, NOW)
            leases.claim(s, ids["folder"], B, now=NOW, ttl=TTL)
            assert leases.busy_elsewhere(s, athlete_id, A, NOW)
            assert not leases.busy_elsewhere(s, athlete_id, B, NOW)
            assert not leases.busy_elsewhere(s, athlete_id, A, NOW + TTL)


class TestRunLock:
    """One `hillsync run` per SQLite file: a second is refused with a clear message."""

    def test_second_holder_refused_naming_the_first(self, tmp_path: Path) -> None:
        """The second run lock names the first holder; once released it can be taken."""
        path = leases.sqlite_run_lock_path(str(tmp_path / "hillsync.db"))
        assert path is not None
        with (
            leases.run_lock(path, A),
            pytest.raises(StoreError, match=r"another `hillsync run` \(host-a:101") as exc,
            leases.run_lock(path, B),
        ):
            pass
        assert "PostgreSQL" in str(exc.value)
        with leases.run_lock(path, B):
            assert path.read_text() == B

    def test_killed_holder_leaves_no_stale_lock(self, tmp_path: Path) -> None:
        """A holder killed with SIGKILL loses the lock with its process."""
        path = tmp_path / "hillsync.db.run-lock"
        code = (
            "import sys, time\n"
            "from pathlib import Path\n"
            "from hillsync.store import leases\n"
            "with leases.run_lock(Path(sys.argv[1]), 'child:1:c'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "held"
            with pytest.raises(StoreError, match="child:1:c"), leases.run_lock(path, A):
                pass
        finally:
            proc.kill()
            proc.wait(timeout=30)
        with leases.run_lock(path, A):
            pass

    def test_memory_database_needs_no_lock(self) -> None:
        """An in-memory database has no file to lock."""
        assert leases.sqlite_run_lock_path(":memory:") is None


APP = budgets.strava_app(4242)


class TestBudgets:
    """One Strava application's budget, counted in the store for every worker."""

    def test_grants_stop_at_the_reserve_then_park_until_the_quarter(self, db: Database) -> None:
        """100 reads a quarter hour minus a reserve of 5: 95 granted, then parked to :15."""
        with db.session() as s:
            first = budgets.acquire(s, APP, method="GET", want=60, now=NOW)
            second = budgets.acquire(s, APP, method="GET", want=60, now=NOW)
            third = budgets.acquire(s, APP, method="GET", want=1, now=NOW)
        assert (first.granted, second.granted, third.granted) == (60, 35, 0)
        quarter = datetime(2026, 6, 1, 12, 15, tzinfo=UTC)
        assert third.resume_at == quarter
        assert third.reason is not None
        assert "15-minute read budget is spent" in third.reason
        with db.session() as s:
            assert budgets.parked_until(s, APP, NOW) == quarter
            assert budgets.acquire(s, APP, method="GET", want=5, now=quarter).granted == 5
            assert budgets.parked_until(s, APP, quarter) is None

    def test_daily_budget_parks_until_midnight(self, db: Database) -> None:
        """A daily figure reported near the limit parks the application until 00:00 UTC."""
        with db.session() as s:
            budgets.report(s, APP, {"read": (3, 951, 100, 1000)}, at=NOW, now=NOW)
            grant = budgets.acquire(s, APP, method="GET", want=10, now=NOW)
        assert grant.granted == 0
        assert grant.resume_at == datetime(2026, 6, 2, tzinfo=UTC)
        with db.session() as s:
            reads = next(u for u in budgets.usage(s, APP, NOW) if u.scope == "read")
        assert (reads.long_used, reads.long_limit) == (951, 1000)

    def test_reported_usage_counts_requests_made_elsewhere(self, db: Database) -> None:
        """Strava's own count raises the store's; unused grants never go below it."""
        with db.session() as s:
            assert budgets.acquire(s, APP, method="GET", want=10, now=NOW).granted == 10
            budgets.report(s, APP, {"read": (40, 40, 100, 1000)}, at=NOW, now=NOW)
            budgets.give_back(s, APP, method="GET", unused=10, granted_at=NOW, now=NOW)
            assert budgets.acquire(s, APP, method="GET", want=100, now=NOW).granted == 55

    def test_writes_count_only_against_the_overall_budget(self, db: Database) -> None:
        """A token refresh (POST) leaves the read budget alone."""
        with db.session() as s:
            assert budgets.acquire(s, APP, method="POST", want=1, now=NOW).granted == 1
            used = {u.scope: u.short_used for u in budgets.usage(s, APP, NOW)}
        assert (used["overall"], used.get("read", 0)) == (1, 0)

    def test_reserve_left_for_webhooks_and_connects(self, db: Database) -> None:
        """Once syncing has spent its share, requests without a reserve get the last 5."""
        with db.session() as s:
            assert budgets.acquire(s, APP, method="GET", want=200, now=NOW).granted == 95
            assert budgets.acquire(s, APP, method="GET", want=1, now=NOW).granted == 0
            webhook = budgets.acquire(
                s, APP, method="GET", want=10, now=NOW, reserve=budgets.NO_RESERVE
            )
        assert webhook.granted == 5

    def test_park_sources_of_the_application(self, db: Database) -> None:
        """Every idle source of the application is parked; a leased or revoked one is not."""
        ids = sources(db, "anna/strava", "ben/strava", "cleo/strava", "dora/strava")
        with db.session() as s:
            s.get_one(SyncState, ids["cleo/strava"]).state = "needs_auth"
            leases.claim(s, ids["dora/strava"], B, now=NOW, ttl=TTL)
        quarter = datetime(2026, 6, 1, 12, 15, tzinfo=UTC)
        with db.session() as s:
            parked = budgets.park_sources(
                s, list(ids), until=quarter, error="spent", owner=A, now=NOW
            )
        assert parked == ["anna/strava", "ben/strava"]
        assert (row(db, "ben/strava").state, row(db, "ben/strava").next_sync) == (
            "rate_limited",
            quarter,
        )

    def test_concurrent_workers_never_exceed(self, db: Database) -> None:
        """Eight threads with their own connections, 3 reads at a time: 95 granted in all."""
        postgres_only(db)
        url = db.engine.url.render_as_string(hide_password=False)
        granted: list[int] = []
        errors: list[BaseException] = []

        def worker() -> None:
            other = open_database(url, upgrade=False)
            try:
                while True:
                    with other.session() as s:
                        grant = budgets.acquire(s, APP, method="GET", want=3, now=NOW)
                    if not grant.granted:
                        return
                    granted.append(grant.granted)
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                errors.append(exc)
            finally:
                other.close()

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert sum(granted) == 100 - Reserve().short
