"""One rate budget per API application, shared by every athlete and worker that uses it.

Strava counts requests per application (client id), not per athlete: 100 reads per quarter
hour and 1,000 per UTC day by default, 200 and 2,000 for all requests together. Each
budget (`read`, `overall`) of an application is one row, locked while a worker takes
requests from it, so that the requests granted by every worker together never exceed what
is left. The figures Strava reports with its answers (which also count requests made
elsewhere) raise the count; windows reset at the quarter hour and at UTC midnight.

A reserve of each window is never granted to syncing: it is kept for webhooks and for
interactive connects, which pass `reserve` 0 (section 10 of DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hillsync.store.tables import ApiBudget, SyncState

#: Strava's documented default limits (short, long) until its headers say otherwise.
STRAVA_LIMITS: Mapping[str, tuple[int, int]] = {"read": (100, 1000), "overall": (200, 2000)}


@dataclass(frozen=True)
class Reserve:
    """Requests of each window kept back from syncing (for webhooks and connects)."""

    short: int = 5
    long: int = 50


NO_RESERVE = Reserve(0, 0)


@dataclass(frozen=True)
class Grant:
    """Requests granted; when none was, until when the application is parked and why."""

    granted: int
    resume_at: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Usage:
    """One budget of an application as the store counts it now."""

    scope: str
    short_used: int
    short_limit: int
    long_used: int
    long_limit: int
    parked_until: datetime | None
    reported_at: datetime | None


def strava_app(client_id: int | str) -> str:
    """The name under which a Strava application's budget is stored."""
    return f"strava:{client_id}"


def scopes_of(method: str) -> tuple[str, ...]:
    """The budgets a request of `method` counts against (Strava: reads are GETs)."""
    return ("overall", "read") if method.upper() == "GET" else ("overall",)


def quarter_start(now: datetime) -> datetime:
    """The start of the quarter hour holding `now` (Strava's short window)."""
    now = now.astimezone(UTC)
    return now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)


def day_start(now: datetime) -> datetime:
    """The start of the UTC day holding `now` (Strava's long window)."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _insert_ignoring_conflicts(dialect: str) -> Callable[[type[ApiBudget]], Any]:
    """The dialect's own INSERT (it has ON CONFLICT), imported for the one in use only: an
    idle daemon on SQLite never loads PostgreSQL's dialect."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _rows(
    session: Session,
    app: str,
    scopes: Collection[str],
    now: datetime,
    limits: Mapping[str, tuple[int, int]],
) -> list[ApiBudget]:
    """The application's budget rows, created when new, locked, windows rolled to `now`.

    Always locked in the same (sorted) order, so two workers cannot deadlock.
    """
    wanted = sorted(scopes)
    insert = _insert_ignoring_conflicts(session.get_bind().dialect.name)
    for scope in wanted:
        short, long = limits.get(scope, STRAVA_LIMITS.get(scope, (100, 1000)))
        # ON CONFLICT DO NOTHING: two workers meeting a new application both go on.
        session.execute(
            insert(ApiBudget)
            .values(
                app=app,
                scope=scope,
                window_start=quarter_start(now),
                day_start=day_start(now),
                short_used=0,
                long_used=0,
                short_reported=0,
                long_reported=0,
                short_limit=short,
                long_limit=long,
            )
            .on_conflict_do_nothing()
        )
    stmt = (
        select(ApiBudget)
        .where(ApiBudget.app == app, ApiBudget.scope.in_(wanted))
        .order_by(ApiBudget.scope)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    rows = list(session.scalars(stmt))
    for row in rows:
        if row.window_start != quarter_start(now):
            row.window_start = quarter_start(now)
            row.short_used = row.short_reported = 0
        if row.day_start != day_start(now):
            row.day_start = day_start(now)
            row.long_used = row.long_reported = 0
        if row.parked_until is not None and row.parked_until <= now:
            row.parked_until = None
    return rows


def acquire(
    session: Session,
    app: str,
    *,
    method: str,
    want: int,
    now: datetime,
    reserve: Reserve = Reserve(),
    limits: Mapping[str, tuple[int, int]] = STRAVA_LIMITS,
) -> Grant:
    """Take up to `want` requests of `method` from the application's budget.

    Grants what every budget the request counts against has left above `reserve`; when
    that is nothing, the application is parked until the spent window resets and the
    Grant says until when. A parked application grants syncing nothing; requests with
    NO_RESERVE (a webhook, a connect) may still take the reserve. Commit the session to
    make the grant count for other workers.
    """
    rows = _rows(session, app, scopes_of(method), now, limits)
    if reserve != NO_RESERVE:
        for row in rows:
            if row.parked_until is not None:
                return Grant(0, row.parked_until, f"strava's {row.scope} budget is spent")
    granted = want
    for row in rows:
        granted = min(
            granted,
            row.short_limit - reserve.short - row.short_used,
            row.long_limit - reserve.long - row.long_used,
        )
    if granted > 0:
        for row in rows:
            row.short_used += granted
            row.long_used += granted
        session.flush()
        return Grant(granted)
    resume, reason = _spent(rows, now, reserve)
    for row in rows:
        row.parked_until = resume
    session.flush()
    return Grant(0, resume, reason)


def _spent(rows: list[ApiBudget], now: datetime, reserve: Reserve) -> tuple[datetime, str]:
    for row in rows:
        if row.long_used >= row.long_limit - reserve.long:
            resume = day_start(now) + timedelta(days=1)
            return resume, (
                f"strava's daily {row.scope} budget is spent ({row.long_used}/{row.long_limit}):"
                f" paused until {resume:%Y-%m-%d %H:%M} UTC"
            )
    row = next(r for r in rows if r.short_used >= r.short_limit - reserve.short)
    resume = quarter_start(now) + timedelta(minutes=15)
    return resume, (
        f"strava's 15-minute {row.scope} budget is spent ({row.short_used}/{row.short_limit}):"
        f" paused until {resume:%H:%M} UTC"
    )


def give_back(
    session: Session, app: str, *, method: str, unused: int, granted_at: datetime, now: datetime
) -> None:
    """Return requests granted at `granted_at` that were not made: only into the windows
    they were granted in, and never below what the API reported."""
    if unused <= 0:
        return
    for row in _rows(session, app, scopes_of(method), now, STRAVA_LIMITS):
        if row.window_start == quarter_start(granted_at):
            row.short_used = max(row.short_reported, row.short_used - unused)
        if row.day_start == day_start(granted_at):
            row.long_used = max(row.long_reported, row.long_used - unused)
    session.flush()


def report(
    session: Session,
    app: str,
    rates: Mapping[str, tuple[int, int, int, int]],
    *,
    at: datetime,
    now: datetime,
) -> None:
    """Merge what the API reported at `at`: {scope: (15-min used, daily used, 15-min limit,
    daily limit)}. Its counts include requests made elsewhere: they raise the store's."""
    if not rates:
        return
    for row in _rows(session, app, rates, now, STRAVA_LIMITS):
        short_used, long_used, short_limit, long_limit = rates[row.scope]
        if short_limit > 0 and long_limit > 0:
            row.short_limit, row.long_limit = short_limit, long_limit
        if quarter_start(at) == row.window_start:
            row.short_reported = max(row.short_reported, short_used)
            row.short_used = max(row.short_used, short_used)
        if day_start(at) == row.day_start:
            row.long_reported = max(row.long_reported, long_used)
            row.long_used = max(row.long_used, long_used)
        if row.reported_at is None or at > row.reported_at:
            row.reported_at = at
    session.flush()


def park(session: Session, app: str, *, until: datetime, now: datetime) -> None:
    """Park the application until `until` (the API answered 429: its budget is spent)."""
    for row in _rows(session, app, STRAVA_LIMITS, now, STRAVA_LIMITS):
        if row.parked_until is None or row.parked_until < until:
            row.parked_until = until
    session.flush()


def parked_until(session: Session, app: str, now: datetime) -> datetime | None:
    """Until when the application is parked, or None (read only, no lock)."""
    value = session.scalar(
        select(ApiBudget.parked_until)
        .where(ApiBudget.app == app, ApiBudget.parked_until > now)
        .order_by(ApiBudget.parked_until.desc())
        .limit(1)
    )
    return value


def usage(session: Session, app: str, now: datetime) -> list[Usage]:
    """The application's budgets as counted now, by scope (read only)."""
    out: list[Usage] = []
    rows = session.scalars(select(ApiBudget).where(ApiBudget.app == app).order_by(ApiBudget.scope))
    for row in rows:
        same_quarter = row.window_start == quarter_start(now)
        same_day = row.day_start == day_start(now)
        out.append(
            Usage(
                scope=row.scope,
                short_used=row.short_used if same_quarter else 0,
                short_limit=row.short_limit,
                long_used=row.long_used if same_day else 0,
                long_limit=row.long_limit,
                parked_until=row.parked_until
                if row.parked_until is not None and row.parked_until > now
                else None,
                reported_at=row.reported_at,
            )
        )
    return out


def park_sources(
    session: Session,
    names: Collection[str],
    *,
    until: datetime,
    error: str,
    owner: str,
    now: datetime,
) -> list[str]:
    """Park these sources (an application's) as rate-limited until `until`.

    A source waiting for re-authentication, already parked as long, or leased by another
    live worker (which meets the spent budget at its next request) is left alone.
    Returns the names parked.
    """
    if not names:
        return []
    stmt = select(SyncState).where(
        SyncState.name.in_(list(names)),
        SyncState.state != "needs_auth",
        or_(SyncState.next_sync.is_(None), SyncState.next_sync < until),
        or_(
            SyncState.lease_owner.is_(None),
            SyncState.lease_owner == owner,
            SyncState.lease_until.is_(None),
            SyncState.lease_until <= now,
        ),
    )
    parked: list[str] = []
    for row in session.scalars(stmt.with_for_update(skip_locked=True)):
        row.state = "rate_limited"
        row.next_sync = until
        row.last_error = error
        parked.append(row.name)
    session.flush()
    return sorted(parked)
