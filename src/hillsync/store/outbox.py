"""Queries on the balance state and the notification outbox.

A message is written in the same transaction as the state change that causes it and gets
one delivery row per notification URL; deliveries are sent after commit, each marked on
its own, so a dead URL is retried without re-sending to the others. The URLs themselves
are never stored (they may hold a token): a delivery names its URL by `url_key(url)`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hillsync.model import BalanceStatus, Message
from hillsync.store.tables import BalanceState, OutboxDelivery, OutboxMessage, WeeklyMark

#: Longest error text kept on a delivery.
MAX_ERROR_CHARS = 500


def url_key(url: str) -> str:
    """The sha256 hex digest that names a notification URL in the database."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def get_balance_state(
    session: Session, athlete_id: int, *, for_update: bool = False
) -> BalanceState | None:
    """The athlete's last balance state, or None before the first evaluation.

    `for_update` locks the row (PostgreSQL) so that two workers evaluating the same athlete
    cannot both send the same warning. Raises SQLAlchemy errors only.
    """
    return session.get(BalanceState, athlete_id, with_for_update=for_update)


def previous_status(session: Session, athlete_id: int) -> BalanceStatus | None:
    """The athlete's stored balance status, read tolerantly (`BalanceStatus.stored`): None
    before the first evaluation or for a status this version does not know."""
    state = session.get(BalanceState, athlete_id)
    return BalanceStatus.stored(state.status if state is not None else None)


def set_balance_state(
    session: Session,
    athlete_id: int,
    *,
    status: str,
    since: datetime,
    evaluated_at: datetime,
    last_warned_at: datetime | None,
    report: dict[str, Any] | None,
) -> BalanceState:
    """Insert or update the athlete's balance state (flushed, not committed)."""
    state = session.get(BalanceState, athlete_id)
    if state is None:
        state = BalanceState(athlete_id=athlete_id)
        session.add(state)
    state.status = status
    state.since = since
    state.evaluated_at = evaluated_at
    state.last_warned_at = last_warned_at
    state.report = report
    session.flush()
    return state


def enqueue(
    session: Session,
    message: Message,
    *,
    athlete_id: int | None,
    url_keys: Sequence[str],
    now: datetime,
) -> OutboxMessage:
    """Write a message with one delivery per URL key (flushed, not committed).

    With no URL key the message is "log only": the notifier logs it and marks it done.
    """
    row = OutboxMessage(
        athlete_id=athlete_id,
        kind=message.kind,
        title=message.title,
        body=message.body,
        created_at=now,
        done_at=None,
        attachment=message.attachment,
        attachment_name=message.attachment_name,
    )
    for key in dict.fromkeys(url_keys):  # same URL configured twice: deliver once
        row.deliveries.append(
            OutboxDelivery(url_key=key, attempts=0, next_attempt_at=now, sent_at=None)
        )
    session.add(row)
    session.flush()
    return row


def due_deliveries(
    session: Session, now: datetime, *, limit: int | None = None
) -> list[OutboxDelivery]:
    """Unsent deliveries whose next attempt is due, oldest first."""
    stmt = (
        select(OutboxDelivery)
        .where(OutboxDelivery.sent_at.is_(None), OutboxDelivery.next_attempt_at <= now)
        .order_by(OutboxDelivery.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def next_attempt_at(session: Session, url_keys: Sequence[str]) -> datetime | None:
    """When the earliest unsent delivery to one of these URLs is due (None: nothing to send).

    Deliveries to URLs no longer configured are left out, so that they never wake the loop.
    """
    if not url_keys:
        return None
    return session.scalar(
        select(func.min(OutboxDelivery.next_attempt_at)).where(
            OutboxDelivery.sent_at.is_(None), OutboxDelivery.url_key.in_(list(url_keys))
        )
    )


def claim_delivery(session: Session, delivery_id: int, now: datetime) -> OutboxDelivery | None:
    """Lock one delivery that is still unsent and due, or None if it is not (any more).

    On PostgreSQL the row is locked with SKIP LOCKED, so that with several workers one
    delivery is sent by one of them only; SQLite serialises writers anyway.
    """
    stmt = (
        select(OutboxDelivery)
        .where(
            OutboxDelivery.id == delivery_id,
            OutboxDelivery.sent_at.is_(None),
            OutboxDelivery.next_attempt_at <= now,
        )
        .with_for_update(skip_locked=True)
    )
    return session.scalars(stmt).first()


def log_only_messages(session: Session) -> list[OutboxMessage]:
    """Messages not done that have no delivery at all (no URL was configured)."""
    stmt = (
        select(OutboxMessage)
        .where(OutboxMessage.done_at.is_(None), ~OutboxMessage.deliveries.any())
        .order_by(OutboxMessage.id)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))


def get_delivery(session: Session, delivery_id: int) -> OutboxDelivery:
    """One delivery by id. Raises sqlalchemy.exc.NoResultFound when there is none."""
    return session.get_one(OutboxDelivery, delivery_id)


def orphan_messages(session: Session, url_keys: Sequence[str]) -> list[OutboxMessage]:
    """Messages not done whose every unsent delivery names a URL not in `url_keys`.

    Their URLs were removed from the config: they would otherwise wait forever.
    """
    unsent_to_configured = (
        select(OutboxDelivery.id)
        .where(
            OutboxDelivery.message_id == OutboxMessage.id,
            OutboxDelivery.sent_at.is_(None),
            OutboxDelivery.url_key.in_(list(url_keys)),
        )
        .exists()
    )
    stmt = (
        select(OutboxMessage)
        .where(
            OutboxMessage.done_at.is_(None),
            OutboxMessage.deliveries.any(OutboxDelivery.sent_at.is_(None)),
            ~unsent_to_configured,
        )
        .order_by(OutboxMessage.id)
        # Another worker logging the same message now has it: never log it twice.
        .with_for_update(of=OutboxMessage, skip_locked=True)
    )
    return list(session.scalars(stmt))


def mark_sent(session: Session, delivery: OutboxDelivery, now: datetime) -> None:
    """Mark a delivery sent; the message is done once all its deliveries are."""
    delivery.sent_at = now
    delivery.attempts += 1
    delivery.last_error = None
    session.flush()
    unsent = session.scalar(
        select(func.count())
        .select_from(OutboxDelivery)
        .where(
            OutboxDelivery.message_id == delivery.message_id,
            OutboxDelivery.sent_at.is_(None),
        )
    )
    if not unsent:
        delivery.message.done_at = now
        session.flush()


def mark_failed(
    session: Session, delivery: OutboxDelivery, *, error: str, next_attempt_at: datetime
) -> None:
    """Record a failed attempt and when to try again. `error` must hold no secret."""
    delivery.attempts += 1
    delivery.last_error = error[:MAX_ERROR_CHARS]
    delivery.next_attempt_at = next_attempt_at
    session.flush()


def mark_logged(session: Session, message: OutboxMessage, now: datetime) -> None:
    """Mark a log-only message done."""
    message.done_at = now
    session.flush()


def pending_count(session: Session) -> int:
    """How many messages are not yet delivered everywhere."""
    n = session.scalar(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.done_at.is_(None))
    )
    return int(n or 0)


def all_messages(session: Session) -> list[OutboxMessage]:
    """Every message not done yet, oldest first (the demo's console notifier shows them)."""
    stmt = select(OutboxMessage).where(OutboxMessage.done_at.is_(None)).order_by(OutboxMessage.id)
    return list(session.scalars(stmt))


def mark_all_done(session: Session, now: datetime) -> int:
    """Mark every message not done yet as done (shown elsewhere); returns how many."""
    messages = all_messages(session)
    for message in messages:
        message.done_at = now
    session.flush()
    return len(messages)


def is_marked(session: Session, athlete_id: int, kind: str, period: str) -> bool:
    """Whether `kind` was already done for the athlete in `period` (see `mark_once`)."""
    found = session.scalar(
        select(WeeklyMark.id).where(
            WeeklyMark.athlete_id == athlete_id,
            WeeklyMark.kind == kind,
            WeeklyMark.period == period,
        )
    )
    return found is not None


def mark_once(session: Session, athlete_id: int, kind: str, period: str, now: datetime) -> bool:
    """Record that `kind` was done for the athlete in `period`; False when it already was.

    Call it in the transaction that enqueues the message: the unique (athlete, kind, period)
    makes "once per period" hold across restarts and several workers (on PostgreSQL a
    concurrent insert waits for the other transaction and then fails here).
    """
    if is_marked(session, athlete_id, kind, period):
        return False
    try:
        with session.begin_nested():
            session.add(WeeklyMark(athlete_id=athlete_id, kind=kind, period=period, created_at=now))
    except IntegrityError:
        return False
    return True
