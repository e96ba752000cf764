"""One sync cycle: the one used by `hillsync sync`, `hillsync run` and `hillsync demo`.

The worker is the only place where sources, the store, the classifier, the balance and the
notifier meet: a source yields batches, each batch is classified and committed with the
source's cursor in one transaction, then every athlete's balance is evaluated once and the
outbox is delivered. The daemon (daemon.py) adds scheduling, signals and the watchdog.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING

import structlog
import tenacity
from sqlalchemy.orm import Session

from hillsync import alerts
from hillsync.backoff import exponential
from hillsync.balance import digest_due, digest_message, evaluate, history_start, next_digest
from hillsync.clock import Clock, utc_now
from hillsync.config import NotifySettings, Settings
from hillsync.coursefile import CourseReader
from hillsync.errors import (
    AccessRevoked,
    AuthRequired,
    HillsyncError,
    RateLimited,
    StoreError,
    UsageError,
)
from hillsync.model import (
    FAILED_STATES,
    AccountState,
    BalanceReport,
    BalanceStatus,
    Batch,
    RunForBalance,
    Secret,
    SourceKind,
    SyncStatus,
)
from hillsync.notify import DeliveryResult, Notifier
from hillsync.pipeline import store_batch
from hillsync.ratebudget import StoreBudget
from hillsync.registry import ConnectedAccount, Registry, SourceSpec, notify_urls, select_specs
from hillsync.retry import default_retrying
from hillsync.sources.base import SourceState, rate_budget
from hillsync.staleness import staleness
from hillsync.store import budgets, health, leases, outbox, pages, repo
from hillsync.store.db import Database
from hillsync.store.deletion import delete_source_data
from hillsync.store.leases import Lease, LeaseLost
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
    kind: SourceKind
    athlete: str
    state: SyncStatus
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
        return self.state in FAILED_STATES or self.rejected > 0


@dataclass(frozen=True)
class CycleResult:
    """The outcome of one sync cycle."""

    outcomes: Sequence[SourceOutcome]
    reports: Mapping[str, BalanceReport]
    delivery: DeliveryResult | None = None
    #: The sources the cycle looked at (synced or skipped).
    specs: Sequence[SourceSpec] = ()
    #: Whether the balances were evaluated (`reports` holds them).
    evaluated: bool = True

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
        heartbeat: Callable[[], None] = lambda: None,
        worker_id: str | None = None,
        lease: timedelta | None = None,
    ) -> None:
        #: Logged-in Garmin clients, kept across cycles by whoever runs them (the daemon).
        self.garmin_clients = garmin_clients
        self.settings = settings
        self.stop = stop
        #: Called between the steps of a cycle (the daemon feeds systemd's watchdog).
        self.heartbeat = heartbeat
        self.db = db
        self.environ = environ
        self.clock = clock
        self.retrying = retrying
        self.progress = progress
        #: The digest's local time zone (None: the system's).
        self.tz = tz
        self.courses = CourseReader(settings.classify)
        #: The id this worker claims sources with (host:pid:random).
        self.worker_id = worker_id or leases.new_worker_id()
        self.lease_ttl = lease or timedelta(seconds=settings.sync.lease_seconds)
        self._budgets: dict[str, StoreBudget] = {}

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
            pushed = pages.push_client_ids(session)
        registry = Registry(
            self.settings,
            environ=self.environ,
            clock=self.clock,
            retrying=self.retrying,
            stop=self.stop,
            garmin_clients=self.garmin_clients,
            shared_budget=self.shared_budget,
        )
        specs = registry.specs(accounts, limits)
        # The registry makes the clients on first use: keep them for the next cycle.
        self.garmin_clients = registry.garmin_clients
        return [self._with_push(spec, pushed) for spec in specs]

    def _with_push(self, spec: SourceSpec, pushed: set[int]) -> SourceSpec:
        """A Strava source whose application has a push subscription is polled only every
        SAFETY_POLL_MINUTES: its push events make it due at once (`hillsync serve`)."""
        if spec.kind is not SourceKind.STRAVA:
            return spec
        client_id = self.settings.strava_app(spec.athlete).client_id
        if client_id is None or client_id not in pushed:
            return spec
        return replace(spec, poll_minutes=max(spec.poll_minutes, SAFETY_POLL_MINUTES))

    def shared_budget(self, app: str) -> StoreBudget:
        """The rate budget of the API application `app`, counted in the store for every
        worker; requests it granted and this worker did not use go back after each sync."""
        if app not in self._budgets:
            self._budgets[app] = StoreBudget(self.db, app, clock=self.clock)
        return self._budgets[app]

    # -- one cycle ---------------------------------------------------------------------

    def sync_cycle(
        self,
        *,
        only: str | None = None,
        since: date | None = None,
        full: bool = False,
        due_only: bool = False,
        evaluate: Callable[[Sequence[SourceOutcome]], bool] | None = None,
        balance_at: Callable[[], datetime] | None = None,
        deliver: bool = True,
        force_balance: bool = False,
    ) -> CycleResult:
        """Sync every source (or those `only` names), then evaluate balances and deliver.

        A source parked by a rate limit, or waiting for re-authentication, is skipped, and
        so is one another worker holds. With `due_only` (the daemon, among other workers)
        only due sources are synced, each claimed with a lease (`sync_due`), and an
        athlete's balance is evaluated once, by one worker, when something of it changed or
        a day passed (or with `force_balance`: a new or reloaded config). `evaluate(outcomes)`
        decides from the sources' outcomes whether the balances are evaluated (default:
        always); `balance_at()` is the time they are evaluated at (default: now). A stop
        request ends the cycle between sources. Source failures are recorded in the
        outcome, never raised. Raises UsageError when
        `only` names no configured source, and StoreError when the database fails.
        """
        specs = select_specs(self.source_specs(), only)
        if only is not None and not specs:
            # Before anything is evaluated or sent: a typo must not push notifications.
            raise UsageError(f"no source named {only!r} (see `hillsync status`)")
        outcomes: list[SourceOutcome] = []
        if due_only:
            outcomes = self.sync_due(specs)
        else:
            for spec in specs:
                if self.stop():
                    break
                self.heartbeat()
                outcomes.append(self.sync_source(spec, since=since, full=full))
        reports: dict[str, BalanceReport] = {}
        evaluated = not self.stop() and (evaluate is None or evaluate(outcomes))
        at = balance_at() if balance_at else None
        if evaluated:
            self.heartbeat()
            reports = self.evaluate_balances(at=at, once=due_only, force=force_balance)
        if not self.stop():
            # Due or not is the digest's own schedule (once a week, kept in the store).
            self.heartbeat()
            self.send_digests(at=at)
        delivery = None
        if deliver and not self.stop():
            self.heartbeat()
            delivery = self.deliver()
        return CycleResult(outcomes, reports, delivery, specs=tuple(specs), evaluated=evaluated)

    def sync_due(self, specs: Sequence[SourceSpec] | None = None) -> list[SourceOutcome]:
        """Sync every due source no other worker holds, the most overdue first, each at
        most once, until none is left or a stop is requested (the daemon's work).

        Each source is claimed (SELECT ... FOR UPDATE SKIP LOCKED) before it is synced, so
        workers sharing the database never sync one source at once. Raises StoreError.
        """
        specs = self.source_specs() if specs is None else specs
        by_name = {s.name: s for s in specs}
        with self.db.session() as session:
            for spec in specs:
                athlete = repo.ensure_athlete(session, spec.athlete)
                repo.ensure_sync_state(session, athlete, spec.name, spec.kind.value)
        outcomes: list[SourceOutcome] = []
        left = set(by_name)
        while left and not self.stop():
            with self.db.session() as session:
                lease = leases.claim_next(
                    session, self.worker_id, names=left, now=self.clock(), ttl=self.lease_ttl
                )
            if lease is None:
                break
            self.heartbeat()
            left.discard(lease.name)
            try:
                outcomes.append(self.sync_source(by_name[lease.name], due_only=True, lease=lease))
            except BaseException:
                # Failed before its own record (the store, a Ctrl-C): hand the source back
                # now rather than when the lease expires.
                self._hand_back(lease)
                raise

        return outcomes

    def _hand_back(self, lease: Lease) -> None:
        try:
            with self.db.session() as session:
                leases.release(session, lease)
        except StoreError as exc:
            log.warning("lease_not_released", source=lease.name, error=str(exc))

    def sync_source(
        self,
        spec: SourceSpec,
        *,
        since: date | None = None,
        full: bool = False,
        due_only: bool = False,
        lease: Lease | None = None,
    ) -> SourceOutcome:
        """Sync one source under this worker's lease (claimed here unless given); its
        failure becomes its state, never an exception. A source another live worker holds
        is skipped. Raises StoreError only when the claim itself cannot be written."""
        now = self.clock()
        with self.db.session() as session:
            athlete = repo.ensure_athlete(session, spec.athlete)
            state_row = repo.ensure_sync_state(session, athlete, spec.name, spec.kind.value)
            if lease is None:
                # Reads the row anew: what another worker committed since it was loaded.
                lease = leases.claim(
                    session, state_row.id, self.worker_id, now=now, ttl=self.lease_ttl
                )
            previous = SyncStatus.parse(state_row.state)
            skipped = (
                f"being synced by worker {state_row.lease_owner}"
                if lease is None
                else parked_reason(previous, state_row.next_sync, now, due_only=due_only)
            )
            if lease is None or skipped is not None:
                if lease is not None:
                    leases.release(session, lease)
                return SourceOutcome(
                    spec.name,
                    spec.kind,
                    spec.athlete,
                    previous,
                    error=state_row.last_error,
                    skipped=skipped,
                )
            source_state = SourceState(
                since=self._since(since),
                cursor=dict(state_row.cursor or {}),
                seen=repo.load_seen(session, state_row),
                full=full,
                newest_start=repo.newest_start(session, state_row),
            )
            state_id = state_row.id
        # Taken after the claim committed (and the end before the release): the spans of
        # two workers syncing one source in turn never overlap in the log.
        started = self.clock()
        log.info("sync_started", source=spec.name, worker=self.worker_id, at=started.isoformat())
        new = updated = rejected = deleted = waiting = 0
        revoked = False
        #: True once another worker holds the source: nothing more of this sync is written.
        lost = False
        # Until the fetch ends, the source counts as failed: whatever stops it (a bug, a
        # database failure) leaves it in error with a backoff, never as ok.
        status = SyncStatus.ERROR
        error: str | None = "the sync stopped on an unexpected error (see the log)"
        next_sync: datetime | None = now + poll_interval(spec.poll_minutes)
        try:
            self._check_budget(spec)
            keeper = leases.Keeper(
                self.db, lease, clock=self.clock, ttl=self.lease_ttl, run=spec.lease_keeper
            )
            with keeper:
                source = spec.build()
                for batch in source.fetch(source_state):
                    lease, result = self._store_batch(state_id, batch, lease)
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
                    if keeper.lost:
                        raise LeaseLost(f"{spec.name}: another worker took this source over")
                    if self.stop():
                        # What is committed stays; the cursor resumes from here next time.
                        next_sync = self.clock()
                        break
            status, error = SyncStatus.OK, None
        except LeaseLost as exc:
            # Another worker took the source over (this one stalled past its lease): its
            # record is that worker's now; nothing of this sync is written any more.
            lost = True
            status, error = SyncStatus.INTERRUPTED, str(exc)
        except AccessRevoked as exc:
            status, error, next_sync = SyncStatus.NEEDS_AUTH, str(exc), None
            revoked = True
        except AuthRequired as exc:
            status, error, next_sync = SyncStatus.NEEDS_AUTH, str(exc), None
        except RateLimited as exc:
            status, error, next_sync = SyncStatus.RATE_LIMITED, str(exc), exc.resume_at
            self._park_application(spec, exc)
        except HillsyncError as exc:  # the source's own errors, and the store's
            status, error = SyncStatus.ERROR, str(exc)
        except KeyboardInterrupt:
            # Ctrl-C: what is committed stays, and the next sync resumes at once, without
            # the backoff of a failure.
            status, error, next_sync = (
                SyncStatus.INTERRUPTED,
                "interrupted (Ctrl-C)",
                self.clock(),
            )
            raise
        except Exception as exc:
            # The one fault boundary outside cli.py: a bug or an unmapped library error in
            # one source must not stop the other sources, the balance or the deliveries
            # (nor crash-loop the daemon). It is logged with its traceback (secrets masked)
            # and the source waits out a backoff in `error`.
            log.exception("source_failed", source=spec.name, error=type(exc).__name__)
            error = f"unexpected {type(exc).__name__} (a bug: see the log, run with -v)"
        finally:
            ended = self.clock()
            self._close_budget(spec)
            with self.db.session() as session:
                # Recorded and released in one transaction, only while the lease is still
                # this worker's: a source taken over is the other worker's to record.
                if not lost and leases.holds(session, lease):
                    state_row = repo.get_sync_state(session, state_id)
                    if status is SyncStatus.ERROR:
                        failures = state_row.failures + 1
                        next_sync = self.clock() + backoff(spec.poll_minutes, failures)
                    newly = state_row.state != status
                    repo.record_sync_result(
                        session,
                        state_row,
                        status=status,
                        now=self.clock(),
                        next_sync=next_sync,
                        error=error,
                    )
                    if status is SyncStatus.NEEDS_AUTH and newly:
                        self._enqueue_needs_auth(session, spec, state_row.athlete_id)
                    if status is SyncStatus.NEEDS_AUTH:
                        repo.set_account_state(
                            session, spec.athlete, spec.kind.value, AccountState.NEEDS_AUTH
                        )
                    if status is SyncStatus.OK:
                        self._check_stale(session, spec, state_row)
                elif not lost:
                    lost, revoked = True, False
                    status, error = SyncStatus.INTERRUPTED, "another worker took this source over"
                leases.release(session, lease)
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
        level = log.info if status is SyncStatus.OK else log.warning
        level(
            "synced",
            source=spec.name,
            state=status,
            new=new,
            updated=updated,
            rejected=rejected,
            error=error,
            worker=self.worker_id,
            started=started.isoformat(),
            ended=ended.isoformat(),
        )
        return outcome

    def _check_budget(self, spec: SourceSpec) -> None:
        """Before a source that shares an application's budget is built: is it parked?

        Raises RateLimited until the application's spent window resets.
        """
        if spec.budget_app is None:
            return
        now = self.clock()
        with self.db.session(readonly=True) as session:
            until = budgets.parked_until(session, spec.budget_app, now)
        if until is not None:
            raise RateLimited(
                f"the Strava application's rate budget is spent (shared by its athletes):"
                f" paused until {until:%H:%M} UTC",
                resume_at=until,
                source=spec.kind.value,
            )

    def _close_budget(self, spec: SourceSpec) -> None:
        if spec.budget_app is not None and spec.budget_app in self._budgets:
            try:
                self._budgets[spec.budget_app].close()
            except StoreError as exc:
                # Unused grants then count until the window resets: a little budget lost.
                log.warning("rate_budget_not_returned", app=spec.budget_app, error=str(exc))

    def _park_application(self, spec: SourceSpec, exc: RateLimited) -> None:
        """The application's budget is spent: park all its sources, not only this one."""
        if spec.budget_app is None:
            return
        names = [s.name for s in self.source_specs() if s.budget_app == spec.budget_app]
        now = self.clock()
        try:
            with self.db.session() as session:
                budgets.park(session, spec.budget_app, until=exc.resume_at, now=now)
                parked = budgets.park_sources(
                    session, names, until=exc.resume_at, error=str(exc),
                    owner=self.worker_id, now=now,
                )  # fmt: skip
        except StoreError as exc_store:
            log.warning("rate_park_failed", app=spec.budget_app, error=str(exc_store))
            return
        log.info(
            "rate_budget_parked", app=spec.budget_app, sources=parked,
            until=exc.resume_at.isoformat(),
        )  # fmt: skip

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

    def _store_batch(
        self, state_id: int, batch: Batch, lease: Lease
    ) -> tuple[Lease, repo.BatchResult]:
        """Classify and store one batch, renewing the lease in the same transaction: the
        batch commits only while this worker holds the source. Raises LeaseLost."""
        renewed: list[Lease] = []

        def fence(session: Session) -> None:
            renewed.append(leases.renew(session, lease, now=self.clock(), ttl=self.lease_ttl))

        result = store_batch(
            self.db,
            state_id,
            batch,
            self.settings.classify,
            set(self.settings.sync.sports),
            self.clock(),
            fence=fence,
        )
        return renewed[-1], result

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

    def evaluate_balances(
        self, at: datetime | None = None, *, once: bool = False, force: bool = False
    ) -> dict[str, BalanceReport]:
        """Evaluate every athlete's balance, writing warnings to the outbox.

        One worker at a time evaluates an athlete (a lock per athlete). With `once` (the
        daemon, among other workers) an athlete is left out when another worker is
        evaluating it or still syncing one of its sources (that worker evaluates it when
        done), and, unless `force` (a new config, a restart), when nothing of it changed
        since its last evaluation less than a day ago; the reports returned are those
        evaluated. Raises StoreError.
        """
        now = self.clock()
        at = at or now
        reports: dict[str, BalanceReport] = {}
        for athlete in self.settings.athletes.values():
            goal = athlete.goal.goal()
            with self.db.session() as session:
                row = repo.ensure_athlete(session, athlete.name)
                if not leases.claim_balance(session, row.id, wait=not once):
                    continue
                if once and (
                    leases.busy_elsewhere(session, row.id, self.worker_id, now)
                    or not (force or leases.balance_due(session, row.id, at, BALANCE_EVERY))
                ):
                    continue
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
    state: SyncStatus, next_sync: datetime | None, now: datetime, *, due_only: bool
) -> str | None:
    """Why a source is not synced now, or None when it is."""
    if state is SyncStatus.NEEDS_AUTH:
        return "needs re-authentication"
    if state is SyncStatus.RATE_LIMITED and next_sync is not None and next_sync > now:
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


#: With a push subscription, Strava sources are polled this seldom: a safety net for a lost
#: event (Strava retries an unanswered event 3 times, then drops it).
SAFETY_POLL_MINUTES = 360.0

#: How often an athlete's balance is evaluated when nothing of it changed (the window
#: moves, reminders fall due).
BALANCE_EVERY = timedelta(days=1)
