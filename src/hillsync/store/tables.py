"""The tables, as SQLAlchemy 2.x typed declarative classes.

Every row that belongs to an athlete carries `athlete_id`, so many athletes fit without a
rewrite; a source's sync state carries a lease so several workers can share the work later.
Times are stored as timezone-aware UTC (`UtcDateTime`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from hillsync.model import SyncStatus


class UtcDateTime(TypeDecorator[datetime]):
    """A datetime stored as UTC and always read back timezone-aware.

    SQLite has no time zones: without this, values come back naive.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; hillsync uses aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with constraint names that migrations can rely on."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy's documented class attribute
        datetime: UtcDateTime(),
        dict[str, Any]: JSON(),
    }


class Athlete(Base):
    """A runner. The default one is `me`."""

    __tablename__ = "athletes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime]


class Account(Base):
    """A connected remote account (Strava, Garmin) of an athlete.

    `token_path` is where the token file lives (the tokens themselves are never in the
    database); `state` is `connected` or `needs_auth`.
    """

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("athlete_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    athlete_id: Mapped[int] = mapped_column(ForeignKey("athletes.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    remote_id: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20), default="connected")
    token_path: Mapped[str | None] = mapped_column(Text)
    scope: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SyncState(Base):
    """One source's progress and health.

    `name` is the source's full name (`strava`, `folder`, `anna/strava`). `cursor` is the
    source's own JSON progress (including a backfill cursor). `lease_owner` (a worker id,
    host:pid:random), `lease_since` and `lease_until` let one worker at a time claim the
    source (store/leases.py).
    `state`: ok | needs_auth | rate_limited | error | never_synced.
    """

    __tablename__ = "sync_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    athlete_id: Mapped[int] = mapped_column(ForeignKey("athletes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), default=SyncStatus.NEVER_SYNCED.value)
    cursor: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_sync: Mapped[datetime | None]
    next_sync: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    #: When this source, which delivered runs regularly, was found silent (None: it is not).
    stale_since: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None]
    lease_since: Mapped[datetime | None]


class SeenItem(Base):
    """An item of a source already handled (a folder's file): path and fingerprint.

    `status`: stored | skipped (not a run, or nothing to store) | rejected (`reason` says why).
    A file is read again only when its fingerprint (size and mtime) changes.
    """

    __tablename__ = "seen_items"
    __table_args__ = (UniqueConstraint("sync_state_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sync_state_id: Mapped[int] = mapped_column(ForeignKey("sync_state.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Run(Base):
    """One run of an athlete, however many sources saw it.

    Its figures are copied from its best activity (FIT file > Garmin > Strava).
    """

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_athlete_start", "athlete_id", "start_time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    athlete_id: Mapped[int] = mapped_column(ForeignKey("athletes.id", ondelete="CASCADE"))
    start_time: Mapped[datetime]
    sport: Mapped[str] = mapped_column(String(30))
    label: Mapped[str] = mapped_column(String(10))
    distance_m: Mapped[float] = mapped_column(Float)
    moving_time_s: Mapped[float | None] = mapped_column(Float)
    elevation_gain_m: Mapped[float | None] = mapped_column(Float)
    elevation_loss_m: Mapped[float | None] = mapped_column(Float)
    uphill_m: Mapped[float] = mapped_column(Float, default=0.0)
    downhill_m: Mapped[float] = mapped_column(Float, default=0.0)
    flat_m: Mapped[float] = mapped_column(Float, default=0.0)
    #: Where the label's gain and loss came from (device, profile, summary, none).
    label_elevation_source: Mapped[str | None] = mapped_column(String(10))
    #: One line saying why the label ("412 m up over 11.1 km = 37 m/km >= 15: uphill").
    label_reason: Mapped[str | None] = mapped_column(Text)
    #: {count, length_m, grade_pct} of the hill-repeat session in the run, or None.
    hill_repeats: Mapped[dict[str, Any] | None]

    activities: Mapped[list[ActivityRow]] = relationship(back_populates="run")


class ActivityRow(Base):
    """One activity as one source reported it, with its raw payload and profile.

    `profile` is the cleaned altitude every 10 m, float32, zlib-compressed. Rides and other
    non-runs are kept (so a re-sync does not fetch them again) but belong to no run.
    """

    __tablename__ = "activities"
    __table_args__ = (
        UniqueConstraint("source", "source_id"),
        Index("ix_activities_athlete_start", "athlete_id", "start_time"),
        Index("ix_activities_run_id", "run_id"),
        Index("ix_activities_external_id", "external_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    athlete_id: Mapped[int] = mapped_column(ForeignKey("athletes.id", ondelete="CASCADE"))
    sync_state_id: Mapped[int] = mapped_column(ForeignKey("sync_state.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(200))
    source_kind: Mapped[str] = mapped_column(String(20))
    source_id: Mapped[str] = mapped_column(String(500))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))

    sport: Mapped[str] = mapped_column(String(30))
    is_run: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str | None] = mapped_column(Text)
    start_time: Mapped[datetime]
    distance_m: Mapped[float | None] = mapped_column(Float)
    moving_time_s: Mapped[float | None] = mapped_column(Float)
    elapsed_time_s: Mapped[float | None] = mapped_column(Float)
    reported_gain_m: Mapped[float | None] = mapped_column(Float)
    reported_loss_m: Mapped[float | None] = mapped_column(Float)
    elevation_range_m: Mapped[float | None] = mapped_column(Float)
    start_lat: Mapped[float | None] = mapped_column(Float)
    start_lon: Mapped[float | None] = mapped_column(Float)
    end_lat: Mapped[float | None] = mapped_column(Float)
    end_lon: Mapped[float | None] = mapped_column(Float)
    indoor: Mapped[bool] = mapped_column(Boolean, default=False)
    external_id: Mapped[str | None] = mapped_column(String(200))
    elevation_source: Mapped[str] = mapped_column(String(20))
    raw: Mapped[dict[str, Any] | None]
    profile: Mapped[bytes | None] = mapped_column(LargeBinary)
    profile_distance_m: Mapped[float | None] = mapped_column(Float)

    label: Mapped[str] = mapped_column(String(10))
    elevation_gain_m: Mapped[float | None] = mapped_column(Float)
    elevation_loss_m: Mapped[float | None] = mapped_column(Float)
    uphill_m: Mapped[float] = mapped_column(Float, default=0.0)
    downhill_m: Mapped[float] = mapped_column(Float, default=0.0)
    flat_m: Mapped[float] = mapped_column(Float, default=0.0)
    classifier_version: Mapped[int] = mapped_column(Integer)
    classify_inputs: Mapped[dict[str, Any]]
    #: Where the label's gain and loss came from (device, profile, summary, none); NULL
    #: for rows classified before it was kept (`reclassify` fills it).
    label_elevation_source: Mapped[str | None] = mapped_column(String(10))
    #: One line saying why the label; NULL likewise.
    label_reason: Mapped[str | None] = mapped_column(Text)
    #: {count, length_m, grade_pct} of the hill-repeat session found in the profile, or None.
    hill_repeats: Mapped[dict[str, Any] | None]
    #: A hash of everything stored from the source: an unchanged re-delivery is a no-op.
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    #: Set when the source no longer has it (a full re-list); such a row belongs to no run.
    deleted_at: Mapped[datetime | None]

    run: Mapped[Run | None] = relationship(back_populates="activities")


class BalanceState(Base):
    """The last balance status of an athlete, for hysteresis and reminders."""

    __tablename__ = "balance_state"

    athlete_id: Mapped[int] = mapped_column(
        ForeignKey("athletes.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(20))
    since: Mapped[datetime]
    evaluated_at: Mapped[datetime]
    last_warned_at: Mapped[datetime | None]
    report: Mapped[dict[str, Any] | None]


class OutboxMessage(Base):
    """A notification written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    athlete_id: Mapped[int | None] = mapped_column(ForeignKey("athletes.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    #: Set once every URL has it (or when there is no URL and it went to the log).
    done_at: Mapped[datetime | None]
    #: A file sent along where the service takes attachments (the digest's chart).
    attachment: Mapped[bytes | None] = mapped_column(LargeBinary)
    attachment_name: Mapped[str | None] = mapped_column(String(200))

    deliveries: Mapped[list[OutboxDelivery]] = relationship(
        back_populates="message", cascade="all, delete-orphan"
    )


class WeeklyMark(Base):
    """Something done once per athlete and period (a week's digest, a week's ramp warning).

    The unique constraint makes "once" hold across restarts and several workers: the second
    insert of the same (athlete, kind, period) fails, and its transaction sends nothing.
    """

    __tablename__ = "weekly_marks"
    __table_args__ = (UniqueConstraint("athlete_id", "kind", "period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    athlete_id: Mapped[int] = mapped_column(ForeignKey("athletes.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))
    period: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]


class OutboxDelivery(Base):
    """One message to one URL: retried with backoff until sent, never sent twice.

    `url_key` is a hash of the URL (the URL itself may hold a secret).
    """

    __tablename__ = "outbox_deliveries"
    __table_args__ = (UniqueConstraint("message_id", "url_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"))
    url_key: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    message: Mapped[OutboxMessage] = relationship(back_populates="deliveries")


class ShareLink(Base):
    """A revocable read-only link to one athlete's pages.

    Only a hash of the link's token is kept: the token itself is shown once, when made.
    """

    __tablename__ = "share_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    athlete_id: Mapped[int] = mapped_column(ForeignKey("athletes.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class PushSubscription(Base):
    """A Strava application's push subscription (`hillsync webhook subscribe`).

    While one exists, the application's athletes are polled only at a slow safety interval:
    the push events make their sources due.
    """

    __tablename__ = "push_subscriptions"

    client_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    subscription_id: Mapped[int] = mapped_column(BigInteger)
    callback_url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class ApiBudget(Base):
    """One rate budget of an API application (Strava's read or overall budget of a client id).

    Shared by every athlete and worker using the application (store/budgets.py). `used`
    counts the requests hillsync granted in the current windows (the quarter hour from
    `window_start`, the UTC day from `day_start`); `reported` is what the API last said in
    the same windows (it also counts requests hillsync did not make). `parked_until` is set
    once a window is spent, until it resets.
    """

    __tablename__ = "api_budgets"

    app: Mapped[str] = mapped_column(String(100), primary_key=True)
    scope: Mapped[str] = mapped_column(String(20), primary_key=True)
    window_start: Mapped[datetime]
    day_start: Mapped[datetime]
    short_used: Mapped[int] = mapped_column(Integer, default=0)
    long_used: Mapped[int] = mapped_column(Integer, default=0)
    short_reported: Mapped[int] = mapped_column(Integer, default=0)
    long_reported: Mapped[int] = mapped_column(Integer, default=0)
    short_limit: Mapped[int] = mapped_column(Integer)
    long_limit: Mapped[int] = mapped_column(Integer)
    reported_at: Mapped[datetime | None]
    parked_until: Mapped[datetime | None]
