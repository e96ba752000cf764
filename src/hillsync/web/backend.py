"""What the web app needs from the application layer, as a protocol and plain view values.

The web app never touches the store: everything comes through a `WebBackend`, so its pages
and security can be tested against the real application layer or a stand-in alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from hillsync.model import Terrain
from hillsync.report import Dashboard


@dataclass(frozen=True)
class RunPage:
    """One run with its profile cut into 100 m segments (no profile: empty sequences)."""

    id: int
    athlete: str
    start_time: datetime
    name: str | None
    sport: str
    label: str
    distance_m: float
    moving_time_s: float | None
    elevation_gain_m: float | None
    elevation_loss_m: float | None
    uphill_m: float
    downhill_m: float
    flat_m: float
    elevation_source: str | None
    reason: str | None
    sources: tuple[tuple[str, str], ...]
    edges_m: Sequence[float] = ()
    altitude_m: Sequence[float] = ()
    terrain: Sequence[Terrain] = ()


@dataclass(frozen=True)
class SourceRow:
    """One configured source on the sources page."""

    name: str
    kind: str
    athlete: str
    state: str
    last_sync: datetime | None
    next_sync: datetime | None
    last_error: str | None
    rate_budget: str | None
    rejected: tuple[tuple[str, str], ...] = ()
    connected: bool | None = None  # None: a source that is not an account (a folder)


@dataclass(frozen=True)
class ShareLinkRow:
    """A read-only link (its token is shown only once, when made)."""

    id: int
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class StravaEvent:
    """One push event, as Strava documents it (only ids, never the activity itself)."""

    object_type: Literal["activity", "athlete"]
    object_id: int
    aspect_type: Literal["create", "update", "delete"]
    owner_id: int
    subscription_id: int
    event_time: int
    updates: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConnectResult:
    """What a connect flow ended with, to show the runner the truth."""

    ok: bool
    message: str
    pending_mfa: str | None = None  # a garminconnect client state, kept server-side


class WebBackend(Protocol):
    """The use cases the pages call."""

    def athletes(self) -> Sequence[str]:
        """Every athlete the config knows, the default one first."""
        ...

    def dashboard(self, athlete: str) -> Dashboard:
        """The athlete's dashboard as of now."""
        ...

    def run_page(self, athlete: str, run_id: int) -> RunPage | None:
        """One of the athlete's runs; None when it is not theirs."""
        ...

    def sources(self) -> Sequence[SourceRow]:
        """Every configured source's state."""
        ...

    def add_share_link(self, athlete: str) -> str:
        """Make a read-only link for the athlete; returns its token (shown once)."""
        ...

    def share_links(self, athlete: str) -> Sequence[ShareLinkRow]:
        """The athlete's links."""
        ...

    def revoke_share_link(self, athlete: str, link_id: int) -> bool:
        """Revoke a link; False when it is not the athlete's or already revoked."""
        ...

    def athlete_of_share(self, token: str) -> str | None:
        """The athlete a live link opens."""
        ...

    def strava_event(self, event: StravaEvent) -> str:
        """Act on a push event; returns what was done (for the log)."""
        ...

    def garmin_login(self, athlete: str, email: str, password: str) -> ConnectResult:
        """Log in to Garmin Connect (the password is used once, never stored)."""
        ...

    def garmin_mfa(self, athlete: str, client_state: str, code: str) -> ConnectResult:
        """Finish a Garmin login with its MFA code."""
        ...

    def garmin_tokens(self, athlete: str, data: bytes) -> ConnectResult:
        """Import a garminconnect token file made elsewhere."""
        ...
