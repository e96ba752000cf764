"""One sync cycle, and the long-running loop built from it.

The worker is the only place where sources, the store, the classifier, the balance and the
notifier meet: a source yields batches, each batch is classified and committed with the
source's cursor in one transaction, then every athlete's balance is evaluated once and the
outbox is delivered.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from time import monotonic
from typing import TYPE_CHECKING

import structlog
import tenacity
from sqlalchemy.orm import Session

from hillsync import alerts
from hillsync.backoff import exponential
from hillsync.balance import digest_due, digest_message, evaluate, history_start, next_digest
from hillsync.clock import Clock, utc_now
from hillsync.config import DEFAULT_ATHLETE, NotifySettings, Settings
from hillsync.coursefile import CourseReader
from hillsync.errors import (
    AccessRevoked,
    AuthRequired,
    ConfigError,
    HillsyncError,
    RateLimited,
    StoreError,
    UsageError,
)
from hillsync.model import BalanceReport, BalanceStatus, Batch, RunForBalance, Secret
from hillsync.notify import DeliveryResult, Notifier
from hillsync.pipeline import store_batch
from hillsync.registry import ConnectedAccount, Registry, SourceSpec, notify_urls, select_specs
from hillsync.retry import default_retrying, interruptible
from hillsync.sources.base import SourceState, rate_budget
from hillsync.staleness import staleness
from hillsync.store import health, outbox, repo
from hillsync.store.db import Database
from hillsync.store.deletion import delete_source_data
from hillsync.store.tables import SyncState

if TYPE_CHECKING:
    from hillsync.sources.garmin import LoggedInClients

log = structlog.get_logger(__name__)

#: The longest a failing source waits between two tries, however often it failed.
MAX_BACKOFF = timedelta(hours=6)


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
    deleted: int = 0
    #: Files still being written, left for the next sync.
    waiting: int = 0

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
        progress: Callable[[str, int, int | None], None] | None = None,
        stop: Callable[[], bool] = lambda: False,
        tz: tzinfo | None = None,
        garmin_clients: LoggedInClients | None = None,
    ) -> None:
        #: Logged-in Garmin clients, kept across cycles by whoever runs them (the daemon).
        self.garmin_clients = garmin_clients
        self.settings = settings
        self.stop = stop
        self.db = db
        self.environ = environ
        self.clock = clock
        self.retrying = retrying
        self.progress = progress
        #: The digest's local time zone (None: the system's).
        self.tz = tz
        self.courses = CourseReader(settings.classify)

    # -- which sources there are -------------------------------------------------------

    def source_specs(self) -> list[SourceSpec]:
        """Every configured source: folders from the config, accounts from the store."""
        with self.db.session(readonly=True) as session:
            accounts = [ConnectedAccount(a, k) for a, k in repo.connected_kinds(session)]
            limits = {
                name: budget.daily.limit
                for name, view in repo.sync_state_views(session).items()
                if (report := rate_budget(view.cursor)) is not None
                for budget in report.budgets
                if budget.name == "read"
            }
        registry = Registry(
            self.settings,
            environ=self.environ,
            clock=self.clock,
            retrying=self.retrying,
            stop=self.stop,
            garmin_clients=self.garmin_clients,
        )
        specs = registry.specs(accounts, limits)
        # The registry makes the clients on first use: keep them for the next cycle.
        self.garmin_clients = registry.garmin_clients
        return specs

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
        Source failures are recorded in the outcome, never raised. Raises UsageError when
        `only` names no configured source, and StoreError when the database fails.
        """
        specs = select_specs(self.source_specs(), only)
        if only is not None and not specs:
            # Before anything is evaluated or sent: a typo must not push notifications.
            raise UsageError(f"no source named {only!r} (see `hillsync status`)")
        outcomes = [
            self.sync_source(spec, since=since, full=full, due_only=due_only) for spec in specs
        ]
        reports = self.evaluate_balances()
        self.send_digests()
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
            state_row = repo.ensure_sync_state(session, athlete, spec.name, spec.kind.value)
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
        new = updated = rejected = deleted = waiting = 0
        revoked = False
        # Until the fetch ends, the source counts as failed: whatever stops it (a bug, a
        # database failure) leaves it in error with a backoff, never as ok.
        status: str = "error"
        error: str | None = "the sync stopped on an unexpected error (see the log)"
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
                deleted += result.deleted
                waiting += len(batch.waiting)
                if self.progress is not None:
                    done = len(batch.seen) + len(batch.waiting) or len(batch.activities)
                    self.progress(spec.name, done, batch.total)
                if self.stop():
                    # What is committed stays; the cursor resumes from here next time.
                    next_sync = self.clock()
                    break
            status, error = "ok", None
        except AccessRevoked as exc:
            status, error, next_sync = "needs_auth", str(exc), None
            revoked = True
        except AuthRequired as exc:
            status, error, next_sync = "needs_auth", str(exc), None
        except RateLimited as exc:
            status, error, next_sync = "rate_limited", str(exc), exc.resume_at
        except HillsyncError as exc:  # the source's own errors, and the store's
            status, error = "error", str(exc)
        except KeyboardInterrupt:
            # Ctrl-C: what is committed stays, and the next sync resumes at once, without
            # the backoff of a failure.
            status, error, next_sync = "interrupted", "interrupted (Ctrl-C)", self.clock()
            raise
        except Exception as exc:
            # The one fault boundary outside cli.py: a bug or an unmapped library error in
            # one source must not stop the other sources, the balance or the deliveries
            # (nor crash-loop the daemon). It is logged with its traceback (secrets masked)
            # and the source waits out a backoff in `error`.
            log.exception("source_failed", source=spec.name, error=type(exc).__name__)
            error = f"unexpected {type(exc).__name__} (a bug: see the log, run with -v)"
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
                    repo.set_account_state(session, spec.athlete, spec.kind.value, "needs_auth")
                if status == "ok":
                    self._check_stale(session, spec, state_row)
            if revoked:
                # After the needs_auth message (committed above): the athlete revoked access,
                # and Strava's API Agreement wants what came only from it deleted.
                with self.db.session() as session:
                    removed = delete_source_data(
                        session, spec.athlete, spec.kind.value, keep_states=True
                    )
                log.warning("access_revoked", source=spec.name, deleted=removed.activities)
        outcome = SourceOutcome(
            spec.name,
            spec.kind,
            spec.athlete,
            status,
            new,
            updated,
            rejected,
            error,
            deleted=deleted,
            waiting=waiting,
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

    def _check_stale(self, session: Session, spec: SourceSpec, state_row: SyncState) -> None:
        """Notice a source that delivered regularly and fell silent (once), and clear it
        when a run arrives."""
        athlete = self.settings.athletes.get(spec.athlete)
        stale_days = athlete.notify.stale_days if athlete else NotifySettings().stale_days
        now = self.clock()
        stale = staleness(health.run_starts(session, state_row), now, stale_days)
        if stale is None:
            if state_row.stale_since is not None:
                log.info("source_delivering_again", source=spec.name)
                state_row.stale_since = None
            return
        if state_row.stale_since is not None:
            return
        state_row.stale_since = now
        urls = athlete.notify.urls if athlete else ()
        alerts.enqueue_stale(
            session,
            state_row.athlete_id,
            spec.athlete,
            spec.name,
            stale,
            [outbox.url_key(u.reveal()) for u in urls],
            now,
        )

    def _since(self, since: date | None) -> datetime:
        if since is not None:
            return datetime.combine(since, time(0), tzinfo=UTC)
        return self.clock() - timedelta(days=self.settings.sync.backfill_days)

    def _store_batch(self, state_id: int, batch: Batch) -> repo.BatchResult:
        return store_batch(
            self.db,
            state_id,
            batch,
            self.settings.classify,
            set(self.settings.sync.sports),
            self.clock(),
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
                runs = repo.runs_for_balance(session, athlete.name, history_start(goal, at), at)
                course = self.courses.targets(athlete.goal.course, goal, at.date())
                reports[athlete.name] = alerts.evaluate_athlete(
                    session,
                    row.id,
                    athlete.name,
                    goal,
                    remind_days=athlete.notify.remind_days,
                    url_keys=[outbox.url_key(u.reveal()) for u in athlete.notify.urls],
                    now=at,
                    runs=runs,
                    course=course,
                )
        return reports

    def send_digests(self, at: datetime | None = None) -> int:
        """Enqueue each athlete's weekly digest once it is due and not yet sent this week.

        Returns how many were enqueued. Raises StoreError when the database fails.
        """
        now = at or self.clock()
        sent = 0
        for athlete in self.settings.athletes.values():
            digest = athlete.notify.digest
            if digest is None:
                continue
            period = digest_due(now, digest.weekday, digest.at, self.tz)
            if period is None:
                continue
            goal = athlete.goal.goal()
            with self.db.session() as session:
                athlete_id = repo.ensure_athlete(session, athlete.name).id
                if outbox.is_marked(session, athlete_id, "digest", period):
                    continue
                state = outbox.get_balance_state(session, athlete_id)
                runs = repo.runs_for_balance(
                    session, athlete.name, now - timedelta(weeks=DIGEST_WEEKS + 1), now
                )
            previous = BalanceStatus.stored(state.status) if state is not None else None
            course = self.courses.targets(athlete.goal.course, goal, now.date())
            report = evaluate(
                runs, goal, athlete=athlete.name, at=now, previous=previous, course=course
            )
            message = digest_message(
                runs, report, now=now, tz=self.tz, chart=digest_chart(runs, now)
            )
            url_keys = [outbox.url_key(u.reveal()) for u in athlete.notify.urls]
            with self.db.session() as session:
                if alerts.enqueue_once(
                    session, athlete_id, message, period, url_keys=url_keys, now=now
                ):
                    sent += 1
        return sent

    def next_digest(self, now: datetime) -> datetime | None:
        """The next moment a digest of any athlete falls due (None: no digest configured)."""
        times = [
            next_digest(now, a.notify.digest.weekday, a.notify.digest.at, self.tz)
            for a in self.settings.athletes.values()
            if a.notify.digest is not None
        ]
        return min(times, default=None)

    def all_urls(self) -> list[Secret]:
        """Every notification URL of every athlete, once each."""
        return notify_urls(self.settings)

    def deliver(self) -> DeliveryResult:
        """Deliver what is due in the outbox; a failing URL never raises."""
        notifier = Notifier(self.all_urls(), clock=self.clock)
        return notifier.deliver_pending(self.db.session, stop=self.stop)


#: Weeks of the digest's chart.
DIGEST_WEEKS = 8


def digest_chart(runs: Sequence[RunForBalance], now: datetime) -> bytes | None:
    """The weekly km chart (report.py's renderer) as a PNG, None when it cannot be drawn."""
    from hillsync.report import weekly_chart, weekly_volumes

    try:
        return weekly_chart(weekly_volumes(runs, DIGEST_WEEKS, now), "png")
    except (ValueError, RuntimeError, OSError) as exc:
        # the digest's text matters more than its picture
        log.warning("digest_chart_failed", error=type(exc).__name__)
        return None


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
    """The wait after `failures` failures in a row: the poll interval, doubling, capped at
    MAX_BACKOFF (or the poll interval, when that is longer)."""
    poll = timedelta(minutes=poll_minutes)
    return exponential(poll, failures, max(MAX_BACKOFF, poll))


#: The longest wait before a failed cycle (the database unreachable) is tried again.
RETRY_CYCLE_MAX = timedelta(seconds=1024)

#: How often the balance is evaluated when nothing new arrived (the window moves,
#: reminders fall due).
BALANCE_EVERY = timedelta(days=1)


class Daemon:
    """`hillsync run`: each source at its own poll interval, until SIGTERM or SIGINT.

    Sleeps until the next source, delivery or daily evaluation is due (interruptibly, no
    busy polling), evaluates balances after a cycle that stored something and at least once
    a day, and speaks systemd's notify protocol: READY=1 once the database is open and
    migrated, WATCHDOG=1 at least every half watchdog period (also during a long sync or a
    retry wait), STATUS= after every cycle, STOPPING=1 on the way out. SIGHUP reloads the
    config; a bad one keeps the old. A failing source only backs itself off; a failing
    cycle (the database is unreachable) is logged and retried, the process stays up.
    """

    def __init__(
        self,
        load_settings: Callable[[], Settings],
        *,
        environ: Mapping[str, str],
        clock: Clock = utc_now,
        max_sleep_s: float = 300.0,
        min_sleep_s: float = 1.0,
    ) -> None:
        from hillsync.systemd import SystemdNotifier

        self.load_settings = load_settings
        self.environ = environ
        self.clock = clock
        self.max_sleep_s = max_sleep_s
        # A floor on every sleep, so that a due time that stays in the past (a clock jump,
        # another worker holding a lease) costs one cycle a second, never a hot loop.
        self.min_sleep_s = min_sleep_s
        self.systemd = SystemdNotifier(environ)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reload = False
        self._failures = 0
        self._last_balance: datetime | None = None
        self._reports: Mapping[str, BalanceReport] = {}
        self._synced_today: tuple[date, int] = (date.min, 0)
        self._failing: list[str] = []
        self._garmin_clients: LoggedInClients | None = None

    @property
    def stopping(self) -> bool:
        """True once SIGTERM or SIGINT (or `request_stop`) asked the daemon to exit."""
        return self._stop.is_set()

    # Signal handlers only set flags: the loop acts on them between transactions.
    def request_stop(self, *_: object) -> None:
        """Finish the current transaction, then exit."""
        self._stop.set()
        self._wake.set()

    def request_reload(self, *_: object) -> None:
        """Reload the config before the next cycle."""
        self._reload = True
        self._wake.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop, SIGHUP reloads (only possible in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)

    def run(self) -> int:
        """Run until stopped; returns the exit code (0 on SIGTERM/SIGINT).

        Raises ConfigError or StoreError when the service cannot start at all (a bad
        config, a database that cannot be opened or migrated).
        """
        # Handlers first: a SIGTERM during start-up then still means a clean exit 0.
        self.install_signal_handlers()
        settings = self.load_settings()
        db = self._open(settings)
        try:
            count = len(Worker(settings, db, environ=self.environ).source_specs())
            self.systemd.ready(f"started with {count} sources")
            log.info("started", sources=count, watchdog_s=self.systemd.watchdog_s)
            while not self.stopping:
                if self._reload:
                    settings, db = self._reloaded(settings, db)
                self.pause(self._guarded_cycle(settings, db))
        finally:
            self.systemd.stopping()
            db.close()
            log.info("stopped")
        return 0

    def _open(self, settings: Settings) -> Database:
        from hillsync.store.db import open_database

        return open_database(settings.database_url(self.environ))

    def _guarded_cycle(self, settings: Settings, db: Database) -> float:
        try:
            wait_s = self.cycle(settings, db)
        except HillsyncError as exc:
            # Sources never raise out of a cycle, so this is the store (PostgreSQL
            # restarting, SQLite locked): restarting the process would not help.
            self._failures += 1
            wait = exponential(timedelta(seconds=2), self._failures, RETRY_CYCLE_MAX)
            wait_s = min(self.max_sleep_s, wait.total_seconds())
            log.error("cycle failed", error=str(exc), retry_in_s=wait_s)
            self.systemd.status(f"error: {exc}; retrying in {wait_s:.0f} s")
            return wait_s
        self._failures = 0
        return wait_s

    def _reloaded(self, settings: Settings, db: Database) -> tuple[Settings, Database]:
        self._reload = False
        self.systemd.reloading()
        try:
            new = self.load_settings()
            if new.database != settings.database:
                new_db = self._open(new)
                db.close()
                db = new_db
        except (ConfigError, StoreError) as exc:
            problems = getattr(exc, "problems", None) or (str(exc),)
            log.error("config reload failed, keeping the old config", problems=list(problems))
            self.systemd.send("READY=1", "STATUS=config reload failed, kept the old config")
            return settings, db
        # A new goal or new URLs: evaluate again at once rather than tomorrow.
        self._last_balance = None
        log.info("config reloaded")
        self.systemd.send("READY=1", "STATUS=config reloaded")
        return new, db

    def retrying(self) -> tenacity.Retrying:
        """The worker's retry policy, made interruptible: a stop request ends the retries
        and cuts the wait short, and the watchdog is fed while waiting."""
        return interruptible(
            default_retrying, stopping=lambda: self.stopping, sleep=self._retry_sleep
        )()

    def _retry_sleep(self, seconds: float) -> None:
        self._wait(seconds, self._stop)

    def pause(self, seconds: float) -> None:
        """Sleep `seconds` or until a signal, feeding the watchdog at least every half period."""
        self._wait(seconds, self._wake)
        self._wake.clear()

    def _wait(self, seconds: float, event: threading.Event) -> None:
        deadline = monotonic() + seconds
        while True:
            self.systemd.watchdog()
            left = deadline - monotonic()
            if left <= 0 or event.is_set():
                return
            if self.systemd.watchdog_s is not None:
                # 0.4 rather than 0.5: a wake-up may come a little late on a busy machine.
                left = min(left, self.systemd.watchdog_s * 0.4)
            if event.wait(left):
                return

    def cycle(self, settings: Settings, db: Database) -> float:
        """Sync what is due, evaluate, deliver; returns the seconds to sleep.

        Raises StoreError when the database cannot be read or written.
        """
        worker = Worker(
            settings,
            db,
            environ=self.environ,
            clock=self.clock,
            retrying=self.retrying,
            stop=lambda: self.stopping,
            progress=lambda _source, _items, _total: self.systemd.watchdog(),
            garmin_clients=self._garmin_clients,
        )
        specs = worker.source_specs()
        self._garmin_clients = worker.garmin_clients
        stored = 0
        for spec in specs:
            if self.stopping:
                break
            self.systemd.watchdog()
            outcome = worker.sync_source(spec, due_only=True)
            if outcome.skipped is None:
                stored += outcome.new + outcome.updated
        now = self.clock()
        self._count_synced(now, stored)
        if not self.stopping and (
            stored or self._last_balance is None or now - self._last_balance >= BALANCE_EVERY
        ):
            self.systemd.watchdog()
            self._reports = worker.evaluate_balances()
            self._last_balance = now
        if not self.stopping:
            self.systemd.watchdog()
            worker.send_digests()
        if not self.stopping:
            self.systemd.watchdog()
            worker.deliver()
        next_sync, next_due = self.next_times(worker, db, specs)
        self.systemd.status(self.status_line(self._reports, next_sync))
        return self.sleep_seconds(next_due)

    def _count_synced(self, now: datetime, stored: int) -> None:
        day, count = self._synced_today
        self._synced_today = (now.date(), (count if day == now.date() else 0) + stored)

    def next_times(
        self, worker: Worker, db: Database, specs: Sequence[SourceSpec]
    ) -> tuple[datetime | None, datetime | None]:
        """When the next source sync is due, and when anything is (sync, delivery, balance).

        Only this config's sources count: a source removed from the config (or another
        worker's) keeps its row, and its past due time must not wake the loop.
        Raises StoreError when the database cannot be read.
        """
        names = {s.name for s in specs}
        with db.session() as session:
            states = [s for s in repo.all_sync_states(session) if s.name in names]
            syncs = [
                s.next_sync for s in states if s.next_sync is not None and s.state != "needs_auth"
            ]
            self._failing = sorted(s.name for s in states if s.state in {"error", "needs_auth"})
            delivery = outbox.next_attempt_at(
                session, [outbox.url_key(u.reveal()) for u in worker.all_urls()]
            )
        if names - {s.name for s in states}:
            syncs.append(self.clock())
        next_sync = min(syncs, default=None)
        times = list(syncs)
        if delivery is not None:
            times.append(delivery)
        if self._last_balance is not None:
            times.append(self._last_balance + BALANCE_EVERY)
        digest = worker.next_digest(self.clock())
        if digest is not None:
            times.append(digest)
        return next_sync, min(times, default=None)

    def sleep_seconds(self, next_due: datetime | None) -> float:
        """Until the next due time, between `min_sleep_s` and `max_sleep_s`."""
        if next_due is None:
            return self.max_sleep_s
        wait = (next_due - self.clock()).total_seconds()
        return max(self.min_sleep_s, min(self.max_sleep_s, wait))

    def status_line(self, reports: Mapping[str, BalanceReport], next_sync: datetime | None) -> str:
        """One line for `systemctl status`, e.g.

        "14 activities synced today; hill share 18% (goal 10-25%); next sync 18:45".
        The time is the machine's local time, as the runner reading it expects.
        """
        parts = [f"{self._synced_today[1]} activities synced today"]
        report = reports.get(DEFAULT_ATHLETE)
        if report is None and len(reports) == 1:
            report = next(iter(reports.values()))
        if report is not None:
            goal = report.goal
            band = f"goal {goal.hill_share_min * 100:.0f}-{goal.hill_share_max * 100:.0f}%"
            if report.status is BalanceStatus.INSUFFICIENT_DATA or report.hill_share is None:
                parts.append(f"hill share: not enough runs yet ({band})")
            else:
                parts.append(f"hill share {report.hill_share:.0%} ({band})")
        if self._failing:
            parts.append("failing: " + ", ".join(self._failing))
        if next_sync is not None:
            parts.append(f"next sync {next_sync.astimezone():%H:%M}")
        return "; ".join(parts)
