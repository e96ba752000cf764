"""The web app's use cases over the store and the sources (`hillsync.web.backend.WebBackend`).

Pages read through here only; a push event's effects (a source due at once, an activity
gone, a revoked athlete's data deleted) are written here in one transaction each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from hillsync.config import DEFAULT_ATHLETE, AthleteSettings, Settings
from hillsync.dashboard import build_dashboard
from hillsync.errors import HillsyncError, UsageError
from hillsync.model import Secret
from hillsync.prompted import PromptedLogins
from hillsync.report import Dashboard
from hillsync.web.backend import (
    ConnectResult,
    RunPage,
    ShareLinkRow,
    SourceRow,
    StravaEvent,
)
from hillsync.web.security import new_share_token, share_hash

log = structlog.get_logger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def source_full_name(athlete: str, name: str) -> str:
    """`strava` for the default athlete, `anna/strava` for the others."""
    return name if athlete == DEFAULT_ATHLETE else f"{athlete}/{name}"


def _budget_text(budget: Mapping[str, Any] | None) -> str | None:
    if not budget:
        return None
    parts = []
    for name in ("read", "overall"):
        value = budget.get(name)
        if isinstance(value, Mapping):
            short, daily = value["15min"], value["daily"]
            parts.append(
                f"{name} {short['used']}/{short['limit']} this quarter hour,"
                f" {daily['used']}/{daily['limit']} today"
            )
    return "; ".join(parts) or None


class StoreBackend:
    """Use cases of the pages over one open database."""

    def __init__(
        self,
        settings: Settings,
        db: Any,
        environ: Mapping[str, str],
        *,
        clock: Callable[[], datetime] = _utc_now,
        garmin_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.garmin_factory = garmin_factory
        self.settings = settings
        self.db = db
        self.environ = environ
        self.clock = clock
        self._logins: PromptedLogins[Any] = PromptedLogins()

    # --- reading --------------------------------------------------------------------------

    def _athlete(self, name: str) -> AthleteSettings:
        try:
            return self.settings.athletes[name]
        except KeyError:
            if name == DEFAULT_ATHLETE:
                return AthleteSettings(DEFAULT_ATHLETE)
            raise UsageError(f"no athlete {name!r} in the config") from None

    def athletes(self) -> Sequence[str]:
        names = list(self.settings.athletes) or [DEFAULT_ATHLETE]
        return sorted(names, key=lambda n: (n != DEFAULT_ATHLETE, n))

    def dashboard(self, athlete: str) -> Dashboard:
        return build_dashboard(self.db, self._athlete(athlete), self.clock())

    def run_page(self, athlete: str, run_id: int) -> RunPage | None:
        from hillsync.classify import segment_terrain, smooth
        from hillsync.store import pages

        with self.db.session(readonly=True) as session:
            found = pages.run_with_profile(session, athlete, run_id)
        if found is None:
            return None
        detail, profile = found
        edges: Sequence[float] = ()
        alt: Sequence[float] = ()
        terrain: Sequence[Any] = ()
        if profile is not None and profile.altitude_m.size >= 2:
            e, a, terrain = segment_terrain(
                profile, smooth(profile), self.settings.classify.grade_pct
            )
            edges, alt = e.tolist(), a.tolist()
        return RunPage(
            id=detail.id,
            athlete=detail.athlete,
            start_time=detail.start_time,
            name=detail.name,
            sport=detail.sport,
            label=detail.label,
            distance_m=detail.distance_m,
            moving_time_s=detail.moving_time_s,
            elevation_gain_m=detail.elevation_gain_m,
            elevation_loss_m=detail.elevation_loss_m,
            uphill_m=detail.uphill_m,
            downhill_m=detail.downhill_m,
            flat_m=detail.flat_m,
            elevation_source=detail.elevation_source,
            reason=detail.reason,
            sources=detail.sources,
            edges_m=edges,
            altitude_m=alt,
            terrain=terrain,
        )

    def sources(self) -> Sequence[SourceRow]:
        from hillsync.cli import rate_budget
        from hillsync.store import repo
        from hillsync.worker import Worker

        specs = Worker(self.settings, self.db, environ=self.environ).source_specs()
        rows = []
        with self.db.session(readonly=True) as session:
            states = {s.name: s for s in repo.all_sync_states(session)}
            for spec in specs:
                st = states.get(spec.name)
                rows.append(
                    SourceRow(
                        name=spec.name,
                        kind=spec.kind,
                        athlete=spec.athlete,
                        state=st.state if st else "never_synced",
                        last_sync=st.last_sync if st else None,
                        next_sync=st.next_sync if st else None,
                        last_error=st.last_error if st else None,
                        rate_budget=_budget_text(rate_budget(st.cursor)) if st else None,
                        rejected=tuple(
                            (i.key, i.reason or "")
                            for i in (repo.rejected_items(session, st) if st else [])
                        ),
                        connected=True if spec.kind in ("strava", "garmin") else None,
                    )
                )
        return rows

    # --- share links ----------------------------------------------------------------------

    def add_share_link(self, athlete: str) -> str:
        from hillsync.store import pages, repo

        name = self._athlete(athlete).name
        token = new_share_token()
        with self.db.session() as session:
            row = repo.ensure_athlete(session, name)
            pages.add_share_link(session, row, share_hash(token), self.clock())
        return token

    def share_links(self, athlete: str) -> Sequence[ShareLinkRow]:
        from hillsync.store import pages

        with self.db.session(readonly=True) as session:
            return [
                ShareLinkRow(x.id, x.created_at, x.revoked_at)
                for x in pages.share_links(session, athlete)
            ]

    def revoke_share_link(self, athlete: str, link_id: int) -> bool:
        from hillsync.store import pages

        with self.db.session() as session:
            return pages.revoke_share_link(session, athlete, link_id, self.clock())

    def athlete_of_share(self, token: str) -> str | None:
        from hillsync.store import pages

        with self.db.session(readonly=True) as session:
            athlete = pages.athlete_of_share(session, share_hash(token))
        # An athlete removed from the config has no pages any more.
        return athlete if athlete in self.athletes() else None

    # --- Strava push events ---------------------------------------------------------------

    def strava_event(self, event: StravaEvent) -> str:
        """Create/update: the athlete's Strava source due now; delete: the activity gone;
        a deauthorization: the account and its Strava data deleted. Raises StoreError."""
        from hillsync.store import pages, repo

        now = self.clock()
        with self.db.session() as session:
            known = pages.push_subscription_ids(session)
            if known and event.subscription_id not in known:
                return "ignored: not our push subscription"
            athlete = pages.athlete_of_remote(session, "strava", str(event.owner_id))
            if athlete is None:
                return "ignored: no athlete here is this Strava athlete"
            source = source_full_name(athlete, "strava")
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

    # --- connecting -----------------------------------------------------------------------

    def garmin_login(self, athlete: str, email: str, password: str) -> ConnectResult:
        """Log in with the password (held only by this call's thread, never written).

        Returns a pending login id in `pending_mfa` when Garmin asks for an MFA code.
        """
        from hillsync import paths
        from hillsync.sources.garmin import connect_garmin

        name = self._athlete(athlete).name
        token_dir = paths.token_dir(self.environ, name, "garmin")
        # Only the password prompt may see the password; the environment's is not used.
        environ = {k: v for k, v in self.environ.items() if not k.startswith("HILLSYNC_GARMIN")}

        def run(ask_code: Callable[[], str], say: Callable[[str], None]) -> Any:
            factory = {"garmin_factory": self.garmin_factory} if self.garmin_factory else {}
            account = connect_garmin(
                token_dir,
                email=email,
                password_prompt=lambda: password,
                mfa_prompt=ask_code,
                environ=environ,
                **factory,
            )
            self._record(name, "garmin", account.remote_id, account.display_name, token_dir, None)
            return account

        return self._garmin_step(name, self._logins.start(run))

    def garmin_mfa(self, athlete: str, client_state: str, code: str) -> ConnectResult:
        step = self._logins.answer(client_state, code)
        if step is None:
            return ConnectResult(False, "This Garmin login is no longer waiting: start again.")
        return self._garmin_step(athlete, step)

    def _garmin_step(self, athlete: str, step: Any) -> ConnectResult:
        if step.login is not None:
            note = " ".join(step.notes)
            return ConnectResult(False, note or "Garmin asks for an MFA code.", step.login)
        if step.error is not None:
            if isinstance(step.error, HillsyncError):
                return ConnectResult(False, str(step.error))
            log.error("garmin_connect_failed", error=type(step.error).__name__)
            return ConnectResult(False, "The Garmin login failed unexpectedly (see the log).")
        who = step.result.display_name or step.result.remote_id or "account"
        return ConnectResult(True, f"Garmin {who} is connected for {athlete}.")

    def garmin_tokens(self, athlete: str, data: bytes) -> ConnectResult:
        """Import an uploaded garminconnect token file (verified by a token login)."""
        import tempfile
        from pathlib import Path

        from hillsync import paths
        from hillsync.sources.garmin import import_garmin_tokens

        name = self._athlete(athlete).name
        token_dir = paths.token_dir(self.environ, name, "garmin")
        with tempfile.TemporaryDirectory(prefix="hillsync-upload-") as tmp:
            upload = Path(tmp) / "garmin_tokens.json"
            upload.write_bytes(data)
            upload.chmod(0o600)
            try:
                factory = {"garmin_factory": self.garmin_factory} if self.garmin_factory else {}
                account = import_garmin_tokens(upload, token_dir, **factory)
            except HillsyncError as exc:
                return ConnectResult(False, str(exc))
        self._record(name, "garmin", account.remote_id, account.display_name, token_dir, None)
        who = account.display_name or account.remote_id or "account"
        return ConnectResult(True, f"Garmin {who} is connected for {name} (token file imported).")

    def _record(
        self,
        athlete: str,
        kind: str,
        remote_id: str | None,
        display_name: str | None,
        token_path: Any,
        scope: str | None,
    ) -> None:
        from hillsync.store import repo

        with self.db.session() as session:
            row = repo.ensure_athlete(session, athlete)
            repo.upsert_account(
                session, row, kind, remote_id, display_name, str(token_path), scope, self.clock()
            )
            repo.clear_needs_auth(session, source_full_name(athlete, kind))


# --- the application's push subscription (`hillsync webhook`) ------------------------------


def _push(settings: Settings, session: Any = None) -> tuple[Any, int]:
    from hillsync.errors import ConfigError
    from hillsync.sources.strava.push import PushSubscriptions

    strava = settings.strava
    if strava.client_id is None or strava.client_secret is None:
        raise ConfigError(
            "sources.strava.client_id and client_secret: required to manage the push subscription"
        )
    return PushSubscriptions(strava.client_id, strava.client_secret, session=session), (
        strava.client_id
    )


def webhook_subscribe(settings: Settings, db: Any, public_url: str, *, session: Any = None) -> Any:
    """Subscribe the Strava application to push events at PUBLIC_URL/strava/webhook.

    `hillsync serve` must answer there already: Strava validates the address before it
    answers. Raises ConfigError (no verify token, no application, bad URL), AuthRequired,
    SourceUnavailable, StoreError.
    """
    from hillsync.errors import ConfigError
    from hillsync.sources.strava.push import callback_url
    from hillsync.store import pages

    token: Secret | None = getattr(settings.strava, "webhook_verify_token", None)
    if token is None:
        raise ConfigError(
            "sources.strava.webhook_verify_token: required to subscribe (the same value"
            " `hillsync serve` checks)"
        )
    url = callback_url(public_url)
    push, client_id = _push(settings, session)
    made = push.subscribe(url, token)
    with db.session() as s:
        pages.save_push_subscription(s, client_id, made.id, url, _utc_now())
    return made


def webhook_show(settings: Settings, db: Any, *, session: Any = None) -> list[Any]:
    """The application's subscriptions as Strava lists them (the store follows Strava).

    Raises ConfigError, AuthRequired, SourceUnavailable, StoreError.
    """
    from hillsync.store import pages

    push, client_id = _push(settings, session)
    found = push.show()
    with db.session() as s:
        if found:
            sub = found[0]
            pages.save_push_subscription(s, client_id, sub.id, sub.callback_url, _utc_now())
        else:
            pages.forget_push_subscription(s, client_id)
    return list(found)


def webhook_unsubscribe(settings: Settings, db: Any, *, session: Any = None) -> list[int]:
    """Delete the application's subscription; polling returns to `poll_minutes`.

    Raises ConfigError, AuthRequired, SourceUnavailable, StoreError.
    """
    from hillsync.store import pages

    push, client_id = _push(settings, session)
    gone: list[int] = push.unsubscribe()
    with db.session() as s:
        pages.forget_push_subscription(s, client_id)
    return gone
