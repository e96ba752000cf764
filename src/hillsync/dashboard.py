"""The dashboard use case: what one athlete's page (and `report`) shows, read from the store.

Read-only: nothing is written, no warning is raised. The balance applies the stored warning
state's hysteresis, as `hillsync balance` does for now.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hillsync.balance import evaluate, history_start
from hillsync.config import AthleteSettings
from hillsync.coursefile import CourseReader
from hillsync.model import BalanceReport, BalanceStatus, ClassifyParams
from hillsync.report import (
    DASHBOARD_WEEKS,
    Dashboard,
    RunRow,
    rolling_shares,
    weekly_volumes,
)

#: Runs listed on the dashboard.
RECENT_RUNS = 20


def current_balance(
    db: Any,
    athlete: AthleteSettings,
    at: datetime,
    *,
    with_state: bool = True,
    params: ClassifyParams | None = None,
) -> BalanceReport:
    """The balance as of `at`, without writing any state or warning.

    `with_state` applies the stored warning state's hysteresis: right for now, wrong for a
    past date, when another state may have been in force. The race course (`[goal] course`)
    is measured with `params` (the [classify] thresholds). Raises StoreError.
    """
    from hillsync.store import outbox, repo

    goal = athlete.goal.goal()
    with db.session() as session:
        row = repo.ensure_athlete(session, athlete.name)
        state = outbox.get_balance_state(session, row.id)
        previous = BalanceStatus(state.status) if state is not None and with_state else None
        runs = repo.runs_for_balance(session, athlete.name, history_start(goal, at), at)
    course = CourseReader(params or ClassifyParams()).targets(athlete.goal.course, goal, at.date())
    return evaluate(runs, goal, athlete=athlete.name, at=at, previous=previous, course=course)


def build_dashboard(
    db: Any,
    athlete: AthleteSettings,
    at: datetime,
    *,
    weeks: int = DASHBOARD_WEEKS,
    days: int | None = None,
    recent: int = RECENT_RUNS,
) -> Dashboard:
    """One athlete's dashboard as of `at`: balance, rolling shares, weekly km, recent runs.

    `days` of rolling share default to the span of `weeks`. Raises StoreError, ValueError
    for weeks < 1.
    """
    from hillsync.store import pages, repo

    goal = athlete.goal.goal()
    report = current_balance(db, athlete, at)
    span = max(timedelta(weeks=weeks + 1), timedelta(days=(days or 0) + goal.window_days + 1))
    with db.session(readonly=True) as session:
        runs = repo.runs_for_balance(session, athlete.name, at - span, at)
        details = pages.recent_runs(session, athlete.name, recent)
    if runs:
        # A long --weeks on a short history: start at the first run's week, not years before.
        history = (at - runs[0].start_time).days // 7 + 1
        weeks = max(1, min(weeks, max(history, 4)))
    days = days or weeks * 7
    return Dashboard(
        athlete=athlete.name,
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
