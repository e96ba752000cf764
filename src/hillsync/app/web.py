"""The web app's use cases (`hillsync.web.backend.WebBackend`) over the application layer.

Pages read through here only; a push event's effects (a source due at once, an activity
gone) are written here in one transaction each; connecting reuses `app.accounts`.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from hillsync.app.accounts import connect_garmin
from hillsync.app.context import AppContext
from hillsync.app.dashboard import build_dashboard
from hillsync.app.status import status_document
from hillsync.config import DEFAULT_ATHLETE
from hillsync.errors import HillsyncError
from hillsync.model import ACCOUNT_KINDS, SourceKind, Terrain
from hillsync.prompted import PromptedLogins, Step
from hillsync.registry import source_full_name
from hillsync.report import Dashboard
from hillsync.sources.base import RateReport
from hillsync.store.pages import RunDetail

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RunPage(RunDetail):
    """One run with its profile cut into 100 m segments (no profile: empty sequences)."""

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


def share_hash(token: str) -> str:
    """What the store keeps of a share token (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _budget_text(report: RateReport | None) -> str | None:
    if report is None or not report.budgets:
        return None
    return "; ".join(
        f"{b.name} {b.short.used}/{b.short.limit} this quarter hour,"
        f" {b.daily.used}/{b.daily.limit} today"
        for b in report.budgets
    )


class WebUseCases:
    """What the pages do, over one application context (one open database)."""

    def __init__(
        self, ctx: AppContext, *, garmin_factory: Callable[..., Any] | None = None
    ) -> None:
        self.ctx = ctx
        self.garmin_factory = garmin_factory
        self._logins: PromptedLogins[Any] = PromptedLogins()

    # --- reading --------------------------------------------------------------------------

    def athletes(self) -> Sequence[str]:
        names = list(self.ctx.settings.athletes) or [DEFAULT_ATHLETE]
        return sorted(names, key=lambda n: (n != DEFAULT_ATHLETE, n))

    def dashboard(self, athlete: str) -> Dashboard:
        return build_dashboard(self.ctx, athlete)

    def run_page(self, athlete: str, run_id: int) -> RunPage | None:
        from hillsync.classify import segment_terrain, smooth
        from hillsync.store import pages

        with self.ctx.db.session(readonly=True) as session:
            found = pages.run_with_profile(session, athlete, run_id)
        if found is None:
            return None
        detail, profile = found
        edges: Sequence[float] = ()
        alt: Sequence[float] = ()
        terrain: Sequence[Terrain] = ()
        if profile is not None and profile.altitude_m.size >= 2:
            e, a, terrain = segment_terrain(
                profile, smooth(profile), self.ctx.settings.classify.grade_pct
            )
            edges, alt = e.tolist(), a.tolist()
        return RunPage(
            **{f.name: getattr(detail, f.name) for f in fields(RunDetail)},
            edges_m=edges,
            altitude_m=alt,
            terrain=terrain,
        )

    def sources(self) -> Sequence[SourceRow]:
        return [
            SourceRow(
                name=s.name,
                kind=s.kind.value,
                athlete=s.athlete,
                state=s.state.value,
                last_sync=s.last_sync,
                next_sync=s.next_sync,
                last_error=s.last_error,
                rate_budget=_budget_text(s.rate_budget),
                rejected=tuple((r.file, r.reason) for r in s.rejected),
                connected=True if s.kind in ACCOUNT_KINDS else None,
            )
            for s in status_document(self.ctx).sources
        ]

    # --- share links ----------------------------------------------------------------------

    def add_share_link(self, athlete: str) -> str:
        from hillsync.store import pages, repo

        name = self.ctx.athlete(athlete).name
        token = secrets.token_urlsafe(24)
        with self.ctx.db.session() as session:
            row = repo.ensure_athlete(session, name)
            pages.add_share_link(session, row, share_hash(token), self.ctx.clock())
        return token

    def share_links(self, athlete: str) -> Sequence[ShareLinkRow]:
        from hillsync.store import pages

        with self.ctx.db.session(readonly=True) as session:
            return [
                ShareLinkRow(x.id, x.created_at, x.revoked_at)
                for x in pages.share_links(session, athlete)
            ]

    def revoke_share_link(self, athlete: str, link_id: int) -> bool:
        from hillsync.store import pages

        with self.ctx.db.session() as session:
            return pages.revoke_share_link(session, athlete, link_id, self.ctx.clock())

    def athlete_of_share(self, token: str) -> str | None:
        from hillsync.store import pages

        with self.ctx.db.session(readonly=True) as session:
            athlete = pages.athlete_of_share(session, share_hash(token))
        # An athlete removed from the config has no pages any more.
        return athlete if athlete in self.athletes() else None

    # --- Strava push events ---------------------------------------------------------------

    def strava_event(self, event: StravaEvent) -> str:
        """Create/update: the athlete's Strava source due now; delete: the activity gone;
        a deauthorization: the source due now, so that its sync confirms the revocation
        with Strava before anything is deleted. Raises StoreError."""
        from hillsync.store import pages, repo

        now = self.ctx.clock()
        with self.ctx.db.session() as session:
            known = pages.push_subscription_ids(session)
            if known and event.subscription_id not in known:
                return "ignored: not our push subscription"
            athlete = pages.athlete_of_remote(session, SourceKind.STRAVA, str(event.owner_id))
            if athlete is None:
                return "ignored: no athlete here is this Strava athlete"
            source = source_full_name(athlete, SourceKind.STRAVA)
            if event.object_type == "athlete":
                if event.updates.get("authorized") == "false":
                    # Anyone can post to the webhook: the sync confirms the revocation with
                    # Strava (its 401) before anything is forgotten.
                    pages.mark_due(session, source, now)
                    return f"{source} due now to confirm the deauthorization"
                return "ignored: athlete profile update"
            if event.aspect_type == "delete":
                gone = repo.mark_deleted(session, source, str(event.object_id), now)
                pages.mark_due(session, source, now)  # the balance is evaluated after a sync
                return "activity deleted" if gone else "ignored: activity not stored"
            due = pages.mark_due(session, source, now)
            return f"{source} due now" if due else f"{source} left as it is (parked)"

    # --- connecting Strava, disconnecting --------------------------------------------------

    def strava_authorize_url(self, athlete: str, redirect_uri: str) -> tuple[str, str]:
        """Strava's authorize page and its state (saved like `connect --no-browser` does).

        Raises ConfigError when the athlete has no Strava application, UsageError.
        """
        from hillsync.app.accounts import begin_strava

        return begin_strava(self.ctx, athlete, redirect_uri)

    def strava_finish(self, athlete: str, redirect_url: str) -> ConnectResult:
        """Finish with the address Strava redirected the browser to (state, scope, code)."""
        from hillsync.app.accounts import connect_strava

        try:
            done = connect_strava(
                self.ctx,
                athlete,
                code=None,
                redirect_url=redirect_url,
                open_browser=False,
                say=lambda line: log.info("strava_connect", note=line),
            )
        except HillsyncError as exc:
            return ConnectResult(False, str(exc))
        who = done.display_name or done.remote_id or "account"
        return ConnectResult(True, f"Strava athlete {who} is connected for {done.athlete}.")

    def disconnect(self, athlete: str, kind: str) -> str:
        """Forget the account (revoked where the API allows); Strava's data goes with it."""
        from hillsync.app.accounts import disconnect

        source = SourceKind(kind)
        result = disconnect(self.ctx, source, self.ctx.athlete(athlete).name)
        text = f"{kind} disconnected for {result.athlete}"
        if source is SourceKind.STRAVA:
            text += ", access revoked on Strava" if result.revoked else ""
        if result.deleted is not None:
            text += "; " + result.deleted.describe(kind.capitalize())
        return text + "."

    # --- connecting Garmin ----------------------------------------------------------------

    def garmin_login(self, athlete: str, email: str, password: str) -> ConnectResult:
        """Log in with the password (held only by the login's thread, never written).

        Returns a pending login id in `pending_mfa` when Garmin asks for an MFA code.
        """
        name = self.ctx.athlete(athlete).name

        def run(ask_code: Callable[[], str], say: Callable[[str], None]) -> Any:
            return connect_garmin(
                self.ctx,
                name,
                tokens_file=None,
                email=email,
                password_prompt=lambda: password,
                mfa_prompt=ask_code,
                garmin_factory=self.garmin_factory,
            )

        return self._garmin_step(name, self._logins.start(run))

    def garmin_mfa(self, athlete: str, client_state: str, code: str) -> ConnectResult:
        step = self._logins.answer(client_state, code)
        if step is None:
            return ConnectResult(False, "This Garmin login is no longer waiting: start again.")
        return self._garmin_step(athlete, step)

    def _garmin_step(self, athlete: str, step: Step[Any]) -> ConnectResult:
        if step.login is not None:
            note = " ".join(step.notes)
            return ConnectResult(False, note or "Garmin asks for an MFA code.", step.login)
        if step.error is not None:
            if isinstance(step.error, HillsyncError):
                return ConnectResult(False, str(step.error))
            log.error("garmin_connect_failed", error=type(step.error).__name__)
            return ConnectResult(False, "The Garmin login failed unexpectedly (see the log).")
        done = step.result
        who = (done.display_name or done.remote_id) if done is not None else None
        return ConnectResult(True, f"Garmin {who or 'account'} is connected for {athlete}.")

    def garmin_tokens(self, athlete: str, data: bytes) -> ConnectResult:
        """Import an uploaded garminconnect token file (verified by a token login)."""
        name = self.ctx.athlete(athlete).name
        with tempfile.TemporaryDirectory(prefix="hillsync-upload-") as tmp:
            upload = Path(tmp) / "garmin_tokens.json"
            upload.write_bytes(data)
            upload.chmod(0o600)
            try:
                done = connect_garmin(
                    self.ctx,
                    name,
                    tokens_file=upload,
                    email=None,
                    password_prompt=lambda: "",
                    mfa_prompt=lambda: "",
                    garmin_factory=self.garmin_factory,
                )
            except HillsyncError as exc:
                return ConnectResult(False, str(exc))
        who = done.display_name or done.remote_id or "account"
        return ConnectResult(True, f"Garmin {who} is connected for {name} (token file imported).")
