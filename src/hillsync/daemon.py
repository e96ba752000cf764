"""`hillsync run`: the sync cycle at each source's own poll interval, until stopped.

Scheduling, signals, the watchdog and systemd's notify protocol around the one cycle of
`worker.Worker.sync_cycle`. Only the CLI imports this module.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from time import monotonic
from typing import TYPE_CHECKING

import structlog
import tenacity

from hillsync.backoff import exponential
from hillsync.clock import Clock, utc_now
from hillsync.config import DEFAULT_ATHLETE, Settings
from hillsync.errors import ConfigError, HillsyncError, StoreError
from hillsync.model import BalanceReport, BalanceStatus, SyncStatus
from hillsync.registry import SourceSpec
from hillsync.retry import default_retrying, interruptible
from hillsync.store import leases, outbox, pages, repo
from hillsync.store.db import Database
from hillsync.worker import BALANCE_EVERY, SourceOutcome, Worker

if TYPE_CHECKING:
    from hillsync.sources.garmin import LoggedInClients

log = structlog.get_logger(__name__)

#: The longest wait before a failed cycle (the database unreachable) is tried again.
RETRY_CYCLE_MAX = timedelta(seconds=1024)
#: While it sleeps, the daemon asks the database this often whether a source became due
#: sooner (a Strava push event through `hillsync serve`).
DUE_CHECK_S = 2.0


class Daemon:
    """`hillsync run`: each source at its own poll interval, until SIGTERM or SIGINT.

    Sleeps until the next source, delivery or daily evaluation is due (interruptibly, no
    busy polling), evaluates balances after a cycle that synced something and at least once
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
        due_check_s: float = DUE_CHECK_S,
    ) -> None:
        from hillsync.systemd import SystemdNotifier

        self.load_settings = load_settings
        self.environ = environ
        self.clock = clock
        self.max_sleep_s = max_sleep_s
        # A floor on every sleep, so that a due time that stays in the past (a clock jump,
        # another worker holding a lease) costs one cycle a second, never a hot loop.
        self.min_sleep_s = min_sleep_s
        self.due_check_s = due_check_s
        # What the sleep watches: the database, this config's sources, the planned next sync.
        self._watch: tuple[Database, frozenset[str], datetime | None] | None = None
        self.systemd = SystemdNotifier(environ)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reload = False
        self._failures = 0
        self._last_balance: datetime | None = None
        self._reports: Mapping[str, BalanceReport] = {}
        self._synced_today: tuple[date, int] = (date.min, 0)
        self._failing: list[str] = []
        #: Logged-in Garmin clients, kept across cycles (one login per account and process).
        self._garmin_clients: LoggedInClients | None = None
        #: The id this daemon claims sources with (host:pid:random), in every log line.
        self.worker_id = leases.new_worker_id()

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
        structlog.contextvars.bind_contextvars(worker=self.worker_id)
        settings = self.load_settings()
        db = self._open(settings)
        try:
            lock_path = (
                leases.sqlite_run_lock_path(db.engine.url.database or "") if db.is_sqlite else None
            )
            with leases.run_lock(lock_path, self.worker_id):
                count = len(Worker(settings, db, environ=self.environ).source_specs())
                self.systemd.ready(f"started with {count} sources")
                log.info("started", sources=count, watchdog_s=self.systemd.watchdog_s)
                try:
                    while not self.stopping:
                        if self._reload:
                            settings, db = self._reloaded(settings, db)
                        self.pause(self._guarded_cycle(settings, db))
                finally:
                    self._release(db)
        finally:
            self.systemd.stopping()
            db.close()
            log.info("stopped")
            structlog.contextvars.unbind_contextvars("worker")
        return 0

    def _release(self, db: Database) -> None:
        """Hand every source this worker still holds to the others at once."""
        try:
            with db.session() as session:
                released = leases.release_all(session, self.worker_id)
        except StoreError as exc:
            log.warning("leases_not_released", error=str(exc))  # they expire instead
            return
        if released:
            log.info("leases_released", sources=released)

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
        """Sleep `seconds`, or until a signal, or until a source is due sooner than planned
        (`hillsync serve` marks one due on a Strava push event), feeding the watchdog at
        least every half period. The database is asked every `due_check_s` seconds: one
        small query, on SQLite and PostgreSQL alike."""
        deadline = monotonic() + seconds
        while not self._wake.is_set():
            left = deadline - monotonic()
            if left <= 0:
                break
            self._wait(min(left, self.due_check_s), self._wake)
            if self._due_sooner():
                log.info("woken: a source is due sooner than planned")
                break
        self._wake.clear()

    def _due_sooner(self) -> bool:
        """True when one of this config's sources became due before the planned next sync."""
        if self._watch is None:
            return False
        db, names, planned = self._watch
        try:
            with db.session(readonly=True) as session:
                due = pages.earliest_due(session, names, owner=self.worker_id, now=self.clock())
        except StoreError:
            return False  # the next cycle reports the database; sleeping on is harmless
        return due is not None and (planned is None or due < planned)

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
            heartbeat=self.systemd.watchdog,
            worker_id=self.worker_id,
        )
        result = worker.sync_cycle(
            due_only=True,
            evaluate=self._balance_due,
            # Started or reloaded: every athlete anew (a new goal, new URLs), not only those
            # with new runs.
            force_balance=self._last_balance is None,
        )
        # The registry logs Garmin in on first use: keep the clients for the next cycle.
        self._garmin_clients = worker.garmin_clients
        now = self.clock()
        self._count_synced(now, result.stored)
        if result.evaluated:
            self._reports = {**self._reports, **result.reports}
            self._last_balance = now
        next_sync, next_due = self.next_times(worker, db, result.specs)
        self._watch = (db, frozenset(s.name for s in result.specs), next_sync)
        self.systemd.status(self.status_line(self._reports, next_sync))
        return self.sleep_seconds(next_due)

    def _balance_due(self, outcomes: Sequence[SourceOutcome]) -> bool:
        """After a cycle that synced a source, and at least once a day (the window moves,
        reminders fall due). After any sync, not only one that stored something: another
        worker may have stored runs of an athlete meanwhile; each athlete is then evaluated
        only if something of it changed (`Worker.evaluate_balances(once=True)`)."""
        return bool(
            any(o.skipped is None for o in outcomes)
            or self._last_balance is None
            or self.clock() - self._last_balance >= BALANCE_EVERY
        )

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
        now = self.clock()
        with db.session() as session:
            states = [s for s in repo.sync_state_views(session).values() if s.name in names]
            syncs = []
            for s in states:
                if s.next_sync is None or s.state is SyncStatus.NEEDS_AUTH:
                    continue
                due = s.next_sync
                if s.lease_owner not in (None, self.worker_id) and s.lease_until is not None:
                    # Another worker holds it: wake when its lease would expire (to take
                    # the source over if that worker died), not every second meanwhile.
                    due = max(due, s.lease_until)
                syncs.append(due)
            self._failing = sorted(
                s.name for s in states if s.state in {SyncStatus.ERROR, SyncStatus.NEEDS_AUTH}
            )
            delivery = outbox.next_attempt_at(
                session, [outbox.url_key(u.reveal()) for u in worker.all_urls()]
            )
        if names - {s.name for s in states}:
            syncs.append(now)
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
