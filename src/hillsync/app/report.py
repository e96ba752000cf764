"""`hillsync report`: the weekly terrain volume chart with the goal band."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hillsync.app.context import AppContext
from hillsync.errors import UsageError


def write_report(ctx: AppContext, athlete: str | None, weeks: int, out: Path) -> Path:
    """Write the last `weeks` weeks' chart of the athlete to `out` (.html or .png).

    Raises UsageError for fewer than 1 week or an unknown athlete, StoreError.
    """
    from hillsync.report import render_report, weekly_volumes
    from hillsync.store import repo

    if weeks < 1:
        raise UsageError("--weeks must be 1 or more")
    settings = ctx.athlete(athlete)
    now = ctx.clock()
    with ctx.db.session(readonly=True) as session:
        runs = repo.runs_for_balance(session, settings.name, now - timedelta(weeks=weeks + 1), now)
    render_report(weekly_volumes(runs, weeks, now), settings.goal.goal(), out)
    return out
