"""Which sources and notification URLs the settings (and the connected accounts) configure.

Folders come from the config; Strava and Garmin sources from the accounts connected with
`hillsync connect` (kept in the store, passed in here). A `SourceSpec` says what a source is
called, whose it is, how often it is polled, and how to build it: building is deferred, so
listing the sources (for `status`) imports no API client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import tenacity

from hillsync import paths
from hillsync.clock import Clock
from hillsync.config import DEFAULT_ATHLETE, AthleteSettings, Settings
from hillsync.errors import AuthRequired
from hillsync.model import Secret, SourceKind
from hillsync.pipeline import needs_profile_check, profiled
from hillsync.sources.base import SharedBudget, Source
from hillsync.store.budgets import strava_app as budget_name

if TYPE_CHECKING:
    from hillsync.sources.garmin import LoggedInClients
    from hillsync.sources.strava.connect import StravaApp

#: Files per folder transaction: small enough that SIGTERM, checked between batches, is
#: obeyed within a few seconds even on large FIT files; large enough to commit rarely.
FOLDER_BATCH = 20


@dataclass(frozen=True)
class SourceSpec:
    """A configured source: what it is called, whose it is, how often to poll, how to build it."""

    name: str
    kind: SourceKind
    athlete: str
    poll_minutes: float
    build: Callable[[], Source] = field(compare=False, repr=False)
    reconnect_command: str = ""
    #: The API application whose rate budget the source shares (`strava:CLIENT_ID`).
    budget_app: str | None = None
    #: Renew the lease from a thread between commits (`leases.Keeper`): an API page can
    #: take minutes. Not for a folder: its batches commit every FOLDER_BATCH files (each
    #: renewing the lease), and its reading pool forks, which a live thread makes unsafe.
    lease_keeper: bool = True


@dataclass(frozen=True)
class ConnectedAccount:
    """An account `hillsync connect` recorded: whose it is and of which kind."""

    athlete: str
    kind: SourceKind


def source_full_name(athlete: str, name: str) -> str:
    """`strava` for the default athlete, `anna/strava` for the others. Raises nothing."""
    return name if athlete == DEFAULT_ATHLETE else f"{athlete}/{name}"


def reconnect_command(kind: SourceKind, athlete: str) -> str:
    """The exact command that reconnects an account. Raises nothing."""
    if athlete == DEFAULT_ATHLETE:
        return f"hillsync connect {kind}"
    return f"hillsync connect {kind} --athlete {athlete}"


def matches(spec: SourceSpec, wanted: str | None) -> bool:
    """Whether `--source wanted` names this source: its name, its short name or its kind."""
    if wanted is None:
        return True
    short = spec.name.rsplit("/", 1)[-1]
    return wanted in {spec.name, short, spec.kind.value}


def notify_urls(settings: Settings) -> list[Secret]:
    """Every notification URL of every athlete, once each, in config order."""
    seen: dict[str, Secret] = {}
    for athlete in settings.athletes.values():
        for url in athlete.notify.urls:
            seen.setdefault(url.reveal(), url)
    return list(seen.values())


def strava_app(settings: Settings, athlete: str) -> StravaApp | None:
    """The Strava application `athlete` connects through (their own
    [athletes.NAME.sources.strava], else the top-level one) on the configured `api_base`,
    or None when none is configured. Raises nothing."""
    from hillsync.sources.strava.connect import StravaApp

    own = settings.athletes[athlete].strava if athlete in settings.athletes else None
    chosen = own if own is not None else settings.strava
    if chosen.client_id is None or chosen.client_secret is None:
        return None
    key = f"athletes.{athlete}.sources.strava" if own is not None else "sources.strava"
    return StravaApp(
        chosen.client_id, chosen.client_secret, api_base=settings.strava.api_base, key=key
    )


class Registry:
    """Builds the `SourceSpec`s of the settings; the built sources share the clock, the
    retry policy, the stop request and the logged-in Garmin clients given here."""

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str],
        clock: Clock,
        retrying: Callable[[], tenacity.Retrying],
        stop: Callable[[], bool] = lambda: False,
        garmin_clients: LoggedInClients | None = None,
        shared_budget: Callable[[str], SharedBudget] | None = None,
    ) -> None:
        self.settings = settings
        self.environ = environ
        self.clock = clock
        self.retrying = retrying
        self.stop = stop
        self.garmin_clients = garmin_clients
        #: The budget of an API application by name, shared with other workers (the store's).
        self.shared_budget = shared_budget

    def specs(
        self,
        accounts: Iterable[ConnectedAccount],
        daily_read_limits: Mapping[str, int] | None = None,
    ) -> list[SourceSpec]:
        """Every configured source: folders from the config, then the connected accounts.

        `daily_read_limits` (by source name) are the Strava daily read limits last
        reported, for the poll stretching of athletes sharing an application.
        Raises nothing (a source that cannot be built fails when it is built).
        """
        specs: list[SourceSpec] = []
        for athlete in self.settings.athletes.values():
            for folder in athlete.folders:
                specs.append(self._folder(athlete, folder.name, folder.path, folder.poll_minutes))
        accounts = list(accounts)
        polls = self._strava_polls(
            [a.athlete for a in accounts if a.kind is SourceKind.STRAVA], daily_read_limits or {}
        )
        for account in accounts:
            if account.kind is SourceKind.STRAVA:
                specs.append(self._strava(account.athlete, polls[account.athlete]))
            elif account.kind is SourceKind.GARMIN:
                specs.append(self._garmin(account.athlete))
        return specs

    def _strava_polls(
        self, athletes: Sequence[str], daily_read_limits: Mapping[str, int]
    ) -> dict[str, float]:
        """Each Strava athlete's poll interval: stretched when several share one application,
        so that the application's daily reads keep a reserve (DESIGN section 10)."""
        from hillsync.sources.strava.pollplan import DAILY_READS, stretched_poll_minutes

        by_app: dict[int | None, list[str]] = {}
        for athlete in athletes:
            app = strava_app(self.settings, athlete)
            by_app.setdefault(app.client_id if app else None, []).append(athlete)
        configured = self.settings.strava.poll_minutes
        polls: dict[str, float] = {}
        for names in by_app.values():
            # A raised application reports its own daily limit in the rate headers.
            limits = [
                daily_read_limits.get(source_full_name(n, SourceKind.STRAVA), 0) for n in names
            ]
            daily = max((x for x in limits if x), default=DAILY_READS)
            interval = stretched_poll_minutes(configured, len(names), daily)
            polls.update(dict.fromkeys(names, interval))
        return polls

    def _folder(self, athlete: AthleteSettings, name: str, path: Path, poll: float) -> SourceSpec:
        full = source_full_name(athlete.name, name)
        clock = self.clock
        untyped = self.settings.sync.untyped
        workers = self.settings.sync.workers

        def build() -> Source:
            from hillsync.sources.files import FolderSource

            # The reading processes build each activity's profile (most of classifying):
            # the writer then classifies a small profile, and a track never crosses over.
            return FolderSource(
                full,
                path,
                clock=clock,
                batch_size=FOLDER_BATCH,
                untyped=untyped,
                workers=workers,
                prepare=profiled,
            )

        return SourceSpec(full, SourceKind.FOLDER, athlete.name, poll, build, lease_keeper=False)

    def _strava(self, athlete: str, poll_minutes: float) -> SourceSpec:
        full = source_full_name(athlete, SourceKind.STRAVA)
        command = reconnect_command(SourceKind.STRAVA, athlete)
        strava = self.settings.strava
        client_id = self.settings.strava_app(athlete).client_id
        budget_app = budget_name(client_id) if client_id is not None else None
        shared = self.shared_budget

        def build() -> Source:
            from hillsync.sources.strava import StravaSource

            app = strava_app(self.settings, athlete)
            if app is None:
                raise AuthRequired(
                    "sources.strava.client_id and client_secret are not configured",
                    source=full,
                    command=command,
                )
            return StravaSource(
                full,
                client_id=app.client_id,
                client_secret=app.client_secret,
                token_path=paths.token_path(self.environ, athlete, SourceKind.STRAVA),
                streams=strava.streams,
                needs_profile=needs_profile_check(self.settings.classify),
                clock=self.clock,
                retrying=self.retrying(),
                reconnect_command=command,
                api_base=app.api_base,
                budget=shared(budget_app) if shared is not None and budget_app else None,
            )

        return SourceSpec(
            full, SourceKind.STRAVA, athlete, poll_minutes, build, command, budget_app
        )

    def _garmin(self, athlete: str) -> SourceSpec:
        full = source_full_name(athlete, SourceKind.GARMIN)
        command = reconnect_command(SourceKind.GARMIN, athlete)
        garmin = self.settings.garmin

        def build() -> Source:
            from hillsync.sources.garmin import GarminSource, LoggedInClients

            if self.garmin_clients is None:
                self.garmin_clients = LoggedInClients()
            return GarminSource(
                full,
                token_dir=paths.token_dir(self.environ, athlete, SourceKind.GARMIN),
                streams=garmin.streams,
                needs_profile=needs_profile_check(self.settings.classify),
                clock=self.clock,
                retrying=self.retrying(),
                reconnect_command=command,
                clients=self.garmin_clients,
            )

        return SourceSpec(full, SourceKind.GARMIN, athlete, garmin.poll_minutes, build, command)


def select_specs(specs: Sequence[SourceSpec], wanted: str | None) -> list[SourceSpec]:
    """The specs `--source wanted` names (all of them for None). Raises nothing."""
    return [s for s in specs if matches(s, wanted)]
