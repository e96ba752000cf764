"""Deleting what one source of one athlete delivered (Strava's API Agreement).

A run seen by several sources is one run with several activities: deleting one source's
activities takes them out of their runs, a run left with no other activity goes with them,
and a run that keeps another source's activity keeps it and takes its figures from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from hillsync.store import runs as dedupe
from hillsync.store.tables import ActivityRow, Athlete, Run, SeenItem, SyncState

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Deleted:
    """What a deletion removed: activities, runs gone with them, runs kept by another source."""

    activities: int = 0
    runs_deleted: int = 0
    runs_kept: int = 0

    def describe(self, what: str) -> str:
        """One line for the runner, e.g. "deleted 12 Strava activities (10 runs; 2 runs
        also seen from Garmin or a file keep their figures from there)"."""
        text = f"deleted {self.activities} {what} activities ({self.runs_deleted} runs"
        if self.runs_kept:
            text += (
                f"; {self.runs_kept} runs also seen from another source keep their figures"
                " from there"
            )
        return text + ")"


def delete_source_data(
    session: Session, athlete_name: str, kind: str, *, keep_states: bool = False
) -> Deleted:
    """Delete every activity of the athlete's sources of `kind` and their sync states.

    With `keep_states` (access revoked: the source stays, parked in needs_auth) the sync
    states stay with their state and error, their cursors and seen items emptied.

    Runs that only these activities made are deleted; runs that other sources saw too stay
    with those sources' activities and figures. Nothing is committed here. Raises nothing
    of its own (the database's errors pass through).
    """
    athlete = session.scalar(select(Athlete).where(Athlete.name == athlete_name))
    if athlete is None:
        return Deleted()
    rows = list(
        session.scalars(
            select(ActivityRow).where(
                ActivityRow.athlete_id == athlete.id, ActivityRow.source_kind == kind
            )
        )
    )
    touched = {row.run_id for row in rows if row.run_id is not None}
    for row in rows:
        dedupe.detach(session, row)
        session.delete(row)
    session.flush()
    kept = sum(1 for run_id in touched if session.get(Run, run_id) is not None)
    for state in session.scalars(
        select(SyncState).where(SyncState.athlete_id == athlete.id, SyncState.kind == kind)
    ):
        # Its cursor and seen items describe deleted data: a reconnect starts afresh.
        if keep_states:
            state.cursor = {}
            for item in session.scalars(select(SeenItem).where(SeenItem.sync_state_id == state.id)):
                session.delete(item)
        else:
            session.delete(state)
    session.flush()
    result = Deleted(activities=len(rows), runs_deleted=len(touched) - kept, runs_kept=kept)
    log.info(
        "source_data_deleted",
        athlete=athlete_name,
        kind=kind,
        activities=result.activities,
        runs_deleted=result.runs_deleted,
        runs_kept=result.runs_kept,
    )
    return result
