"""Which worker syncs which source: leases on the sync state, and once-only claims.

Several `hillsync run` processes may share one PostgreSQL database. A worker claims a due
source by writing its id and an expiry into the source's sync state row, picked with
`SELECT ... FOR UPDATE SKIP LOCKED` so that two workers never wait on, or take, the same
row. The lease is renewed with every batch the worker commits, and every commit checks it
still holds the lease (a fence): a worker that lost its lease (it stalled past the expiry
and another took over) can no longer write that source. A dead worker's lease simply
expires; a stopping worker releases its leases at once.

SQLite has one writer at a time (every writing session begins IMMEDIATE), so the same
statements are correct there without row locks; a second `hillsync run` on one SQLite
file is refused by `RunLock`.

Every time comes from the caller (its clock), and so does the lease length: tests move a
clock instead of sleeping. Workers on several machines need clocks kept in sync (NTP): a
lease is minutes long, skew should be far below that.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from sqlalchemy import ColumnElement, Select, exists, func, or_, select, text, update
from sqlalchemy.orm import Session

from hillsync.errors import StoreError
from hillsync.store.db import Database
from hillsync.store.tables import ActivityRow, BalanceState, SyncState

log = structlog.get_logger(__name__)

#: How long a claimed source stays reserved without a renewal. A worker renews it with
#: every committed batch and, between commits, every third of it (`Keeper`); a dead
#: worker's sources wait this long before another takes them over.
DEFAULT_LEASE = timedelta(minutes=2)

#: First key of the PostgreSQL advisory locks that make one worker evaluate an athlete.
_BALANCE_LOCK_SPACE = 0x68696C62


class LeaseLost(StoreError):
    """This worker no longer holds the source's lease: it expired and another worker took
    the source over. Nothing more of this sync may be written."""


def _host() -> str:
    return (socket.gethostname().split(".", 1)[0] or "localhost")[:120]


def new_worker_id() -> str:
    """A worker's id: host:pid:random, unique even when a pid is reused."""
    return f"{_host()}:{os.getpid()}:{secrets.token_hex(3)}"


def is_dead_here(owner: str) -> bool:
    """True when `owner` is a worker of this host whose process no longer exists.

    Its leases need not wait for their expiry: a `hillsync sync` killed with -9 must not
    hold its sources for minutes. A pid reused by another process only means waiting for
    the expiry, as for a worker of another host; and should two hosts share a name, the
    fence on every batch still keeps the real holder's writes apart.
    """
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _host() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


@dataclass(frozen=True)
class Lease:
    """A worker's claim on one source until `until`."""

    state_id: int
    name: str
    owner: str
    since: datetime
    until: datetime


def _free(now: datetime, owner: str, dead: Collection[str] = ()) -> ColumnElement[bool]:
    return or_(
        SyncState.lease_owner.is_(None),
        SyncState.lease_until.is_(None),
        SyncState.lease_until <= now,
        SyncState.lease_owner.in_([owner, *dead]),
    )


def _dead_holders(session: Session, now: datetime) -> list[str]:
    """Holders of live leases that are dead processes of this host (see is_dead_here)."""
    holders = session.scalars(
        select(SyncState.lease_owner)
        .where(SyncState.lease_owner.is_not(None), SyncState.lease_until > now)
        .distinct()
    )
    return [h for h in holders if h is not None and is_dead_here(h)]


def _due(now: datetime) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return (
        or_(SyncState.next_sync.is_(None), SyncState.next_sync <= now),
        SyncState.state != "needs_auth",
    )


def _locked(stmt: Select[SyncState]) -> Select[SyncState]:
    # SKIP LOCKED: a row another worker is claiming or renewing right now is not ours
    # to wait for. SQLite ignores FOR UPDATE (its writer lock already serialises).
    return stmt.with_for_update(skip_locked=True)


def _take(row: SyncState, owner: str, now: datetime, ttl: timedelta) -> Lease:
    if row.lease_owner != owner or row.lease_since is None:
        row.lease_since = now
    row.lease_owner = owner
    row.lease_until = now + ttl
    return Lease(row.id, row.name, owner, row.lease_since, row.lease_until)


def claim_next(
    session: Session,
    owner: str,
    *,
    names: Collection[str],
    now: datetime,
    ttl: timedelta = DEFAULT_LEASE,
) -> Lease | None:
    """Claim the most overdue source among `names` that is due and not leased by a live
    worker (never one waiting for re-authentication or parked until later), or None. A
    lease of a dead process of this host counts as expired.

    The caller commits the session to make the claim visible.
    """
    if not names:
        return None
    stmt = (
        select(SyncState)
        .where(
            SyncState.name.in_(list(names)),
            *_due(now),
            _free(now, owner, _dead_holders(session, now)),
        )
        .order_by(SyncState.next_sync.is_not(None), SyncState.next_sync, SyncState.name)
        .limit(1)
        .execution_options(populate_existing=True)
    )
    row = session.scalars(_locked(stmt)).first()
    if row is None:
        return None
    lease = _take(row, owner, now, ttl)
    session.flush()
    return lease


def claim(
    session: Session,
    state_id: int,
    owner: str,
    *,
    now: datetime,
    ttl: timedelta = DEFAULT_LEASE,
) -> Lease | None:
    """Claim one source whether due or not (`hillsync sync`), or None while another live
    worker holds it. The caller commits the session to make the claim visible."""
    stmt = (
        select(SyncState)
        .where(SyncState.id == state_id, _free(now, owner, _dead_holders(session, now)))
        # Waits for a short lock (a push event marking it due) rather than skip a free
        # source; and reads the row anew, not as the session loaded it before the lock.
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    row = session.scalars(stmt).first()
    if row is None:
        return None
    lease = _take(row, owner, now, ttl)
    session.flush()
    return lease


def renew(session: Session, lease: Lease, *, now: datetime, ttl: timedelta) -> Lease:
    """Extend the lease, in the caller's transaction: a batch committed with it is fenced.

    Raises LeaseLost when another worker holds the source now (this one's lease expired
    and was taken over); the caller must roll back and stop syncing the source.
    """
    result = session.execute(
        update(SyncState)
        .where(SyncState.id == lease.state_id, SyncState.lease_owner == lease.owner)
        .values(lease_until=now + ttl)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise LeaseLost(f"{lease.name}: another worker took this source over")
    return Lease(lease.state_id, lease.name, lease.owner, lease.since, now + ttl)


class Keeper:
    """Renews a lease from a thread, in short transactions of its own, every `every`
    seconds while a slow fetch runs between two commits (a page of Strava streams, a
    Garmin login and downloads): the lease then never runs out under a live worker.

    Every commit still renews and checks the lease itself (the fence); the keeper only
    keeps it from expiring meanwhile. `lost` turns True once another worker holds the
    source. Use it as a context manager around the fetch.
    """

    def __init__(
        self,
        db: Database,
        lease: Lease,
        *,
        clock: Callable[[], datetime],
        ttl: timedelta,
        every: float | None = None,
        run: bool = True,
    ) -> None:
        """`run` False: a keeper that starts no thread (the commits alone renew the lease)."""
        self._run_thread = run
        self._db = db
        self._lease = lease
        self._clock = clock
        self._ttl = ttl
        self._every = every if every is not None else max(ttl.total_seconds() / 3, 0.05)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease:{lease.name}", daemon=True)
        self.lost = False

    def __enter__(self) -> Keeper:
        if self._run_thread:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        if self._run_thread:
            self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self._every):
            try:
                with self._db.session() as session:
                    renew(session, self._lease, now=self._clock(), ttl=self._ttl)
            except LeaseLost:
                self.lost = True
                return
            except StoreError as exc:
                # The next commit's fence decides; a failed renewal only shortens the lease.
                log.warning("lease_not_renewed", source=self._lease.name, error=str(exc))


def holds(session: Session, lease: Lease) -> bool:
    """True while the source's lease is still this one's (the row is locked on PostgreSQL
    until the transaction ends, so the answer holds for it)."""
    stmt = select(SyncState.id).where(
        SyncState.id == lease.state_id, SyncState.lease_owner == lease.owner
    )
    return session.scalar(stmt.with_for_update()) is not None


def release(session: Session, lease: Lease) -> bool:
    """Give the source back (its due time stays as recorded); False when it was no longer
    this worker's."""
    result = session.execute(
        update(SyncState)
        .where(SyncState.id == lease.state_id, SyncState.lease_owner == lease.owner)
        .values(lease_owner=None, lease_until=None, lease_since=None)
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


def release_all(session: Session, owner: str) -> int:
    """Give back every source `owner` holds (a stopping worker); how many there were."""
    result = session.execute(
        update(SyncState)
        .where(SyncState.lease_owner == owner)
        .values(lease_owner=None, lease_until=None, lease_since=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- the balance of an athlete: one worker evaluates it ----------------------------------


def claim_balance(session: Session, athlete_id: int, *, wait: bool) -> bool:
    """Take the right to evaluate the athlete's balance until the transaction ends.

    On PostgreSQL a transaction-scoped advisory lock: with `wait` False another worker
    evaluating the same athlete makes this return False at once. On SQLite the writing
    session already excludes every other writer: always True.
    """
    if session.get_bind().dialect.name != "postgresql":
        return True
    fn = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
    got = session.scalar(
        text(f"SELECT {fn}(:space, :athlete)"),
        {"space": _BALANCE_LOCK_SPACE, "athlete": athlete_id},
    )
    return wait or bool(got)


def busy_elsewhere(session: Session, athlete_id: int, owner: str, now: datetime) -> bool:
    """True while another live worker holds a lease on one of the athlete's sources: it is
    mid-sync and evaluates the balance itself once done (never on half an import)."""
    stmt = select(
        exists().where(
            SyncState.athlete_id == athlete_id,
            SyncState.lease_owner.is_not(None),
            SyncState.lease_owner != owner,
            SyncState.lease_until > now,
        )
    )
    return bool(session.scalar(stmt))


def balance_due(session: Session, athlete_id: int, now: datetime, every: timedelta) -> bool:
    """True when the athlete's balance was never evaluated, is older than `every`, or an
    activity of the athlete changed since it was evaluated."""
    evaluated = session.scalar(
        select(BalanceState.evaluated_at).where(BalanceState.athlete_id == athlete_id)
    )
    if evaluated is None or now - evaluated >= every:
        return True
    changed = session.scalar(
        select(func.count())
        .select_from(ActivityRow)
        .where(ActivityRow.athlete_id == athlete_id, ActivityRow.updated_at > evaluated)
    )
    return bool(changed)


# --- SQLite: one `hillsync run` per database file ----------------------------------------


def sqlite_run_lock_path(database: str) -> Path | None:
    """The lock file beside a SQLite database file (None for an in-memory database)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).expanduser()
    return path.with_name(path.name + ".run-lock")


@contextmanager
def run_lock(path: Path | None, owner: str) -> Iterator[None]:
    """Hold the lock that lets one `hillsync run` at a time work on a SQLite database.

    SQLite has one writer at a time, so a second worker would add nothing but contention:
    it is refused rather than left waiting as a standby, so that a misconfigured second
    service fails visibly instead of looking healthy while doing nothing; systemd restarts
    the one service anyway. The kernel drops the lock when the process dies (even by
    SIGKILL), so a crash never leaves it stale. `hillsync sync` does not take it: its
    source leases keep it off the sources the daemon is syncing.
    Raises StoreError naming the worker that holds it.
    """
    if path is None:
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot create the lock file {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise StoreError(
                f"another `hillsync run` ({holder}) already works on this SQLite database;"
                " SQLite takes one worker: stop the other one, or use PostgreSQL"
                " ([database] url) to run several workers"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner.encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
