"""Read-only queries behind the web pages and the report: runs with their best activity.

A run's name, elevation source and label reason come from its best activity (the one whose
figures the run carries, see `runs.refresh`); a run page also needs that activity's stored
10 m profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from hillsync.model import Profile
from hillsync.store import runs as dedupe
from hillsync.store.codec import decode_profile
from hillsync.store.tables import ActivityRow, Athlete, Run


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
    inputs = best.classify_inputs if best is not None else {}
    reason = inputs.get("reason") if isinstance(inputs, dict) else None
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
        elevation_source=best.elevation_source if best is not None else None,
        reason=str(reason) if reason else None,
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
