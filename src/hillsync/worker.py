"""One sync cycle, and the long-running loop built from it.

The worker is the only place where sources, the store, the classifier, the balance and the
notifier meet: a source yields batches, each batch is classified and committed with the
source's cursor in one transaction, then every athlete's balance is evaluated once and the
outbox is delivered.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import structlog
import tenacity
from sqlalchemy.orm import Session

from hillsync import alerts, classify, paths
from hillsync.config import DEFAULT_ATHLETE, AthleteSettings, Settings
from hillsync.errors import AuthRequired, RateLimited, SourceError
from hillsync.model import (
    Activity,
    BalanceReport,
    Batch,
    Classification,
    ClassifyParams,
    Profile,
    Secret,
    Summary,
)
from hillsync.notify import DeliveryResult, Notifier
from hillsync.sources.base import Source, SourceState
from hillsync.store import outbox, repo
from hillsync.store.db import Database

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]

#: The longest a failing source waits between two tries, however often it failed.
MAX_BACKOFF = timedelta(hours=6)


def utc_now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


def default_retrying() -> tenacity.Retrying:
    """Retries of 5xx answers and timeouts in one sync: bounded exponential backoff, jitter."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(4),
        wait=tenacity.wait_random_exponential(multiplier=1, max=20),
        reraise=True,
    )


def summary_of(activity: Activity) -> Summary:
    """What the classifier needs of an activity's summary."""
    return Summary(
        sport=activity.sport,
        distance_m=activity.distance_m,
        reported_gain_m=activity.reported_gain_m,
        reported_loss_m=activity.reported_loss_m,
        elevation_range_m=activity.elevation_range_m,
        start_latlng=activity.start_latlng,
        end_latlng=activity.end_latlng,
        indoor=activity.indoor,
    )


def classify_activity(
    activity: Activity, params: ClassifyParams
) -> tuple[Profile | None, Classification]:
    """The activity's cleaned profile (if it has samples) and its classification."""
    profile = activity.profile
    if profile is None and activity.track is not None and len(activity.track):
        profile = classify.build_profile(activity.track)
    return profile, classify.classify(summary_of(activity), profile, params)


def needs_profile_check(params: ClassifyParams) -> Callable[[Activity], bool]:
    """A predicate for API sources: does this summary need its profile to be labelled?"""

    def needs_profile(activity: Activity) -> bool:
        return classify.classify(summary_of(activity), None, params).needs_profile

    return needs_profile


@dataclass(frozen=True)
class SourceSpec:
    """A configured source: what it is called, whose it is, how often to poll, how to build it."""

    name: str
    kind: str
    athlete: str
    poll_minutes: float
    build: Callable[[], Source] = field(compare=False, repr=False)
    reconnect_command: str = ""


@dataclass(frozen=True)
class SourceOutcome:
    """What one source's sync did."""

    name: str
    kind: str
    athlete: str
    state: str
    new: int = 0
    updated: int = 0
    rejected: int = 0
    error: str | None = None
    skipped: str | None = None

    @property
    def partial(self) -> bool:
        """True when this source makes the whole sync partial (exit code 3)."""
        return self.state in {"needs_auth", "rate_limited", "error"} or self.rejected > 0


@dataclass(frozen=True)
class CycleResult:
    """The outcome of one sync cycle."""

    outcomes: Sequence[SourceOutcome]
    reports: Mapping[str, BalanceReport]
    delivery: DeliveryResult | None = None

    @property
    def partial(self) -> bool:
        """True when some source failed, was parked or rejected input."""
        return any(o.partial for o in self.outcomes)

    @property
    def stored(self) -> int:
        """How many activities were added or changed."""
        return sum(o.new + o.updated for o in self.outcomes)


def source_full_name(athlete: str, name: str) -> str:
    """`strava` for the default athlete, `anna/strava` for the others."""
    return name if athlete == DEFAULT_ATHLETE else f"{athlete}/{name}"


def matches(spec: SourceSpec, wanted: str | None) -> bool:
    """Whether `--source wanted` names this source: its name, its short name or its kind."""
    if wanted is None:
        return True
    short = spec.name.rsplit("/", 1)[-1]
    return wanted in {spec.name, short, spec.kind}


class Worker:
    """Syncs sources into the store, evaluates balances and delivers notifications."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        environ: Mapping[str, str],
        clock: Clock = utc_now,
        retrying: Callable[[], tenacity.Retrying] = default_retrying,
        progress: Callable[[str, int], None] | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.db = db
        self.environ = environ
        self.clock = clock
        self.retrying = retrying
        self.progress = progress

    # -- which sources there are -------------------------------------------------------

    def source_specs(self) -> list[SourceSpec]:
        """Every configured source: folders from the config, accounts from the store."""
        specs: list[SourceSpec] = []
        for athlete in self.settings.athletes.values():
            for folder in athlete.folders:
                specs.append(
                    self._folder_spec(athlete, folder.name, folder.path, folder.poll_minutes)
                )
        with self.db.session() as session:
            accounts = repo.list_accounts(session)
            account_rows = [(a.athlete_name, a.kind) for a in accounts]
        for athlete_name, kind in account_rows:
            if kind == "strava":
                specs.append(self._strava_spec(athlete_name))
            elif kind == "garmin":
                specs.append(self._garmin_spec(athlete_name))
        return specs

    def _folder_spec(
        self, athlete: AthleteSettings, name: str, path: Path, poll: float
    ) -> SourceSpec:
        from hillsync.sources.files import FolderSource

        full = source_full_name(athlete.name, name)
        return SourceSpec(
            name=full,
            kind="folder",
            athlete=athlete.name,
            poll_minutes=poll,
            build=lambda: FolderSource(full, path, clock=self.clock),
        )

    def _strava_spec(self, athlete: str) -> SourceSpec:
        full = source_full_name(athlete, "strava")
        command = reconnect_command("strava", athlete)
        strava = self.settings.strava

        def build() -> Source:
            from hillsync.sources.strava import StravaSource

            if strava.client_id is None or strava.client_secret is None:
                raise AuthRequired(
                    "sources.strava.client_id and client_secret are not configured",
                    source=full,
                    command=command,
                )
            return StravaSource(
                full,
                client_id=strava.client_id,
                client_secret=strava.client_secret,
                token_path=paths.token_path(self.environ, athlete, "strava"),
                streams=strava.streams,
                needs_profile=needs_profile_check(self.settings.classify),
                clock=self.clock,
                retrying=self.retrying(),
                reconnect_command=command,
            )

        return SourceSpec(full, "strava", athlete, strava.poll_minutes, build, command)

    def _garmin_spec(self, athlete: str) -> SourceSpec:
        full = source_full_name(athlete, "garmin")
        command = reconnect_command("garmin", athlete)
        garmin = self.settings.garmin

        def build() -> Source:
            from hillsync.sources.garmin import GarminSource

            return GarminSource(
                full,
                token_dir=paths.token_dir(self.environ, athlete, "garmin"),
                streams=garmin.streams,
                needs_profile=needs_profile_check(self.settings.classify),
                clock=self.clock,
                retrying=self.retrying(),
                reconnect_command=command,
            )

        return SourceSpec(full, "garmin", athlete, garmin.poll_minutes, build, command)

    # -- one cycle ---------------------------------------------------------------------

    def sync_cycle(
        self,
        *,
        only: str | None = None,
        since: date | None = None,
        full: bool = False,
        due_only: bool = False,
        deliver: bool = True,
    ) -> CycleResult:
        """Sync every source (or those `only` names), then evaluate balances and deliver.

        A source parked by a rate limit, or waiting for re-authentication, is skipped.
        With `due_only`, sources whose next sync is still ahead are skipped too.
        Source failures are recorded in the outcome, never raised.
        """
        specs = [s for s in self.source_specs() if matches(s, only)]
        outcomes = [
            self.sync_source(spec, since=since, full=full, due_only=due_only) for spec in specs
        ]
        reports = self.evaluate_balances()
        delivery = self.deliver() if deliver else None
        return CycleResult(outcomes, reports, delivery)

    def sync_source(
        self,
        spec: SourceSpec,
        *,
        since: date | None = None,
        full: bool = False,
        due_only: bool = False,
    ) -> SourceOutcome:
        """Sync one source; its failure becomes its state, never an exception."""
        now = self.clock()
        with self.db.session() as session:
            athlete = repo.ensure_athlete(session, spec.athlete)
            state_row = repo.ensure_sync_state(session, athlete, spec.name, spec.kind)
            parked = parked_reason(state_row.state, state_row.next_sync, now, due_only=due_only)
            if parked is not None:
                return SourceOutcome(
                    spec.name,
                    spec.kind,
                    spec.athlete,
                    state_row.state,
                    error=state_row.last_error,
                    skipped=parked,
                )
            source_state = SourceState(
                since=self._since(since),
                cursor=dict(state_row.cursor or {}),
                seen=repo.load_seen(session, state_row),
                full=full,
                newest_start=repo.newest_start(session, state_row),
            )
            state_id = state_row.id
        new = updated = rejected = 0
        status: str = "ok"
        error: str | None = None
        next_sync: datetime | None = now + poll_interval(spec.poll_minutes)
        try:
            source = spec.build()
            for batch in source.fetch(source_state):
                result = self._store_batch(state_id, batch)
                new, updated, rejected = (
                    new + result.new,
                    updated + result.updated,
                    rejected + result.rejected,
                )
                if self.progress is not None:
                    self.progress(spec.name, len(batch.seen) or len(batch.activities))
                if self.stop():
                    # What is committed stays; the cursor resumes from here next time.
                    next_sync = self.clock()
                    break
        except AuthRequired as exc:
            status, error, next_sync = "needs_auth", str(exc), None
        except RateLimited as exc:
            status, error, next_sync = "rate_limited", str(exc), exc.resume_at
        except SourceError as exc:
            status, error = "error", str(exc)
        finally:
            with self.db.session() as session:
                state_row = repo.get_sync_state(session, state_id)
                if status == "error":
                    next_sync = self.clock() + backoff(spec.poll_minutes, state_row.failures + 1)
                newly = state_row.state != status
                repo.record_sync_result(
                    session,
                    state_row,
                    status=status,
                    now=self.clock(),
                    next_sync=next_sync,
                    error=error,
                )
                if status == "needs_auth" and newly:
                    self._enqueue_needs_auth(session, spec, state_row.athlete_id)
                if status == "needs_auth":
                    repo.set_account_state(session, spec.athlete, spec.kind, "needs_auth")
        outcome = SourceOutcome(
            spec.name, spec.kind, spec.athlete, status, new, updated, rejected, error
        )
        level = log.info if status == "ok" else log.warning
        level(
            "synced",
            source=spec.name,
            state=status,
            new=new,
            updated=updated,
            rejected=rejected,
            error=error,
        )
        return outcome

    def _since(self, since: date | None) -> datetime:
        if since is not None:
            return datetime.combine(since, time(0), tzinfo=UTC)
        return self.clock() - timedelta(days=self.settings.sync.backfill_days)

    def _store_batch(self, state_id: int, batch: Batch) -> repo.BatchResult:
        params = self.settings.classify
        classified = {a.source_id: classify_activity(a, params) for a in batch.activities}
        with self.db.session() as session:
            state_row = repo.get_sync_state(session, state_id)
            return repo.save_batch(
                session, state_row, batch, classified, set(self.settings.sync.sports), self.clock()
            )

    def _enqueue_needs_auth(self, session: Session, spec: SourceSpec, athlete_id: int) -> None:
        athlete = self.settings.athletes.get(spec.athlete)
        urls = athlete.notify.urls if athlete else ()
        alerts.enqueue_needs_auth(
            session,
            athlete_id,
            spec.athlete,
            spec.name,
            spec.reconnect_command,
            [outbox.url_key(u.reveal()) for u in urls],
            self.clock(),
        )

    # -- balance and notifications ----------------------------------------------------

    def evaluate_balances(self, at: datetime | None = None) -> dict[str, BalanceReport]:
        """Evaluate every athlete's balance once, writing warnings to the outbox."""
        now = self.clock()
        at = at or now
        reports: dict[str, BalanceReport] = {}
        for athlete in self.settings.athletes.values():
            goal = athlete.goal.goal()
            with self.db.session() as session:
                row = repo.ensure_athlete(session, athlete.name)
                runs = repo.runs_for_balance(
                    session, athlete.name, at - timedelta(days=goal.window_days), at
                )
                reports[athlete.name] = alerts.evaluate_athlete(
                    session,
                    row.id,
                    athlete.name,
                    goal,
                    remind_days=athlete.notify.remind_days,
                    url_keys=[outbox.url_key(u.reveal()) for u in athlete.notify.urls],
                    now=at,
                    runs=runs,
                )
        return reports

    def all_urls(self) -> list[Secret]:
        """Every notification URL of every athlete, once each."""
        seen: dict[str, Secret] = {}
        for athlete in self.settings.athletes.values():
            for url in athlete.notify.urls:
                seen.setdefault(url.reveal(), url)
        return list(seen.values())

    def deliver(self) -> DeliveryResult:
        """Deliver what is due in the outbox; a failing URL never raises."""
        notifier = Notifier(self.all_urls(), clock=self.clock)
        return notifier.deliver_pending(self.db.session)


def reconnect_command(kind: str, athlete: str) -> str:
    """The exact command that reconnects an account."""
    if athlete == DEFAULT_ATHLETE:
        return f"hillsync connect {kind}"
    return f"hillsync connect {kind} --athlete {athlete}"


def parked_reason(
    state: str, next_sync: datetime | None, now: datetime, *, due_only: bool
) -> str | None:
    """Why a source is not synced now, or None when it is."""
    if state == "needs_auth":
        return "needs re-authentication"
    if state == "rate_limited" and next_sync is not None and next_sync > now:
        return f"rate-limited until {next_sync:%H:%M} UTC"
    if due_only and next_sync is not None and next_sync > now:
        return "not due"
    return None


def poll_interval(poll_minutes: float) -> timedelta:
    """The time to the next poll, with up to 5% jitter so sources do not fire together."""
    return timedelta(minutes=poll_minutes * (1 + random.uniform(0, 0.05)))


def backoff(poll_minutes: float, failures: int) -> timedelta:
    """The wait after `failures` failures in a row: the poll interval, doubling, capped."""
    wait = timedelta(minutes=poll_minutes) * float(2 ** min(20, max(0, failures - 1)))
    return min(wait, max(MAX_BACKOFF, timedelta(minutes=poll_minutes)))


class Daemon:
    """`hillsync run`: each source at its own poll interval, until SIGTERM or SIGINT.

    Sleeps until the next source or delivery is due (interruptibly, no busy polling),
    evaluates balances after a cycle that stored something and at least once a day, and
    speaks systemd's notify protocol. SIGHUP reloads the config; a bad one keeps the old.
    """

    def __init__(
        self,
        load_settings: Callable[[], Settings],
        *,
        environ: Mapping[str, str],
        clock: Clock = utc_now,
        max_sleep_s: float = 300.0,
    ) -> None:
        import threading

        from hillsync.systemd import SystemdNotifier

        self.load_settings = load_settings
        self.environ = environ
        self.clock = clock
        self.max_sleep_s = max_sleep_s
        self.systemd = SystemdNotifier(environ)
        self._wake = threading.Event()
        self._stopping = False
        self._reload = False
        self._last_balance: datetime | None = None
        self._reports: Mapping[str, BalanceReport] = {}
        self._synced_today: tuple[date, int] = (date.min, 0)

    # Signal handlers only set flags: the loop acts on them between transactions.
    def request_stop(self, *_: object) -> None:
        """Finish the current transaction, then exit."""
        self._stopping = True
        self._wake.set()

    def request_reload(self, *_: object) -> None:
        """Reload the config before the next cycle."""
        self._reload = True
        self._wake.set()

    def run(self) -> int:
        """Run until stopped; returns the exit code (0 on SIGTERM/SIGINT).

        Raises ConfigError or StoreError when the service cannot start at all.
        """
        import signal

        from hillsync.store.db import open_database

        settings = self.load_settings()
        db = open_database(settings.database.url or paths.default_database_url(self.environ))
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)
        self.systemd.ready("started")
        log.info("started", sources=len(Worker(settings, db, environ=self.environ).source_specs()))
        try:
            while not self._stopping:
                if self._reload:
                    settings, db = self._reloaded(settings, db)
                wait_s = self.cycle(settings, db)
                self.systemd.watchdog()
                self._wake.wait(timeout=wait_s)
                self._wake.clear()
        finally:
            self.systemd.stopping()
            db.close()
            log.info("stopped")
        return 0

    def _reloaded(self, settings: Settings, db: Database) -> tuple[Settings, Database]:
        from hillsync.errors import ConfigError, StoreError
        from hillsync.store.db import open_database

        self._reload = False
        self.systemd.reloading()
        try:
            new = self.load_settings()
            if new.database != settings.database:
                new_db = open_database(new.database.url or paths.default_database_url(self.environ))
                db.close()
                db = new_db
        except (ConfigError, StoreError) as exc:
            problems = getattr(exc, "problems", (str(exc),))
            log.error("config reload failed, keeping the old config", problems=list(problems))
            self.systemd.send("READY=1")
            return settings, db
        log.info("config reloaded")
        self.systemd.send("READY=1")
        return new, db

    def cycle(self, settings: Settings, db: Database) -> float:
        """Sync what is due, evaluate, deliver; returns the seconds to sleep."""
        worker = Worker(
            settings,
            db,
            environ=self.environ,
            clock=self.clock,
            stop=lambda: self._stopping,
            progress=lambda _source, _items: self.systemd.watchdog(),
        )
        stored = 0
        for spec in worker.source_specs():
            if self._stopping:
                break
            outcome = worker.sync_source(spec, due_only=True)
            if outcome.skipped is None:
                stored += outcome.new + outcome.updated
        now = self.clock()
        self._count_synced(now, stored)
        if not self._stopping and (
            stored or self._last_balance is None or now - self._last_balance >= timedelta(days=1)
        ):
            self._reports = worker.evaluate_balances()
            self._last_balance = now
        if not self._stopping:
            worker.deliver()
        next_due = self.next_due(worker, db)
        self.systemd.status(self.status_line(self._reports, next_due))
        return self.sleep_seconds(next_due)

    def _count_synced(self, now: datetime, stored: int) -> None:
        day, count = self._synced_today
        self._synced_today = (now.date(), (count if day == now.date() else 0) + stored)

    def next_due(self, worker: Worker, db: Database) -> datetime | None:
        """The earliest time a source or a notification delivery is due."""
        with db.session() as session:
            times = [
                s.next_sync
                for s in repo.all_sync_states(session)
                if s.next_sync is not None and s.state != "needs_auth"
            ]
            delivery = outbox.next_attempt_at(
                session, [outbox.url_key(u.reveal()) for u in worker.all_urls()]
            )
        names = {s.name for s in worker.source_specs()}
        with db.session() as session:
            known = {s.name for s in repo.all_sync_states(session)}
        if names - known:
            times.append(self.clock())
        if delivery is not None:
            times.append(delivery)
        return min(times, default=None)

    def sleep_seconds(self, next_due: datetime | None) -> float:
        """Until the next due time, but never past the watchdog's half-period."""
        limit = self.max_sleep_s
        if self.systemd.watchdog_s is not None:
            limit = min(limit, self.systemd.watchdog_s / 2)
        if next_due is None:
            return limit
        return max(0.05, min(limit, (next_due - self.clock()).total_seconds()))

    def status_line(self, reports: Mapping[str, BalanceReport], next_due: datetime | None) -> str:
        """ "14 runs synced today; hill share 18% (goal 10-25%); next sync 18:45"."""
        parts = [f"{self._synced_today[1]} activities synced today"]
        report = reports.get(DEFAULT_ATHLETE)
        if report is not None and report.hill_share is not None:
            goal = report.goal
            parts.append(
                f"hill share {report.hill_share:.0%} "
                f"(goal {goal.hill_share_min:.0%}-{goal.hill_share_max:.0%})"
            )
        if next_due is not None:
            parts.append(f"next sync {next_due:%H:%M} UTC")
        return "; ".join(parts)
