"""What the web app needs from the application layer (`hillsync.app.web`), as a protocol.

The web app never touches the store: everything comes through a `WebBackend`, so its pages
and security can be tested against the real application layer or a stand-in alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from hillsync.app.web import ConnectResult, RunPage, ShareLinkRow, SourceRow, StravaEvent
from hillsync.report import Dashboard

__all__ = ["ConnectResult", "RunPage", "ShareLinkRow", "SourceRow", "StravaEvent", "WebBackend"]


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

    def strava_authorize_url(self, athlete: str, redirect_uri: str) -> tuple[str, str]:
        """Strava's authorize page for the athlete's Strava application, and its `state`."""
        ...

    def strava_finish(self, athlete: str, redirect_url: str) -> ConnectResult:
        """Check the redirect (state, scope), exchange the code, store the tokens."""
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

    def disconnect(self, athlete: str, kind: str) -> str:
        """Forget an account (Strava: its data too); returns what was done."""
        ...
