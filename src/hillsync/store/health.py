"""What the store knows of a source's health beyond its sync state: its runs' rhythm."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from hillsync.store.tables import ActivityRow, SyncState

#: Enough runs to learn a rhythm from, newest first.
_RHYTHM_RUNS = 200


def run_starts(session: Session, state: SyncState) -> list[datetime]:
    """Start times of the newest runs this source delivered (deleted ones not counted)."""
    stmt = (
        select(ActivityRow.start_time)
        .where(
            # The athlete too: its (athlete, start) index then yields the newest first,
            # and the scan stops after the limit (a quiet poll of 10,000 runs asks this).
            ActivityRow.athlete_id == state.athlete_id,
            ActivityRow.sync_state_id == state.id,
            ActivityRow.is_run.is_(True),
            ActivityRow.deleted_at.is_(None),
        )
        .order_by(ActivityRow.start_time.desc())
        .limit(_RHYTHM_RUNS)
    )
    return list(session.scalars(stmt))
