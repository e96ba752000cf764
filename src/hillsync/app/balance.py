"""`hillsync balance`: the hill balance of one athlete, as of now or a past day."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from hillsync.app.context import AppContext
from hillsync.balance import evaluate, history_start
from hillsync.model import BalanceReport, CourseTargets, Goal


def end_of_day(day: date) -> datetime:
    """The last instant of `day` in UTC, so `--at 2026-11-29` includes that day's runs."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC) - timedelta(
        microseconds=1
    )


def current_balance(
    ctx: AppContext,
    athlete: str | None,
    at: date | None = None,
    *,
    now: datetime | None = None,
) -> BalanceReport:
    """The athlete's balance now (`now`, else the clock) or at the end of the past day
    `at`, writing nothing.

    Now, the stored warning state's hysteresis applies (the status the warnings use); for a
    past day it does not, since another state may have been in force then. Raises
    UsageError for an unknown athlete, StoreError when the database fails.
    """
    from hillsync.store import outbox, repo

    settings = ctx.athlete(athlete)
    when = end_of_day(at) if at is not None else (now or ctx.clock())
    goal = settings.goal.goal()
    with ctx.db.session() as session:
        row = repo.ensure_athlete(session, settings.name)
        previous = outbox.previous_status(session, row.id) if at is None else None
        runs = repo.runs_for_balance(session, settings.name, history_start(goal, when), when)
    course = course_targets(ctx, settings.goal.course, goal, when)
    return evaluate(runs, goal, athlete=settings.name, at=when, previous=previous, course=course)


def course_targets(
    ctx: AppContext, path: Path | None, goal: Goal, when: datetime
) -> CourseTargets | None:
    """The race course's targets for `goal` on `when`'s day (None without a readable course).

    The course file is read with the [classify] thresholds; an unreadable one is logged and
    left out (the profile's band applies).
    """
    if path is None:
        return None
    from hillsync.coursefile import CourseReader

    return CourseReader(ctx.settings.classify).targets(path, goal, when.date())
