"""`hillsync report`: the weekly terrain volume chart with the goal band."""

from __future__ import annotations

from pathlib import Path

from hillsync.app.context import AppContext
from hillsync.errors import UsageError


def write_report(ctx: AppContext, athlete: str | None, weeks: int, out: Path) -> Path:
    """Write the athlete's dashboard over the last `weeks` weeks to `out` (.html or .png).

    Raises UsageError for fewer than 1 week, an unknown athlete or another suffix,
    StoreError, HillsyncError when the file cannot be written.
    """
    from hillsync.app.dashboard import build_dashboard
    from hillsync.report import render_report

    if weeks < 1:
        raise UsageError("--weeks must be 1 or more")
    render_report(build_dashboard(ctx, athlete, weeks=weeks), out)
    return out
