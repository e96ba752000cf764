"""The worker's whole interface to storage.

Every function takes a Session (one transaction, from `Database.session()`): the caller
decides what commits together. Every datetime in and out is timezone-aware UTC.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from hillsync.errors import StoreError
from hillsync.model import (
    AccountState,
    Activity,
    Batch,
    Classification,
    HillRepeats,
    Profile,
    RunForBalance,
    SourceKind,
    Summary,
    SyncStatus,
    Terrain,
)
from hillsync.store import runs as dedupe
from hillsync.store.codec import decode_profile, encode_profile
from hillsync.store.tables import Account, ActivityRow, Athlete, Run, SeenItem, SyncState

log = structlog.get_logger(__name__)

_CHUNK = 500
#: The columns an activity's content hash covers: what a source delivers, and its label.
_HASHED = (
    "sport", "is_run", "name", "start_time", "distance_m", "moving_time_s", "elapsed_time_s",
    "reported_gain_m", "reported_loss_m", "elevation_range_m", "start_lat", "start_lon",
    "end_lat", "end_lon", "indoor", "external_id", "elevation_source", "raw", "profile",
    "profile_distance_m", "label", "elevation_gain_m", "elevation_loss_m", "uphill_m",
    "downhill_m", "flat_m", "classifier_version", "classify_inputs", "hill_repeats",
)  # fmt: skip


@dataclass(frozen=True)
class BatchResult:
    """What `save_batch` did: activities new, changed, unchanged; items rejected; deletions."""

    new: int
    updated: int
    unchanged: int
    rejected: int
    deleted: int = 0


@dataclass(frozen=True)
class RunView:
    """One deduplicated run, as `hillsync activities` shows it."""

    id: int
    athlete: str
    start_time: datetime
    sport: str
    label: str
    distance_m: float
    moving_time_s: float | None
    elevation_gain_m: float | None
    elevation_loss_m: float | None
    sources: tuple[tuple[str, str], ...]
    #: Where the label's gain and loss came from; None before `reclassify` filled it.
    elevation_source: str | None = None
    #: Why the label, in one line; None likewise.
    reason: str | None = None
    hill_repeats: HillRepeats | None = None


def hill_repeats_json(h: HillRepeats | None) -> dict[str, Any] | None:
    """A hill-repeat session as stored and shown: {count, length_m, grade_pct}, or None."""
    if h is None:
        return None
    return {"count": h.count, "length_m": h.length_m, "grade_pct": h.grade_pct}


def hill_repeats_of(value: Mapping[str, Any] | None) -> HillRepeats | None:
    """The stored {count, length_m, grade_pct} back as a HillRepeats (None stays None)."""
    if not value:
        return None
    try:
        return HillRepeats(
            count=int(value["count"]),
            length_m=float(value["length_m"]),
            grade_pct=float(value["grade_pct"]),
        )
    except (KeyError, TypeError, ValueError):
        return None  # written by another version: as if not found


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _json_default(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def _content_hash(values: Mapping[str, Any]) -> str:
    text = json.dumps(
        {k: values[k] for k in _HASHED}, sort_keys=True, default=_json_default, allow_nan=True
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _json_safe(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A plain-JSON copy (what the database gives back), so hashes compare equal.

    NaN and infinities (Python's json reads them in an API answer) become null: they are
    no JSON, and PostgreSQL refuses a document holding one. Raises nothing of its own.
    """
    if value is None:
        return None
    text = json.dumps(dict(value), default=_json_default)
    loaded: dict[str, Any] = json.loads(text, parse_constant=lambda _constant: None)
    return loaded


# --- athletes and sync state --------------------------------------------------------------


def ensure_athlete(session: Session, name: str) -> Athlete:
    """The athlete called `name`, created when new (safe against a concurrent creator)."""
    found = session.scalar(select(Athlete).where(Athlete.name == name))
    if found is not None:
        return found
    try:
        with session.begin_nested():
            athlete = Athlete(name=name, created_at=_utc_now())
            session.add(athlete)
    except IntegrityError:
        return session.scalars(select(Athlete).where(Athlete.name == name)).one()
    return athlete


def athlete_names(session: Session) -> list[str]:
    """Every athlete's name, sorted."""
    return list(session.scalars(select(Athlete.name).order_by(Athlete.name)))


def ensure_sync_state(session: Session, athlete: Athlete, name: str, kind: str) -> SyncState:
    """The sync state of the source `name`, created (never synced) when new."""
    found = session.scalar(select(SyncState).where(SyncState.name == name))
    if found is not None:
        if found.kind != kind or found.athlete_id != athlete.id:
            found.kind = kind
            found.athlete_id = athlete.id
        return found
    try:
        with session.begin_nested():
            state = SyncState(
                athlete_id=athlete.id, name=name, kind=kind,
                state=SyncStatus.NEVER_SYNCED.value, cursor={}, failures=0,
            )  # fmt: skip
            session.add(state)
    except IntegrityError:
        return session.scalars(select(SyncState).where(SyncState.name == name)).one()
    return state


def all_sync_states(session: Session) -> list[SyncState]:
    """Every source's sync state, by name."""
    return list(session.scalars(select(SyncState).order_by(SyncState.name)))


def due_sync_states(session: Session, now: datetime) -> list[SyncState]:
    """Sources due at `now`: never scheduled or past `next_sync`, not leased by a live
    worker, and not waiting for the runner to reconnect. Soonest first."""
    stmt = (
        select(SyncState)
        .where(
            or_(SyncState.next_sync.is_(None), SyncState.next_sync <= now),
            or_(SyncState.lease_until.is_(None), SyncState.lease_until <= now),
            SyncState.state != SyncStatus.NEEDS_AUTH.value,
        )
        .order_by(SyncState.next_sync.is_not(None), SyncState.next_sync, SyncState.name)
    )
    return list(session.scalars(stmt))


def record_sync_result(
    session: Session,
    state: SyncState,
    *,
    status: SyncStatus,
    now: datetime,
    next_sync: datetime | None,
    error: str | None,
) -> None:
    """Record how a sync ended: `ok` resets the failure count, a failure adds one, and an
    `interrupted` sync (Ctrl-C) leaves it as it was.

    `last_sync` is the last successful sync; `error` must be a one-line, secret-free text.
    """
    state.state = status.value
    state.next_sync = next_sync
    state.last_error = error
    if status is SyncStatus.OK:
        state.last_sync = now
        state.failures = 0
    elif status is not SyncStatus.INTERRUPTED:
        state.failures = (state.failures or 0) + 1
    session.flush()


def get_sync_state(session: Session, state_id: int) -> SyncState:
    """The sync state with this id.

    Raises StoreError when it no longer exists.
    """
    state = session.get(SyncState, state_id)
    if state is None:
        raise StoreError(f"sync state {state_id} no longer exists")
    return state


def clear_needs_auth(session: Session, name: str) -> None:
    """After a reconnect: the source `name` (if known) is due again, with a clean record."""
    state = session.scalar(select(SyncState).where(SyncState.name == name))
    if state is None:
        return
    if state.state == SyncStatus.NEEDS_AUTH:
        state.state = (
            SyncStatus.OK if state.last_sync is not None else SyncStatus.NEVER_SYNCED
        ).value
    state.next_sync = None
    state.last_error = None
    state.failures = 0


def newest_start(session: Session, state: SyncState) -> datetime | None:
    """The latest start time among the source's stored activities (None when none)."""
    stmt = select(func.max(ActivityRow.start_time)).where(
        ActivityRow.sync_state_id == state.id, ActivityRow.deleted_at.is_(None)
    )
    value = session.scalar(stmt)
    if value is None:
        return None
    # func.max bypasses the column type on SQLite: read it back as aware UTC ourselves.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def load_seen(session: Session, state: SyncState) -> dict[str, str]:
    """Items of the source already handled: key -> fingerprint."""
    stmt = select(SeenItem.key, SeenItem.fingerprint).where(SeenItem.sync_state_id == state.id)
    return {key: fingerprint for key, fingerprint in session.execute(stmt)}


def rejected_items(session: Session, state: SyncState) -> list[SeenItem]:
    """The source's items recorded as rejected, with their reasons, by key."""
    stmt = (
        select(SeenItem)
        .where(SeenItem.sync_state_id == state.id, SeenItem.status == "rejected")
        .order_by(SeenItem.key)
    )
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class RejectedView:
    """An item of a source rejected with its reason (a folder's file)."""

    key: str
    reason: str


@dataclass(frozen=True)
class SyncStateView:
    """One source's sync state, detached from the session.

    `cursor` is the source's own progress: only the source (and the accessors it
    documents) may read it.
    """

    name: str
    kind: str
    state: SyncStatus
    last_sync: datetime | None
    next_sync: datetime | None
    last_error: str | None
    failures: int
    lease_owner: str | None
    lease_until: datetime | None
    cursor: Mapping[str, Any]
    rejected: tuple[RejectedView, ...] = ()
    lease_since: datetime | None = None
    #: When this regularly delivering source was found silent (None: it is not).
    stale_since: datetime | None = None


def sync_state_views(session: Session, *, with_rejected: bool = False) -> dict[str, SyncStateView]:
    """Every source's sync state by name; `with_rejected` adds each one's rejected items."""
    views: dict[str, SyncStateView] = {}
    for s in all_sync_states(session):
        rejected = (
            tuple(RejectedView(i.key, i.reason or "") for i in rejected_items(session, s))
            if with_rejected
            else ()
        )
        views[s.name] = SyncStateView(
            name=s.name,
            kind=s.kind,
            state=SyncStatus.parse(s.state),
            last_sync=s.last_sync,
            next_sync=s.next_sync,
            last_error=s.last_error,
            failures=s.failures or 0,
            lease_owner=s.lease_owner,
            lease_until=s.lease_until,
            cursor=dict(s.cursor or {}),
            rejected=rejected,
            lease_since=s.lease_since,
            stale_since=s.stale_since,
        )
    return views


# --- saving a batch ------------------------------------------------------------------------


def _unknown(activity: Activity) -> Classification:
    return Classification(
        label=Terrain.UNKNOWN,
        distance_m=activity.distance_m or 0.0,
        elevation_gain_m=activity.reported_gain_m,
        elevation_loss_m=activity.reported_loss_m,
        uphill_m=0.0,
        downhill_m=0.0,
        flat_m=0.0,
        version=0,
        inputs={"basis": "none"},
    )


def _activity_values(
    activity: Activity,
    profile: Profile | None,
    c: Classification,
    run_sports: Collection[str],
) -> dict[str, Any]:
    start_lat, start_lon = activity.start_latlng or (None, None)
    end_lat, end_lon = activity.end_latlng or (None, None)
    distance = activity.distance_m
    if distance is None and c.distance_m:
        # Files without a distance field: the classifier measured it along the track.
        distance = c.distance_m
    return {
        "sport": activity.sport,
        "is_run": activity.sport in run_sports,
        "name": activity.name,
        "start_time": activity.start_time.astimezone(UTC),
        "distance_m": distance,
        "moving_time_s": activity.moving_time_s,
        "elapsed_time_s": activity.elapsed_time_s,
        "reported_gain_m": activity.reported_gain_m,
        "reported_loss_m": activity.reported_loss_m,
        "elevation_range_m": activity.elevation_range_m,
        "start_lat": start_lat,
        "start_lon": start_lon,
        "end_lat": end_lat,
        "end_lon": end_lon,
        "indoor": activity.indoor,
        "external_id": activity.external_id,
        "elevation_source": activity.elevation_source,
        "raw": _json_safe(activity.raw),
        "profile": encode_profile(profile) if profile is not None else None,
        "profile_distance_m": profile.distance_m if profile is not None else None,
        "label": str(c.label),
        "elevation_gain_m": c.elevation_gain_m,
        "elevation_loss_m": c.elevation_loss_m,
        "uphill_m": c.uphill_m,
        "downhill_m": c.downhill_m,
        "flat_m": c.flat_m,
        "classifier_version": c.version,
        "classify_inputs": _json_safe(c.inputs) or {},
        "label_elevation_source": c.elevation_source,
        "label_reason": c.reason or None,
        "hill_repeats": hill_repeats_json(c.hill_repeats),
    }


def _existing_rows(session: Session, source: str, ids: Sequence[str]) -> dict[str, ActivityRow]:
    found: dict[str, ActivityRow] = {}
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        stmt = select(ActivityRow).where(
            ActivityRow.source == source, ActivityRow.source_id.in_(chunk)
        )
        found.update((row.source_id, row) for row in session.scalars(stmt))
    return found


def _seen_status(key: str, stored_ids: set[str]) -> str:
    # A folder's activity id is its file's key, or the key and a leg suffix (multisport).
    if key in stored_ids or any(i.startswith(key + "#") for i in stored_ids):
        return "stored"
    return "skipped"


def _save_seen(session: Session, state: SyncState, batch: Batch, now: datetime) -> None:
    rejected = {r.key: r for r in batch.rejected}
    items: dict[str, tuple[str, str, str | None]] = {}
    stored_ids = {a.source_id for a in batch.activities}
    for key, fingerprint in batch.seen.items():
        if key not in rejected:
            items[key] = (fingerprint, _seen_status(key, stored_ids), None)
    for key, r in rejected.items():
        items[key] = (batch.seen.get(key, r.fingerprint), "rejected", r.reason)
    keys = list(items)
    existing: dict[str, SeenItem] = {}
    for i in range(0, len(keys), _CHUNK):
        stmt = select(SeenItem).where(
            SeenItem.sync_state_id == state.id, SeenItem.key.in_(keys[i : i + _CHUNK])
        )
        existing.update((item.key, item) for item in session.scalars(stmt))
    for key, (fingerprint, status, reason) in items.items():
        item = existing.get(key)
        if item is None:
            session.add(
                SeenItem(
                    sync_state_id=state.id,
                    key=key,
                    fingerprint=fingerprint,
                    status=status,
                    reason=reason,
                    updated_at=now,
                )
            )
        elif (item.fingerprint, item.status, item.reason) != (fingerprint, status, reason):
            item.fingerprint, item.status, item.reason = fingerprint, status, reason
            item.updated_at = now


def save_batch(
    session: Session,
    state: SyncState,
    batch: Batch,
    classified: Mapping[str, tuple[Profile | None, Classification]],
    run_sports: Collection[str],
    now: datetime,
) -> BatchResult:
    """Store one batch of a source: activities (upserted), seen items, cursor, deletions.

    `classified` maps an activity's source_id to its profile and classification; an
    activity missing from it is stored as `unknown`. Activities whose sport is in
    `run_sports` join a (deduplicated) run. An unchanged re-delivery changes nothing.
    Nothing is committed here: the caller's transaction holds the whole batch.
    """
    new = updated = unchanged = deleted = 0
    ids = [a.source_id for a in batch.activities]
    existing = _existing_rows(session, state.name, ids)
    for activity in batch.activities:
        profile, c = classified.get(activity.source_id, (activity.profile, _unknown(activity)))
        values = _activity_values(activity, profile, c, run_sports)
        digest = _content_hash(values)
        row = existing.get(activity.source_id)
        if row is not None and row.content_hash == digest and row.deleted_at is None:
            unchanged += 1
            continue
        if row is None:
            row = ActivityRow(
                athlete_id=state.athlete_id,
                sync_state_id=state.id,
                source=state.name,
                source_kind=state.kind,
                source_id=activity.source_id,
                created_at=now,
                content_hash=digest,
                updated_at=now,
                **values,
            )
            existing[activity.source_id] = row
            new += 1
            # Its run first, then the activity with its run id: no update after the insert
            # (the next statement's autoflush writes both).
            if row.is_run:
                dedupe.attach_new(session, row)
            else:
                session.add(row)
            continue
        for key, value in values.items():
            setattr(row, key, value)
        row.deleted_at = None
        updated += 1
        row.content_hash = digest
        row.updated_at = now
        session.flush()
        if row.is_run:
            dedupe.attach(session, row)
        else:
            dedupe.detach(session, row)
    for source_id in batch.deleted:
        # A file holding several activities stored them as `key#1`, `key#2`, ...
        stmt = select(ActivityRow).where(
            ActivityRow.source == state.name,
            or_(
                ActivityRow.source_id == source_id,
                ActivityRow.source_id.startswith(source_id + "#", autoescape=True),
            ),
        )
        for gone in list(session.scalars(stmt)):
            if gone.deleted_at is None:
                gone.deleted_at = now
                gone.updated_at = now
                dedupe.detach(session, gone)
                deleted += 1
    if batch.deleted:
        # Forget that the item was seen: put back unchanged (mv back, cp -p, a restored
        # backup), it has the same fingerprint and must be imported again.
        keys = list(batch.deleted)
        for i in range(0, len(keys), _CHUNK):
            session.execute(
                delete(SeenItem).where(
                    SeenItem.sync_state_id == state.id, SeenItem.key.in_(keys[i : i + _CHUNK])
                )
            )
    _save_seen(session, state, batch, now)
    if batch.cursor is not None:
        state.cursor = _json_safe(batch.cursor) or {}
    session.flush()
    log.debug(
        "batch_saved", source=state.name, new=new, updated=updated, unchanged=unchanged,
        rejected=len(batch.rejected), deleted=deleted,
    )  # fmt: skip
    return BatchResult(
        new=new, updated=updated, unchanged=unchanged, rejected=len(batch.rejected),
        deleted=deleted,
    )  # fmt: skip


def mark_deleted(session: Session, source: str, source_id: str, now: datetime) -> bool:
    """Mark an activity the source no longer has as deleted and take it out of its run.

    False when it is unknown or already deleted.
    """
    gone = _existing_rows(session, source, [source_id]).get(source_id)
    if gone is None or gone.deleted_at is not None:
        return False
    gone.deleted_at = now
    gone.updated_at = now
    dedupe.detach(session, gone)
    return True


def count_activities(session: Session) -> int:
    """How many activities are stored (deleted ones not counted)."""
    stmt = select(func.count()).select_from(ActivityRow).where(ActivityRow.deleted_at.is_(None))
    return int(session.scalar(stmt) or 0)


# --- reading runs --------------------------------------------------------------------------


def list_runs(
    session: Session,
    *,
    athlete: str | None = None,
    since: datetime | None = None,
    label: str | None = None,
) -> list[RunView]:
    """Deduplicated runs, oldest first, each with every (source, source_id) that saw it."""
    filters: list[ColumnElement[bool]] = []
    if athlete is not None:
        filters.append(Athlete.name == athlete)
    if since is not None:
        filters.append(Run.start_time >= since)
    if label is not None:
        filters.append(Run.label == label)
    # Columns, not Run objects: 10,000 runs load in a fraction of the time (no identity map).
    stmt = (
        select(
            Run.id,
            Athlete.name,
            Run.start_time,
            Run.sport,
            Run.label,
            Run.distance_m,
            Run.moving_time_s,
            Run.elevation_gain_m,
            Run.elevation_loss_m,
            Run.label_elevation_source,
            Run.label_reason,
            Run.hill_repeats,
        )
        .join(Athlete, Run.athlete_id == Athlete.id)
        .where(*filters)
        .order_by(Run.start_time, Run.id)
    )
    rows = list(session.execute(stmt))
    # Every run's sources in one query with the same filters (not one per chunk of ids).
    src = (
        select(ActivityRow.run_id, ActivityRow.source, ActivityRow.source_id)
        .join(Run, ActivityRow.run_id == Run.id)
        .join(Athlete, Run.athlete_id == Athlete.id)
        .where(*filters, ActivityRow.deleted_at.is_(None))
        .order_by(ActivityRow.source, ActivityRow.source_id)
    )
    sources: dict[int, list[tuple[str, str]]] = {}
    for run_id, source, source_id in session.execute(src):
        if run_id is not None:  # the join guarantees it; the column is nullable
            sources.setdefault(run_id, []).append((source, source_id))
    return [
        RunView(
            id=run.id,
            athlete=run.name,
            start_time=run.start_time,
            sport=run.sport,
            label=run.label,
            distance_m=run.distance_m,
            moving_time_s=run.moving_time_s,
            elevation_gain_m=run.elevation_gain_m,
            elevation_loss_m=run.elevation_loss_m,
            sources=tuple(sources.get(run.id, ())),
            elevation_source=run.label_elevation_source,
            reason=run.label_reason,
            hill_repeats=hill_repeats_of(run.hill_repeats),
        )
        for run in rows
    ]


def runs_for_balance(
    session: Session, athlete: str, start: datetime, end: datetime
) -> list[RunForBalance]:
    """The athlete's deduplicated runs starting in [start, end), oldest first."""
    stmt = (
        select(
            Run.start_time,
            Run.distance_m,
            Run.label,
            Run.elevation_gain_m,
            Run.elevation_loss_m,
            Run.uphill_m,
            Run.downhill_m,
            Run.flat_m,
            Run.hill_repeats,
            Run.label_elevation_source,
        )
        .join(Athlete, Run.athlete_id == Athlete.id)
        .where(Athlete.name == athlete, Run.start_time >= start, Run.start_time < end)
        .order_by(Run.start_time, Run.id)
    )
    return [
        RunForBalance(
            start_time=run.start_time,
            distance_m=run.distance_m,
            label=Terrain(run.label),
            elevation_gain_m=run.elevation_gain_m,
            elevation_loss_m=run.elevation_loss_m,
            uphill_m=run.uphill_m or 0.0,
            downhill_m=run.downhill_m or 0.0,
            flat_m=run.flat_m or 0.0,
            hill_repeats=hill_repeats_of(run.hill_repeats),
            elevation_source=run.label_elevation_source,
        )
        for run in session.execute(stmt)
    ]


# --- reclassification ----------------------------------------------------------------------


def _summary_of(row: ActivityRow) -> Summary:
    start = (row.start_lat, row.start_lon)
    end = (row.end_lat, row.end_lon)
    return Summary(
        sport=row.sport,
        distance_m=row.distance_m,
        reported_gain_m=row.reported_gain_m,
        reported_loss_m=row.reported_loss_m,
        elevation_range_m=row.elevation_range_m,
        start_latlng=(start[0], start[1])
        if start[0] is not None and start[1] is not None
        else None,
        end_latlng=(end[0], end[1]) if end[0] is not None and end[1] is not None else None,
        indoor=row.indoor,
        totals_from="device" if row.elevation_source == "file" else "summary",
    )


def iter_for_reclassify(
    session: Session,
) -> Iterator[tuple[ActivityRow, Summary, Profile | None]]:
    """Every stored activity (not deleted) with what the classifier needs, by id.

    Rows are loaded in chunks so a long history does not sit in memory at once.
    Raises StoreError when a stored profile cannot be decoded.
    """
    ids = list(
        session.scalars(
            select(ActivityRow.id).where(ActivityRow.deleted_at.is_(None)).order_by(ActivityRow.id)
        )
    )
    for i in range(0, len(ids), _CHUNK):
        stmt = (
            select(ActivityRow)
            .where(ActivityRow.id.in_(ids[i : i + _CHUNK]))
            .options(defer(ActivityRow.raw))
            .order_by(ActivityRow.id)
        )
        for row in list(session.scalars(stmt)):
            profile = None
            if row.profile is not None:
                distance = row.profile_distance_m or row.distance_m or 0.0
                profile = decode_profile(row.profile, distance)
            yield row, _summary_of(row), profile


def apply_classification(session: Session, row: ActivityRow, c: Classification) -> bool:
    """Store a new classification of `row` and refresh its run; False when nothing changed."""
    new = {
        "label": str(c.label),
        "elevation_gain_m": c.elevation_gain_m,
        "elevation_loss_m": c.elevation_loss_m,
        "uphill_m": c.uphill_m,
        "downhill_m": c.downhill_m,
        "flat_m": c.flat_m,
        "classifier_version": c.version,
        "classify_inputs": _json_safe(c.inputs) or {},
        "label_elevation_source": c.elevation_source,
        "label_reason": c.reason or None,
        "hill_repeats": hill_repeats_json(c.hill_repeats),
    }
    if all(getattr(row, k) == v for k, v in new.items()):
        return False
    for key, value in new.items():
        setattr(row, key, value)
    row.content_hash = _content_hash({k: getattr(row, k) for k in _HASHED})
    row.updated_at = _utc_now()
    session.flush()
    if row.run is not None:
        dedupe.refresh(session, row.run)
    return True


def reclassify_all(
    session: Session, relabel: Callable[[Summary, Profile | None], Classification]
) -> tuple[int, int]:
    """Classify every stored activity again with `relabel` and store the results:
    (activities, labels changed). Raises StoreError when a stored profile cannot be decoded."""
    total = changed = 0
    for row, summary, profile in iter_for_reclassify(session):
        result = relabel(summary, profile)
        total += 1
        if result.label.value != row.label:
            changed += 1
        apply_classification(session, row, result)
    return total, changed


# --- accounts ------------------------------------------------------------------------------


def get_account(session: Session, athlete_name: str, kind: str) -> Account | None:
    """The athlete's connected account of `kind` (strava, garmin), if any."""
    stmt = (
        select(Account)
        .join(Athlete, Account.athlete_id == Athlete.id)
        .where(Athlete.name == athlete_name, Account.kind == kind)
    )
    return session.scalar(stmt)


def upsert_account(
    session: Session,
    athlete: Athlete,
    kind: str,
    remote_id: str | None,
    display_name: str | None,
    token_path: str | None,
    scope: str | None,
    now: datetime,
) -> Account:
    """Record a (re)connected account: state `connected`."""
    account = session.scalar(
        select(Account).where(Account.athlete_id == athlete.id, Account.kind == kind)
    )
    if account is None:
        account = Account(athlete_id=athlete.id, kind=kind, created_at=now)
        session.add(account)
    account.remote_id = remote_id
    account.display_name = display_name
    account.token_path = token_path
    account.scope = scope
    account.state = AccountState.CONNECTED.value
    account.updated_at = now
    session.flush()
    return account


def delete_account(session: Session, athlete_name: str, kind: str) -> bool:
    """Forget the athlete's account of `kind`; False when there was none."""
    account = get_account(session, athlete_name, kind)
    if account is None:
        return False
    session.delete(account)
    session.flush()
    return True


def set_account_state(
    session: Session,
    athlete_name: str,
    kind: str,
    state: AccountState,
    now: datetime | None = None,
) -> bool:
    """Set an account's state (`connected`, `needs_auth`); False when there is no account."""
    account = get_account(session, athlete_name, kind)
    if account is None:
        return False
    if account.state != state.value:
        account.state = state.value
        account.updated_at = now or _utc_now()
    return True


@dataclass(frozen=True)
class AccountView:
    """A connected account, detached from the session."""

    athlete_name: str
    kind: str
    remote_id: str | None
    display_name: str | None
    state: str
    token_path: str | None
    scope: str | None


def list_accounts(session: Session) -> list[AccountView]:
    """Every connected account, by athlete and kind."""
    stmt = (
        select(Account, Athlete.name)
        .join(Athlete, Account.athlete_id == Athlete.id)
        .order_by(Athlete.name, Account.kind)
    )
    return [
        AccountView(name, a.kind, a.remote_id, a.display_name, a.state, a.token_path, a.scope)
        for a, name in session.execute(stmt)
    ]


def connected_kinds(session: Session) -> list[tuple[str, SourceKind]]:
    """(athlete, kind) of every connected account whose kind this version knows, by athlete
    and kind (a kind written by another version is left out)."""
    known = {k.value: k for k in SourceKind}
    return [(a.athlete_name, known[a.kind]) for a in list_accounts(session) if a.kind in known]
