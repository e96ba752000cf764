"""`hillsync status`: sources, their last and next sync, errors, rate budgets, the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hillsync.app.context import AppContext
from hillsync.app.sources import configured_sources
from hillsync.model import SourceKind, SyncStatus, iso_utc
from hillsync.registry import strava_app
from hillsync.sources.base import RateReport, rate_budget


@dataclass(frozen=True)
class RejectedFile:
    """A file a source rejected, with the reason."""

    file: str
    reason: str


@dataclass(frozen=True)
class SourceStatus:
    """One configured source's health."""

    name: str
    kind: SourceKind
    athlete: str
    state: SyncStatus
    last_sync: datetime | None
    next_sync: datetime | None
    last_error: str | None
    #: The worker holding the source's lease (host:pid:random), since when, until when;
    #: None when no live worker holds it.
    worker: str | None
    lease_expires: datetime | None
    rate_budget: RateReport | None
    rejected: tuple[RejectedFile, ...]
    lease_since: datetime | None = None
    #: When this regularly delivering source was found silent (None: it is not).
    stale_since: datetime | None = None
    #: The Strava application (client id) the athlete's Strava source uses.
    application: int | None = None

    def as_json(self) -> dict[str, object]:
        """The `status --json` entry of DESIGN.md section 2 (plus rate_budget, rejected)."""
        return {
            "name": self.name,
            "kind": self.kind.value,
            "athlete": self.athlete,
            "state": self.state.value,
            "last_sync": iso_utc(self.last_sync),
            "next_sync": iso_utc(self.next_sync),
            "last_error": self.last_error,
            "worker": self.worker,
            "lease_expires": iso_utc(self.lease_expires),
            "lease_since": iso_utc(self.lease_since),
            "rate_budget": self.rate_budget.as_json() if self.rate_budget else None,
            "rejected": [{"file": r.file, "reason": r.reason} for r in self.rejected],
            "stale_since": iso_utc(self.stale_since),
            "application": self.application,
        }


@dataclass(frozen=True)
class StatusDocument:
    """Everything `hillsync status` shows."""

    sources: tuple[SourceStatus, ...]
    activities: int
    pending_notifications: int

    def as_json(self) -> dict[str, object]:
        """`status --json`: sources, activities, pending_notifications."""
        return {
            "sources": [s.as_json() for s in self.sources],
            "activities": self.activities,
            "pending_notifications": self.pending_notifications,
        }


def status_document(ctx: AppContext) -> StatusDocument:
    """The status of every configured source (a source removed from the config is left
    out), the activities stored and the notifications pending. Raises StoreError."""
    from hillsync.store import outbox, repo

    specs = configured_sources(ctx)
    with ctx.db.session(readonly=True) as session:
        states = repo.sync_state_views(session, with_rejected=True)
        activities = repo.count_activities(session)
        pending = outbox.pending_count(session)
    sources = []
    now = ctx.clock()
    for spec in specs:
        st = states.get(spec.name)
        # Only a live lease names a worker: an expired one is free for any worker.
        held = st is not None and st.lease_until is not None and st.lease_until > now
        sources.append(
            SourceStatus(
                name=spec.name,
                kind=spec.kind,
                athlete=spec.athlete,
                state=st.state if st else SyncStatus.NEVER_SYNCED,
                last_sync=st.last_sync if st else None,
                next_sync=st.next_sync if st else None,
                last_error=st.last_error if st else None,
                worker=st.lease_owner if st and held else None,
                lease_expires=st.lease_until if st and held else None,
                lease_since=st.lease_since if st and held else None,
                rate_budget=rate_budget(st.cursor) if st else None,
                rejected=tuple(RejectedFile(r.key, r.reason) for r in st.rejected) if st else (),
                stale_since=st.stale_since if st else None,
                application=(
                    app.client_id
                    if spec.kind is SourceKind.STRAVA
                    and (app := strava_app(ctx.settings, spec.athlete))
                    else None
                ),
            )
        )
    return StatusDocument(tuple(sources), activities, pending)
