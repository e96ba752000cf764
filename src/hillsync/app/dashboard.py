"""The dashboard use case: what one athlete's page (and `hillsync report`) shows, from the store.

Read-only: nothing is written, no warning is raised. The balance applies the stored warning
state's hysteresis, as `hillsync balance` does for now.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hillsync.app.balance import current_balance
from hillsync.app.context import AppContext
from hillsync.report import (
    DASHBOARD_WEEKS,
    Dashboard,
    RunRow,
    rolling_shares,
    weekly_volumes,
)

#: Runs listed on the dashboard.
RECENT_RUNS = 20


def build_dashboard(
    ctx: AppContext,
    athlete: str | None,
    at: datetime | None = None,
    *,
    weeks: int = DASHBOARD_WEEKS,
    days: int | None = None,
    recent: int = RECENT_RUNS,
) -> Dashboard:
    """One athlete's dashboard as of `at` (now for None): balance, rolling shares, weekly
    km, recent runs.

    `days` of rolling share default to the span of `weeks`. Raises UsageError for an
    unknown athlete, StoreError, ValueError for weeks < 1.
    """
    from hillsync.store import pages, repo

    settings = ctx.athlete(athlete)
    at = at or ctx.clock()
    goal = settings.goal.goal()
    report = current_balance(ctx, settings.name, now=at)
    span = max(timedelta(weeks=weeks + 1), timedelta(days=(days or 0) + goal.window_days + 1))
    with ctx.db.session(readonly=True) as session:
        runs = repo.runs_for_balance(session, settings.name, at - span, at)
        details = pages.recent_runs(session, settings.name, recent)
    if runs:
        # A long --weeks on a short history: start at the first run's week, not years before.
        history = (at - runs[0].start_time).days // 7 + 1
        weeks = max(1, min(weeks, max(history, 4)))
    days = days or weeks * 7
    return Dashboard(
        athlete=settings.name,
        report=report,
        weeks=weekly_volumes(runs, weeks, at),
        shares=rolling_shares(runs, days, at, goal.window_days),
        recent=[
            RunRow(
                id=r.id,
                start_time=r.start_time,
                name=r.name,
                sport=r.sport,
                label=r.label,
                distance_m=r.distance_m,
                elevation_gain_m=r.elevation_gain_m,
                elevation_loss_m=r.elevation_loss_m,
                elevation_source=r.elevation_source,
                reason=r.reason,
            )
            for r in details
        ],
        generated_at=at,
    )
