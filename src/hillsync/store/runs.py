"""Deduplication: one run, however many sources saw it.

Garmin uploads to Strava, so one run arrives as a Garmin activity and a Strava activity
(in either order). They are one run when the Strava `external_id` names the Garmin id, or
when two activities of the same athlete start within 120 s with distances within 5 %. The
run's figures come from its best activity (FIT file > Garmin > Strava), so the final runs
do not depend on which source arrived first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hillsync.store.tables import ActivityRow, Run

MATCH_WINDOW = timedelta(seconds=120)
DISTANCE_TOLERANCE = 0.05
#: Elevation quality by source, best first; anything else ranks last.
ELEVATION_RANK: dict[str, int] = {"file": 0, "garmin": 1, "strava": 2}
_GARMIN_EXTERNAL = re.compile(r"^garmin_(?:ping|push)_(\d+)")


def garmin_id_of(external_id: str | None) -> str | None:
    """The Garmin activity id a Strava `external_id` names (None when it names none)."""
    if not external_id:
        return None
    match = _GARMIN_EXTERNAL.match(external_id)
    return match.group(1) if match else None


def _distances_match(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return False
    biggest = max(abs(a), abs(b))
    if biggest == 0:
        return True
    return abs(a - b) <= DISTANCE_TOLERANCE * biggest


def _best_key(row: ActivityRow) -> tuple[int, datetime, int]:
    return (ELEVATION_RANK.get(row.elevation_source, len(ELEVATION_RANK)), row.created_at, row.id)


def best_activity(members: Iterable[ActivityRow]) -> ActivityRow | None:
    """The activity whose figures a run carries (best elevation source, then the oldest)."""
    return min(members, key=_best_key, default=None)


def _live(rows: Iterable[ActivityRow]) -> list[ActivityRow]:
    return [r for r in rows if r.deleted_at is None and r.is_run]


def _candidate_runs(session: Session, row: ActivityRow) -> set[int]:
    """Ids of the runs `row` belongs with (excluding its own)."""
    linked = ActivityRow.run_id.is_not(None), ActivityRow.deleted_at.is_(None)
    same = (ActivityRow.athlete_id == row.athlete_id, ActivityRow.id != row.id, *linked)
    runs: set[int] = set()
    garmin_id = garmin_id_of(row.external_id)
    if garmin_id is not None:
        stmt = select(ActivityRow.run_id).where(
            *same, ActivityRow.source_kind == "garmin", ActivityRow.source_id == garmin_id
        )
        runs.update(r for r in session.scalars(stmt) if r is not None)
    if row.source_kind == "garmin":
        prefixes = (f"garmin_ping_{row.source_id}", f"garmin_push_{row.source_id}")
        by_external = select(ActivityRow.run_id, ActivityRow.external_id).where(
            *same, or_(*(ActivityRow.external_id.startswith(p) for p in prefixes))
        )
        for run_id, external_id in session.execute(by_external):
            # The prefix also matches longer ids (123 vs 1234): check the id itself.
            if run_id is not None and garmin_id_of(external_id) == row.source_id:
                runs.add(run_id)
    if row.distance_m is not None:
        near = select(ActivityRow.run_id, ActivityRow.distance_m).where(
            *same,
            ActivityRow.start_time >= row.start_time - MATCH_WINDOW,
            ActivityRow.start_time <= row.start_time + MATCH_WINDOW,
        )
        for run_id, distance in session.execute(near):
            if run_id is not None and _distances_match(row.distance_m, distance):
                runs.add(run_id)
    if row.run_id is not None:
        runs.discard(row.run_id)
    return runs


def attach(session: Session, row: ActivityRow) -> Run:
    """Put a (flushed) run activity into its run: an existing one it matches, or a new one.

    When the activity matches several runs (it bridges them), they are merged into one.
    """
    session.flush()
    candidates = _candidate_runs(session, row)
    if row.run_id is not None:
        candidates.add(row.run_id)
    if not candidates:
        run = Run(
            athlete_id=row.athlete_id,
            start_time=row.start_time,
            sport=row.sport,
            label=row.label,
            distance_m=row.distance_m or 0.0,
        )
        session.add(run)
        row.run = run
        session.flush()
        refresh(session, run)
        return run
    keep_id = min(candidates)
    keep = session.get_one(Run, keep_id)
    row.run = keep
    for other_id in sorted(candidates - {keep_id}):
        other = session.get_one(Run, other_id)
        for member in list(other.activities):
            member.run = keep
        session.flush()
        session.delete(other)
    session.flush()
    refresh(session, keep)
    return keep


def attach_new(session: Session, row: ActivityRow) -> Run:
    """Put a new run activity, not yet added to the session, into its run, and add it.

    When it matches no run, which is the common case, its new run is made from its own
    figures and inserted just before it, so the activity needs no update afterwards:
    three statements where `attach` needs six. Otherwise it is `attach`.
    """
    candidates = _candidate_runs(session, row)
    if candidates:
        session.add(row)
        return attach(session, row)
    run = Run(athlete_id=row.athlete_id)
    _carry(run, [row])
    row.run = run
    session.add(row)
    return run


def detach(session: Session, row: ActivityRow) -> None:
    """Take an activity out of its run; a run left without activities is deleted."""
    run = row.run
    if run is None:
        return
    row.run = None
    session.flush()
    session.refresh(run, ["activities"])
    if not _live(run.activities):
        for member in list(run.activities):
            member.run = None
        session.flush()
        session.delete(run)
        session.flush()
    else:
        refresh(session, run)


def refresh(session: Session, run: Run) -> None:
    """Copy the figures of the run's best activity onto the run."""
    session.flush()
    session.refresh(run, ["activities"])
    members = _live(run.activities)
    if members:
        _carry(run, members)


def _carry(run: Run, members: list[ActivityRow]) -> None:
    """Copy the figures of the best of `members` (live run activities) onto `run`."""
    best = min(members, key=_best_key)
    run.start_time = best.start_time
    run.sport = best.sport
    run.label = best.label
    run.distance_m = best.distance_m if best.distance_m is not None else 0.0
    run.moving_time_s = best.moving_time_s
    if run.moving_time_s is None:
        run.moving_time_s = next(
            (m.moving_time_s for m in sorted(members, key=_best_key) if m.moving_time_s), None
        )
    run.elevation_gain_m = best.elevation_gain_m
    run.elevation_loss_m = best.elevation_loss_m
    run.uphill_m = best.uphill_m
    run.downhill_m = best.downhill_m
    run.flat_m = best.flat_m
    run.label_elevation_source = best.label_elevation_source
    run.label_reason = best.label_reason
    run.hill_repeats = best.hill_repeats
