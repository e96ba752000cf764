"""Evaluates an athlete's balance and writes the warnings it causes to the outbox.

Everything happens in the caller's session: the new balance state and the message it
causes are committed together by the caller, so a crash never loses a warning nor sends
one twice.

insufficient_data keeps the last real state: the stored status, its `since` and the
reminder clock (`last_warned_at`) are left as they were, only the report and the time of
evaluation change. So a few quiet weeks (injury, holiday) neither send a "back in balance"
nor restart a warning: once there is data again, hysteresis works from the last real state,
and a warning that still holds is reminded as soon as `remind_days` have passed since the
last message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session

from hillsync.balance import (
    WARNING_STATES,
    evaluate,
    needs_auth_message,
    ramp_message,
    reminder_message,
    report_as_json,
    warning_message,
)
from hillsync.model import (
    BalanceReport,
    BalanceStatus,
    CourseTargets,
    Goal,
    Message,
    RunForBalance,
    SyncStatus,
)
from hillsync.staleness import Stale
from hillsync.store import outbox
from hillsync.store.tables import OutboxMessage

log = structlog.get_logger(__name__)


def evaluate_athlete(
    session: Session,
    athlete_id: int,
    athlete: str,
    goal: Goal,
    *,
    remind_days: int,
    url_keys: Sequence[str],
    now: datetime,
    runs: Sequence[RunForBalance],
    course: CourseTargets | None = None,
) -> BalanceReport:
    """Evaluate the balance at `now`, store the state, enqueue at most one message.

    A message is enqueued when a warning state is entered, every `remind_days` while it
    holds (0 or less: never), and when the status returns to ok from a warning. Nothing is
    committed. Raises ValueError for a naive `now`, SQLAlchemy errors from the session.
    """
    state = outbox.get_balance_state(session, athlete_id, for_update=True)
    previous = BalanceStatus.stored(state.status) if state is not None else None
    report = evaluate(runs, goal, athlete=athlete, at=now, previous=previous, course=course)
    as_json = report_as_json(report)
    status = report.status

    message: Message | None = None
    since = now
    last_warned = None
    if state is not None and (status is BalanceStatus.INSUFFICIENT_DATA or status is previous):
        since = state.since
        last_warned = state.last_warned_at
        stored_status = state.status
        if status is previous and status in WARNING_STATES:
            due = remind_days > 0 and (
                last_warned is None or now - last_warned >= timedelta(days=remind_days)
            )
            if due:
                message = reminder_message(report)
                last_warned = now
    else:
        stored_status = status.value
        message = warning_message(report, previous)
        if status in WARNING_STATES:
            last_warned = now

    outbox.set_balance_state(
        session,
        athlete_id,
        status=stored_status,
        since=since,
        evaluated_at=now,
        last_warned_at=last_warned,
        report=as_json,
    )
    if message is not None:
        outbox.enqueue(session, message, athlete_id=athlete_id, url_keys=url_keys, now=now)
        log.info(
            "balance_message",
            athlete=athlete,
            kind=message.kind,
            status=status.value,
            previous=previous.value if previous else None,
        )
    _enqueue_ramp(session, athlete_id, report, url_keys=url_keys, now=now)
    return report


def _enqueue_ramp(
    session: Session,
    athlete_id: int,
    report: BalanceReport,
    *,
    url_keys: Sequence[str],
    now: datetime,
) -> None:
    """The downhill ramp warning, at most once per athlete and ISO week."""
    ramp = ramp_message(report)
    week = report.downhill_week
    if ramp is None or week is None:
        return
    iso = week.week_start.isocalendar()
    period = f"{iso.year}-W{iso.week:02d}"
    enqueue_once(session, athlete_id, ramp, period, url_keys=url_keys, now=now)


def enqueue_needs_auth(
    session: Session,
    athlete_id: int,
    athlete: str,
    source: str,
    command: str,
    url_keys: Sequence[str],
    now: datetime,
    *,
    previous_state: SyncStatus | None = None,
) -> OutboxMessage | None:
    """Enqueue "reconnect this account" once per episode.

    `previous_state` is the source's sync state before this poll: the message is enqueued
    only when it was not already `needs_auth`, so polling a revoked account again and again
    sends one message. A caller that checked this itself passes nothing.
    Returns the message, or None when none was due. Nothing is committed.
    """
    if previous_state == SyncStatus.NEEDS_AUTH:
        return None
    message = needs_auth_message(source, command, athlete)
    row = outbox.enqueue(session, message, athlete_id=athlete_id, url_keys=url_keys, now=now)
    log.info("needs_auth_message", athlete=athlete, source=source)
    return row


def enqueue_once(
    session: Session,
    athlete_id: int,
    message: Message,
    period: str,
    *,
    url_keys: Sequence[str],
    now: datetime,
) -> bool:
    """Enqueue `message` unless a message of its kind was enqueued for `period` already.

    The mark and the message commit together (the caller's transaction), so it is sent once
    per period, also across restarts and with several workers. Returns whether it was
    enqueued. Nothing is committed.
    """
    if not outbox.mark_once(session, athlete_id, message.kind, period, now):
        return False
    outbox.enqueue(session, message, athlete_id=athlete_id, url_keys=url_keys, now=now)
    log.info("weekly_message", athlete=message.athlete, kind=message.kind, period=period)
    return True


def stale_message(athlete: str, source: str, stale: Stale) -> Message:
    """ "Your SOURCE has been silent": once per silence."""
    return Message(
        kind="stale",
        title=f"hillsync: no runs from {source} for {stale.silent.days} days",
        body=stale.describe(source) + ".",
        athlete=athlete,
    )


def enqueue_stale(
    session: Session,
    athlete_id: int,
    athlete: str,
    source: str,
    stale: Stale,
    url_keys: Sequence[str],
    now: datetime,
) -> OutboxMessage:
    """Enqueue the silent-source message (the caller makes sure it is once per silence).
    Nothing is committed."""
    row = outbox.enqueue(
        session, stale_message(athlete, source, stale), athlete_id=athlete_id, url_keys=url_keys,
        now=now,
    )  # fmt: skip
    log.info("stale_message", athlete=athlete, source=source, days=stale.silent.days)
    return row
