"""Read-only queries behind the web pages and the report: runs with their best activity.

A run's name, elevation source and label reason come from its best activity (the one whose
figures the run carries, see `runs.refresh`); a run page also needs that activity's stored
10 m profile.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from hillsync.model import Profile
from hillsync.store import runs as dedupe
from hillsync.store.codec import decode_profile
from hillsync.store.tables import (
    Account,
    ActivityRow,
    Athlete,
    PushSubscription,
    Run,
    ShareLink,
    SyncState,
)


@dataclass(frozen=True)
class RunDetail:
    """One deduplicated run with what its best activity says about it."""

    id: int
    athlete: str
    start_time: datetime
    name: str | None
    sport: str
    label: str
    distance_m: float
    moving_time_s: float | None
    elevation_gain_m: float | None
    elevation_loss_m: float | None
    uphill_m: float
    downhill_m: float
    flat_m: float
    elevation_source: str | None
    reason: str | None
    sources: tuple[tuple[str, str], ...]


def _detail(run: Run, athlete: str) -> tuple[RunDetail, ActivityRow | None]:
    members = [a for a in run.activities if a.deleted_at is None and a.is_run]
    best = dedupe.best_activity(members)
    detail = RunDetail(
        id=run.id,
        athlete=athlete,
        start_time=run.start_time,
        name=best.name if best is not None else None,
        sport=run.sport,
        label=run.label,
        distance_m=run.distance_m,
        moving_time_s=run.moving_time_s,
        elevation_gain_m=run.elevation_gain_m,
        elevation_loss_m=run.elevation_loss_m,
        uphill_m=run.uphill_m,
        downhill_m=run.downhill_m,
        flat_m=run.flat_m,
        elevation_source=run.label_elevation_source,
        reason=run.label_reason,
        sources=tuple(sorted((a.source, a.source_id) for a in members)),
    )
    return detail, best


def recent_runs(session: Session, athlete: str, limit: int) -> list[RunDetail]:
    """The athlete's `limit` latest runs, newest first."""
    stmt = (
        select(Run)
        .join(Athlete, Run.athlete_id == Athlete.id)
        .where(Athlete.name == athlete)
        .order_by(Run.start_time.desc(), Run.id.desc())
        .limit(limit)
        .options(selectinload(Run.activities))
    )
    return [_detail(run, athlete)[0] for run in session.scalars(stmt)]


def run_with_profile(
    session: Session, athlete: str, run_id: int
) -> tuple[RunDetail, Profile | None] | None:
    """One run of the athlete and its best activity's stored profile; None when not theirs."""
    stmt = (
        select(Run)
        .join(Athlete, Run.athlete_id == Athlete.id)
        .where(Athlete.name == athlete, Run.id == run_id)
        .options(selectinload(Run.activities))
    )
    run = session.scalar(stmt)
    if run is None:
        return None
    detail, best = _detail(run, athlete)
    if best is None or best.profile is None:
        return detail, None
    distance = best.profile_distance_m or best.distance_m or 0.0
    return detail, decode_profile(best.profile, distance)


def athletes_with_runs(session: Session) -> Sequence[str]:
    """Names of athletes that have at least one run, sorted."""
    stmt = select(Athlete.name).where(Athlete.id.in_(select(Run.athlete_id))).order_by(Athlete.name)
    return list(session.scalars(stmt))


# --- share links ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareLinkView:
    """A read-only link of an athlete (its token is never stored, only its hash)."""

    id: int
    created_at: datetime
    revoked_at: datetime | None


def add_share_link(session: Session, athlete: Athlete, token_hash: str, now: datetime) -> int:
    """Store a new link's token hash; returns its id."""
    link = ShareLink(athlete_id=athlete.id, token_hash=token_hash, created_at=now)
    session.add(link)
    session.flush()
    return link.id


def share_links(session: Session, athlete: str) -> list[ShareLinkView]:
    """The athlete's links, newest first, revoked ones included."""
    stmt = (
        select(ShareLink)
        .join(Athlete, ShareLink.athlete_id == Athlete.id)
        .where(Athlete.name == athlete)
        .order_by(ShareLink.created_at.desc(), ShareLink.id.desc())
    )
    return [ShareLinkView(x.id, x.created_at, x.revoked_at) for x in session.scalars(stmt)]


def revoke_share_link(session: Session, athlete: str, link_id: int, now: datetime) -> bool:
    """Revoke one of the athlete's links; False when it is not theirs or already revoked."""
    stmt = (
        select(ShareLink)
        .join(Athlete, ShareLink.athlete_id == Athlete.id)
        .where(Athlete.name == athlete, ShareLink.id == link_id)
    )
    link = session.scalar(stmt)
    if link is None or link.revoked_at is not None:
        return False
    link.revoked_at = now
    return True


def athlete_of_share(session: Session, token_hash: str) -> str | None:
    """The athlete a live (not revoked) link opens, or None."""
    stmt = (
        select(Athlete.name)
        .join(ShareLink, ShareLink.athlete_id == Athlete.id)
        .where(ShareLink.token_hash == token_hash, ShareLink.revoked_at.is_(None))
    )
    return session.scalar(stmt)


# --- push events ---------------------------------------------------------------------------


def athlete_of_remote(session: Session, kind: str, remote_id: str) -> str | None:
    """The athlete whose connected account of `kind` is the remote athlete `remote_id`."""
    stmt = (
        select(Athlete.name)
        .join(Account, Account.athlete_id == Athlete.id)
        .where(Account.kind == kind, Account.remote_id == remote_id)
    )
    return session.scalar(stmt)


def mark_due(session: Session, source: str, now: datetime) -> bool:
    """Make the source `source` due at `now` (a push event said it has news).

    A source waiting for re-authentication or parked until its rate window resets stays as
    it is; False then, and when the source is unknown (never synced: due anyway).
    """
    state = session.scalar(select(SyncState).where(SyncState.name == source))
    if state is None or state.state in ("needs_auth", "rate_limited"):
        return False
    if state.next_sync is None or state.next_sync > now:
        state.next_sync = now
    return True


def earliest_due(
    session: Session, names: Collection[str], *, owner: str, now: datetime
) -> datetime | None:
    """The soonest `next_sync` of the sources `names` not waiting for re-authentication
    and not held by a worker other than `owner` (that one records their next time).

    One small query: the daemon asks it every few seconds while it sleeps.
    """
    stmt = select(func.min(SyncState.next_sync)).where(
        SyncState.state != "needs_auth",
        SyncState.name.in_(list(names)),
        or_(
            SyncState.lease_owner.is_(None),
            SyncState.lease_until.is_(None),
            SyncState.lease_until <= now,
            SyncState.lease_owner == owner,
        ),
    )
    value = session.scalar(stmt)
    if isinstance(value, str):  # func.min bypasses the column type on SQLite
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


# --- push subscriptions --------------------------------------------------------------------


def save_push_subscription(
    session: Session, client_id: int, subscription_id: int, callback_url: str, now: datetime
) -> None:
    """Remember the application's subscription (one per application)."""
    row = session.get(PushSubscription, client_id)
    if row is None:
        row = PushSubscription(client_id=client_id, created_at=now)
        session.add(row)
    row.subscription_id = subscription_id
    row.callback_url = callback_url
    session.flush()


def forget_push_subscription(session: Session, client_id: int) -> bool:
    """Forget the application's subscription; False when there was none."""
    row = session.get(PushSubscription, client_id)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def push_client_ids(session: Session) -> set[int]:
    """The Strava applications with a push subscription."""
    return set(session.scalars(select(PushSubscription.client_id)))


def push_subscription_ids(session: Session) -> set[int]:
    """The ids of the push subscriptions made here (events of others are not ours)."""
    return set(session.scalars(select(PushSubscription.subscription_id)))
