"""`hillsync sync` and `hillsync demo`: one sync cycle, now."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from hillsync.app.context import AppContext
from hillsync.config import (
    DEFAULT_ATHLETE,
    AthleteSettings,
    DatabaseSettings,
    FolderSettings,
    GoalSettings,
    NotifySettings,
    Settings,
    WeeklyTime,
)
from hillsync.model import BalanceReport, Message

if TYPE_CHECKING:
    from hillsync.store.repo import RunView
    from hillsync.worker import CycleResult, SourceOutcome

Progress = Callable[[str, int, int | None], None]


def sync(
    ctx: AppContext,
    *,
    only: str | None = None,
    since: date | None = None,
    full: bool = False,
    progress: Progress | None = None,
) -> CycleResult:
    """Sync every source now (or those `only` names), evaluate every balance once, deliver.

    A source parked by a rate limit or waiting for re-authentication is skipped; a source's
    failure is in its outcome, never raised. Raises UsageError when `only` names no source,
    StoreError when the database fails.
    """
    from hillsync.worker import Worker

    worker = Worker(ctx.settings, ctx.db, environ=ctx.environ, clock=ctx.clock, progress=progress)
    return worker.sync_cycle(only=only, since=since, full=full)


@dataclass(frozen=True)
class DemoResult:
    """What the demo did: the bundled folder it synced, what it stored, the balance, and the
    notifications a real notifier would have pushed."""

    data: Path
    outcomes: tuple[SourceOutcome, ...]
    runs: tuple[RunView, ...]
    reports: tuple[BalanceReport, ...]
    messages: tuple[Message, ...]


def demo_settings(data: Path, db_path: Path) -> Settings:
    """The demo's settings: the bundled sample folder, a throw-away SQLite file, no URLs,
    and the weekly digest on (Monday 07:00)."""
    from hillsync.paths import sqlite_url

    me = AthleteSettings(
        DEFAULT_ATHLETE,
        goal=GoalSettings(),
        notify=NotifySettings(digest=WeeklyTime(0, time(7, 0))),
        folders=(FolderSettings(path=data, name="samples", poll_minutes=5.0),),
    )
    return replace(
        Settings(),
        database=DatabaseSettings(url=sqlite_url(db_path)),
        athletes={DEFAULT_ATHLETE: me},
    )


def demo(environ: dict[str, str] | None = None) -> DemoResult:
    """The main job on the bundled sample runs, with a throw-away SQLite database: sync,
    classify, evaluate the balance as of the last sample run, and collect the messages a
    notifier would send (the console stands in for it). Raises StoreError."""
    from importlib import resources

    from hillsync.store import outbox, repo
    from hillsync.worker import Worker

    with (
        tempfile.TemporaryDirectory(prefix="hillsync-demo-") as tmp,
        resources.as_file(resources.files("hillsync") / "demo") as data,
    ):
        settings = demo_settings(Path(data), Path(tmp) / "demo.db")
        ctx = AppContext(settings, {**(environ or {}), "XDG_STATE_HOME": tmp})
        try:
            worker = Worker(settings, ctx.db, environ=ctx.environ, clock=ctx.clock)
            # The same cycle as `sync`, with the balance as of just after the last sample run
            # (so the demo tells the same story any day) and the console as the notifier.
            result = worker.sync_cycle(balance_at=lambda: _after_last_run(ctx), deliver=False)
            with ctx.db.session(readonly=True) as session:
                runs = tuple(repo.list_runs(session))
            with ctx.db.session() as session:
                messages = tuple(
                    Message(m.kind, m.title, m.body, attachment_name=m.attachment_name)
                    for m in outbox.all_messages(session)
                )
                outbox.mark_all_done(session, ctx.clock())
        finally:
            ctx.close()
        return DemoResult(
            Path(data), tuple(result.outcomes), runs, tuple(result.reports.values()), messages
        )


def _after_last_run(ctx: AppContext) -> datetime:
    from hillsync.store import repo

    with ctx.db.session(readonly=True) as session:
        last = max((r.start_time for r in repo.list_runs(session)), default=ctx.clock())
    return last + timedelta(minutes=1)
