"""The `hillsync` command.

This is the only module that turns errors into messages and exit codes: 0 success, 1
unexpected failure, 2 usage or config error, 3 partial (a source needs re-authentication,
is rate-limited or unavailable, or an input file was rejected). An expected failure is one
line on stderr; `-v` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO

from hillsync import __version__, paths
from hillsync.balance import added_json, terrain_lines
from hillsync.config import (
    DEFAULT_ATHLETE,
    AthleteSettings,
    FolderSettings,
    GoalSettings,
    Settings,
    find_config,
    load_settings,
    write_example_config,
)
from hillsync.errors import ConfigError, HillsyncError, UsageError
from hillsync.logs import configure_logging
from hillsync.model import BalanceReport, Classification, Secret, Terrain

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_CONFIG = 2
EXIT_PARTIAL = 3

SOURCE_KINDS = ("strava", "garmin")


class App:
    """What a command needs, loaded on first use: settings, the database, a worker."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> None:
        self.args = args
        self.environ = environ
        self.out = out

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.args.config, self.environ)

    @cached_property
    def database_url(self) -> str:
        return self.settings.database.url or paths.default_database_url(self.environ)

    @cached_property
    def db(self) -> Any:
        from hillsync.store.db import open_database

        return open_database(self.database_url)

    def worker(self, progress: Callable[[str, int], None] | None = None) -> Any:
        from hillsync.worker import Worker

        return Worker(self.settings, self.db, environ=self.environ, progress=progress)

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def print_json(self, value: object) -> None:
        json.dump(value, self.out, indent=2, ensure_ascii=False)
        self.out.write("\n")


# -- helpers ---------------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, or None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_date(text: str) -> date:
    """A YYYY-MM-DD argument."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def end_of_day(day: date) -> datetime:
    """The last instant of `day` in UTC, so `--at 2026-11-29` includes that day's runs."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC) - timedelta(
        microseconds=1
    )


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def athlete_settings(app: App, name: str | None) -> AthleteSettings:
    """The settings of the athlete `--athlete` names (the default one without it)."""
    name = name or DEFAULT_ATHLETE
    try:
        return app.settings.athletes[name]
    except KeyError:
        if name == DEFAULT_ATHLETE:
            return AthleteSettings(DEFAULT_ATHLETE)
        known = ", ".join(app.settings.athletes)
        raise UsageError(f"no athlete {name!r} in the config (known: {known})") from None


def redact(text: str) -> str:
    """`text` with every known secret value masked."""
    for secret in sorted(Secret.known_values(), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# -- commands --------------------------------------------------------------------------


def cmd_init(app: App) -> int:
    path, _explicit = find_config(app.args.config, app.environ)
    if path is None or not path.exists():
        target = path or default_config_target(app.environ)
        write_example_config(target)
        app.print(f"wrote {target}: edit it, then run `hillsync connect strava` or add a folder")
    else:
        app.print(f"{path} exists already: left as it is")
    app.db.close()
    app.print(f"database ready: {safe_url(app.database_url)}")
    return EXIT_OK


def default_config_target(environ: Mapping[str, str]) -> Path:
    """Where `init` writes a config when none exists yet."""
    return paths.config_dir(environ) / "config.toml"


def safe_url(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def cmd_classify(app: App) -> int:
    from hillsync.errors import BadActivity
    from hillsync.sources.fileformats import read_activities
    from hillsync.worker import classify_activity

    params = app.settings.classify
    untyped = app.settings.sync.untyped
    rows: list[dict[str, Any]] = []
    failed = False
    for name in app.args.files:
        path = Path(name)
        try:
            activities = read_activities(path, untyped=untyped)
        except BadActivity as exc:
            failed = True
            rows.append(classify_error_row(name, str(exc)))
            continue
        for activity in activities:
            _profile, result = classify_activity(activity, params)
            row = classify_row(name, activity.sport, result)
            if activity.part is not None:
                row["part"] = activity.part
            row["warning"] = activity.warning
            rows.append(row)
    if app.args.json:
        app.print_json(rows)
    else:
        print_classify_table(app, rows)
    return EXIT_PARTIAL if failed else EXIT_OK


def classify_row(name: str, sport: str, c: Classification) -> dict[str, Any]:
    return {
        "file": name,
        "sport": sport,
        "label": str(c.label),
        "distance_m": rounded(c.distance_m),
        "elevation_gain_m": rounded(c.elevation_gain_m),
        "elevation_loss_m": rounded(c.elevation_loss_m),
        "uphill_m": rounded(c.uphill_m),
        "downhill_m": rounded(c.downhill_m),
        "flat_m": rounded(c.flat_m),
        "error": None,
        "elevation_source": c.elevation_source,
        "reason": c.reason,
        "warning": None,
    }


def classify_error_row(name: str, reason: str) -> dict[str, Any]:
    return {
        "file": name,
        "sport": None,
        "label": None,
        "distance_m": None,
        "elevation_gain_m": None,
        "elevation_loss_m": None,
        "uphill_m": None,
        "downhill_m": None,
        "flat_m": None,
        "error": reason,
        "elevation_source": None,
        "reason": None,
        "warning": None,
    }


def km(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f}"


def metres(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_table(app: App, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A plain aligned table (readable in a terminal, in a pipe and in journald)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    app.print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        app.print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def print_classify_table(app: App, rows: Sequence[Mapping[str, Any]]) -> None:
    table = []
    for r in rows:
        if r["error"]:
            table.append([r["file"], "-", "error", "-", "-", "-", r["error"]])
        elif r["warning"]:
            table.append(
                [r["file"], r["sport"], r["label"], km(r["distance_m"]), "-", "-", r["warning"]]
            )
        else:
            split = f"{km(r['uphill_m'])}/{km(r['downhill_m'])}/{km(r['flat_m'])}"
            table.append(
                [
                    r["file"],
                    r["sport"],
                    r["label"],
                    km(r["distance_m"]),
                    metres(r["elevation_gain_m"]),
                    metres(r["elevation_loss_m"]),
                    split,
                ]
            )
    print_table(app, ["file", "sport", "label", "km", "gain m", "loss m", "up/down/flat km"], table)


@contextmanager
def sync_progress(enabled: bool) -> Iterator[Callable[[str, int], None] | None]:
    """A rich progress display on a terminal; nothing otherwise."""
    if not enabled:
        yield None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed} items"),
        TimeElapsedColumn(),
        transient=True,
    ) as progress:
        tasks: dict[str, Any] = {}

        def advance(source: str, items: int) -> None:
            if source not in tasks:
                tasks[source] = progress.add_task(f"syncing {source}", total=None)
            progress.advance(tasks[source], items)

        yield advance


def cmd_sync(app: App) -> int:
    with sync_progress(app.out.isatty()) as progress:
        worker = app.worker(progress)
        result = worker.sync_cycle(only=app.args.source, since=app.args.since, full=app.args.full)
    print_cycle(app, result)
    return EXIT_PARTIAL if result.partial else EXIT_OK


def print_cycle(app: App, result: Any) -> None:
    if not result.outcomes:
        app.print(
            "no sources configured: add a [[sources.folder]] or run `hillsync connect strava`"
        )
    for o in result.outcomes:
        if o.skipped:
            app.print(f"{o.name}: skipped, {o.skipped}")
            continue
        line = f"{o.name}: {o.new} new, {o.updated} updated"
        if o.rejected:
            line += f", {o.rejected} rejected (see `hillsync status`)"
        if o.state != "ok":
            line += f"; {o.state}: {o.error}"
        app.print(line)
    for report in result.reports.values():
        app.print(balance_line(report))


def balance_line(report: BalanceReport) -> str:
    goal = report.goal
    band = f"{goal.hill_share_min:.0%}-{goal.hill_share_max:.0%}"
    if report.hill_share is None:
        share = "no labelled runs"
    else:
        share = f"hill share {report.hill_share:.0%}"
    prefix = "" if report.athlete == DEFAULT_ATHLETE else f"{report.athlete}: "
    return (
        f"{prefix}{share} (goal {band}) over {report.runs} runs, "
        f"{report.distance_m / 1000:.0f} km, {report.goal.window_days} days: {report.status}"
    )


def cmd_activities(app: App) -> int:
    from hillsync.store import repo

    since = datetime.combine(app.args.since, time(0), tzinfo=UTC) if app.args.since else None
    with app.db.session() as session:
        runs = repo.list_runs(session, athlete=app.args.athlete, since=since, label=app.args.label)
    rows: list[dict[str, Any]] = [
        {
            "id": r.id,
            "athlete": r.athlete,
            "start_time": iso(r.start_time),
            "sport": r.sport,
            "label": r.label,
            "distance_m": rounded(r.distance_m),
            "moving_time_s": rounded(r.moving_time_s, 0),
            "elevation_gain_m": rounded(r.elevation_gain_m),
            "elevation_loss_m": rounded(r.elevation_loss_m),
            "sources": [{"source": s, "source_id": i} for s, i in r.sources],
            "hill_repeats": repo.hill_repeats_json(r.hill_repeats),
            "elevation_source": r.elevation_source,
        }
        for r in runs
    ]
    if app.args.json:
        app.print_json(rows)
        return EXIT_OK
    table = [
        [
            r["start_time"][:16].replace("T", " "),
            r["athlete"],
            r["sport"],
            r["label"],
            km(r["distance_m"]),
            metres(r["elevation_gain_m"]),
            metres(r["elevation_loss_m"]),
            ",".join(s["source"] for s in r["sources"]),
        ]
        for r in rows
    ]
    print_table(
        app,
        ["start (UTC)", "athlete", "sport", "label", "km", "gain m", "loss m", "sources"],
        table,
    )
    app.print(f"{len(rows)} runs")
    return EXIT_OK


def balance_json(report: BalanceReport) -> dict[str, Any]:
    goal = report.goal
    return {
        "athlete": report.athlete,
        "window_start": iso(report.window_start),
        "window_end": iso(report.window_end),
        "runs": report.runs,
        "distance_m": rounded(report.distance_m),
        "by_label": {str(t): rounded(report.by_label.get(t, 0.0)) for t in Terrain},
        "hill_share": rounded(report.hill_share, 4),
        "downhill_share": rounded(report.downhill_share, 4),
        "vertical_m": rounded(report.vertical_m),
        "goal": {
            "profile": str(goal.profile),
            "hill_share_min": goal.hill_share_min,
            "hill_share_max": goal.hill_share_max,
            "downhill_share_max": goal.downhill_share_max,
        },
        "status": str(report.status),
        "advice": report.advice,
        **added_json(report),
    }


def share_bar(share: float | None, low: float, high: float, width: int = 40) -> str:
    """A bar from 0 to 100%: the band as '=' , the share as '|'."""
    cells = ["." for _ in range(width)]
    for i in range(int(low * width), min(width, int(high * width) + 1)):
        cells[i] = "="
    if share is not None:
        cells[min(width - 1, int(share * width))] = "|"
    return "0% [" + "".join(cells) + "] 100%"


def current_report(
    app: App, athlete: AthleteSettings, at: datetime, *, with_state: bool = True
) -> BalanceReport:
    """The balance as of `at`, without writing any state or warning.

    `with_state` applies the stored warning state's hysteresis: right for now, wrong for a
    past date, when another state may have been in force.
    """
    from hillsync.dashboard import current_balance

    return current_balance(app.db, athlete, at, with_state=with_state, params=app.settings.classify)


def cmd_balance(app: App) -> int:
    athlete = athlete_settings(app, app.args.athlete)
    at = end_of_day(app.args.at) if app.args.at else datetime.now(UTC)
    report = current_report(app, athlete, at, with_state=app.args.at is None)
    if app.args.json:
        app.print_json(balance_json(report))
        return EXIT_OK
    print_balance(app, report)
    return EXIT_OK


def print_balance(app: App, report: BalanceReport) -> None:
    goal = report.goal
    app.print(
        f"{report.athlete}: {report.window_start:%Y-%m-%d} to {report.window_end:%Y-%m-%d}, "
        f"{report.runs} runs, {report.distance_m / 1000:.1f} km, {report.vertical_m:.0f} m up"
    )
    for label in Terrain:
        app.print(f"  {label!s:<9} {report.by_label.get(label, 0.0) / 1000:7.1f} km")
    if report.hill_share is not None:
        bar = share_bar(report.hill_share, goal.hill_share_min, goal.hill_share_max)
        app.print(
            f"  hill share     {report.hill_share:.0%} (goal {goal.hill_share_min:.0%}-"
            f"{goal.hill_share_max:.0%})  {bar}"
        )
    if report.downhill_share is not None:
        app.print(
            f"  downhill share {report.downhill_share:.0%} (max {goal.downhill_share_max:.0%})"
        )
    for line in terrain_lines(report):
        app.print(line)
    app.print(f"status: {report.status}")
    app.print(report.advice)


def cmd_report(app: App) -> int:
    from hillsync.dashboard import build_dashboard
    from hillsync.report import render_report

    athlete = athlete_settings(app, getattr(app.args, "athlete", None))
    weeks = app.args.weeks
    if weeks < 1:
        raise UsageError("--weeks must be 1 or more")
    out = Path(app.args.out)
    render_report(build_dashboard(app.db, athlete, datetime.now(UTC), weeks=weeks), out)
    app.print(f"wrote {out}")
    return EXIT_OK


def cmd_status(app: App) -> int:
    from hillsync.store import outbox, repo

    worker = app.worker()
    specs = worker.source_specs()
    with app.db.session() as session:
        states = {s.name: s for s in repo.all_sync_states(session)}
        rows = []
        for spec in specs:
            st = states.get(spec.name)
            rows.append(
                {
                    "name": spec.name,
                    "kind": spec.kind,
                    "athlete": spec.athlete,
                    "state": st.state if st else "never_synced",
                    "last_sync": iso(st.last_sync) if st else None,
                    "next_sync": iso(st.next_sync) if st else None,
                    "last_error": st.last_error if st else None,
                    "rate_budget": rate_budget(st.cursor) if st else None,
                    "rejected": [
                        {"file": i.key, "reason": i.reason}
                        for i in (repo.rejected_items(session, st) if st else [])
                    ],
                }
            )
        doc = {
            "sources": rows,
            "activities": repo.count_activities(session),
            "pending_notifications": outbox.pending_count(session),
        }
    if app.args.json:
        app.print_json(doc)
        return EXIT_OK
    table = [
        [
            r["name"],
            r["state"],
            (r["last_sync"] or "-")[:16].replace("T", " "),
            (r["next_sync"] or "-")[:16].replace("T", " "),
            r["last_error"] or "",
        ]
        for r in rows
    ]
    print_table(app, ["source", "state", "last sync", "next sync", "last error"], table)
    for r in rows:
        budget = r["rate_budget"] or {}
        for name in ("read", "overall"):
            if name in budget:
                short, daily = budget[name]["15min"], budget[name]["daily"]
                app.print(
                    f"  {r['name']} {name} budget: {short['used']}/{short['limit']} this quarter"
                    f" hour, {daily['used']}/{daily['limit']} today"
                )
        for item in r["rejected"]:
            app.print(f"  rejected {r['name']}:{item['file']}: {item['reason']}")
    pending = doc["pending_notifications"]
    app.print(f"{doc['activities']} activities stored, {pending} notifications pending")
    return EXIT_OK


def rate_budget(cursor: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An API's rate budget as it last reported it ({read: {15min, daily}, ...}), or None.

    Only Strava reports one; its windows reset at the quarter hour and at UTC midnight.
    """
    rate = (cursor or {}).get("rate")
    if not isinstance(rate, Mapping):
        return None
    budget: dict[str, Any] = {"at": rate.get("at")}
    for name, value in rate.items():
        if isinstance(value, list) and len(value) == 4:
            short_used, long_used, short_limit, long_limit = value
            budget[name] = {
                "15min": {"used": short_used, "limit": short_limit},
                "daily": {"used": long_used, "limit": long_limit},
            }
    return budget


def cmd_reclassify(app: App) -> int:
    from hillsync.classify import classify
    from hillsync.hills import with_hill_repeats
    from hillsync.store import repo

    params = app.settings.classify
    changed = total = 0
    with app.db.session() as session:
        for row, summary, profile in repo.iter_for_reclassify(session):
            result = with_hill_repeats(classify(summary, profile, params), profile)
            total += 1
            if str(result.label) != row.label:
                changed += 1
            repo.apply_classification(session, row, result)
    app.print(f"reclassified {total} activities: {changed} labels changed")
    return EXIT_OK


def cmd_db_upgrade(app: App) -> int:
    app.db.upgrade()
    app.print(f"database up to date: {safe_url(app.database_url)}")
    return EXIT_OK


def cmd_notify_test(app: App) -> int:
    from hillsync.notify import Notifier

    worker = app.worker()
    urls = worker.all_urls()
    if not urls:
        app.print("no notify.urls configured: messages go to the log")
        return EXIT_OK
    results = Notifier(urls, clock=lambda: datetime.now(UTC)).send_test()
    failed = False
    for url, ok, error in results:
        app.print(f"{url}: {'sent' if ok else 'FAILED: ' + (error or 'refused')}")
        failed = failed or not ok
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_connect(app: App) -> int:
    athlete = app.args.athlete or DEFAULT_ATHLETE
    if athlete not in app.settings.athletes and athlete != DEFAULT_ATHLETE:
        athlete_settings(app, athlete)
    if app.args.kind == "strava":
        return connect_strava(app, athlete)
    return connect_garmin(app, athlete)


def connect_strava(app: App, athlete: str) -> int:
    from hillsync.sources.strava import connect_strava as connect

    strava = app.settings.strava
    problems: list[str] = []
    if strava.client_id is None:
        problems.append("sources.strava.client_id: required to connect Strava")
    if strava.client_secret is None:
        problems.append("sources.strava.client_secret: required to connect Strava")
    if strava.client_id is None or strava.client_secret is None:
        raise ConfigError(problems[0], problems)
    token_path = paths.token_path(app.environ, athlete, "strava")
    account = connect(
        strava.client_id,
        strava.client_secret,
        token_path,
        code=app.args.code,
        redirect_url=app.args.redirect_url,
        open_browser=not app.args.no_browser,
        say=app.print,
    )
    record_account(
        app, athlete, "strava", account.remote_id, account.display_name, token_path, account.scope
    )
    who = account.display_name or account.remote_id
    app.print(f"connected Strava athlete {who} for {athlete}; run `hillsync sync` to fetch runs")
    return EXIT_OK


def connect_garmin(app: App, athlete: str) -> int:
    import getpass

    from hillsync.sources.garmin import connect_garmin as connect
    from hillsync.sources.garmin import import_garmin_tokens

    token_dir = paths.token_dir(app.environ, athlete, "garmin")
    if app.args.tokens:
        account = import_garmin_tokens(Path(app.args.tokens), token_dir)
    else:
        account = connect(
            token_dir,
            email=app.args.email,
            password_prompt=lambda: getpass.getpass("Garmin Connect password: "),
            mfa_prompt=lambda: input("Garmin MFA code: ").strip(),
            environ=app.environ,
        )
    record_account(app, athlete, "garmin", account.remote_id, account.display_name, token_dir, None)
    who = account.display_name or account.remote_id or "account"
    app.print(f"connected Garmin {who} for {athlete}; run `hillsync sync` to fetch runs")
    return EXIT_OK


def record_account(
    app: App,
    athlete: str,
    kind: str,
    remote_id: str | None,
    display_name: str | None,
    token_path: Path,
    scope: str | None,
) -> None:
    from hillsync.store import repo
    from hillsync.worker import source_full_name

    now = datetime.now(UTC)
    with app.db.session() as session:
        row = repo.ensure_athlete(session, athlete)
        repo.upsert_account(
            session, row, kind, remote_id, display_name, str(token_path), scope, now
        )
        repo.clear_needs_auth(session, source_full_name(athlete, kind))


def cmd_disconnect(app: App) -> int:
    from hillsync.store import repo

    athlete = app.args.athlete or DEFAULT_ATHLETE
    kind = app.args.kind
    if kind == "strava":
        from hillsync.sources.strava import disconnect_strava

        strava = app.settings.strava
        token_path = paths.token_path(app.environ, athlete, "strava")
        if strava.client_id is not None and strava.client_secret is not None:
            disconnect_strava(strava.client_id, strava.client_secret, token_path)
        else:
            token_path.unlink(missing_ok=True)
    else:
        from hillsync.sources.garmin import disconnect_garmin

        disconnect_garmin(paths.token_dir(app.environ, athlete, "garmin"))
    with app.db.session() as session:
        repo.delete_account(session, athlete, kind)
    app.print(f"disconnected {kind} for {athlete}: tokens deleted")
    return EXIT_OK


def cmd_run(app: App) -> int:
    from hillsync.worker import Daemon

    daemon = Daemon(lambda: load_settings(app.args.config, app.environ), environ=app.environ)
    return daemon.run()


def demo_settings(data: Path, db_path: Path) -> Settings:
    """The demo's settings: the bundled sample folder, a throw-away SQLite file, no URLs,
    and the weekly digest on (Monday 07:00)."""
    from hillsync.config import DatabaseSettings, NotifySettings, WeeklyTime

    me = AthleteSettings(
        DEFAULT_ATHLETE,
        goal=GoalSettings(),
        notify=NotifySettings(digest=WeeklyTime(0, time(7, 0))),
        folders=(FolderSettings(path=data, name="samples", poll_minutes=5.0),),
    )
    return replace(
        Settings(),
        database=DatabaseSettings(url=f"sqlite:///{db_path}"),
        athletes={DEFAULT_ATHLETE: me},
    )


def cmd_demo(app: App) -> int:
    from importlib import resources

    from hillsync.store import repo
    from hillsync.store.db import open_database
    from hillsync.worker import Worker

    with (
        tempfile.TemporaryDirectory(prefix="hillsync-demo-") as tmp,
        resources.as_file(resources.files("hillsync") / "demo") as data,
    ):
        settings = demo_settings(Path(data), Path(tmp) / "demo.db")
        app.print(f"hillsync demo: syncing the sample runs in {data}")
        db = open_database(settings.database.url or "")
        try:
            worker = Worker(settings, db, environ={**app.environ, "XDG_STATE_HOME": tmp})
            outcomes = [worker.sync_source(spec) for spec in worker.source_specs()]
            with db.session() as session:
                runs = repo.list_runs(session, athlete=None, since=None, label=None)
            for o in outcomes:
                app.print(f"{o.name}: {o.new} activities stored, {o.rejected} rejected")
            app.print()
            print_table(
                app,
                ["start (UTC)", "sport", "label", "km", "gain m", "loss m"],
                [
                    [
                        f"{r.start_time:%Y-%m-%d %H:%M}",
                        r.sport,
                        r.label,
                        km(r.distance_m),
                        metres(r.elevation_gain_m),
                        metres(r.elevation_loss_m),
                    ]
                    for r in runs
                ],
            )
            app.print(f"{len(runs)} runs stored")
            at = max((r.start_time for r in runs), default=datetime.now(UTC)) + timedelta(minutes=1)
            reports = worker.evaluate_balances(at=at)
            worker.send_digests(at=at)
            app.print()
            for report in reports.values():
                print_balance(app, report)
            print_demo_messages(app, db)
        finally:
            db.close()
    return EXIT_OK


def print_demo_messages(app: App, db: Any) -> None:
    """The demo's console notifier: show what would have been pushed."""
    from hillsync.store import outbox

    with db.session() as session:
        messages = outbox.all_messages(session)
        for message in messages:
            app.print()
            app.print(f"notification: {message.title}")
            app.print(message.body)
            if message.attachment_name:
                app.print(f"(with the chart {message.attachment_name} where the service takes it)")
        outbox.mark_all_done(session, datetime.now(UTC))


# -- the parser ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hillsync",
        description="Classify runs as uphill, downhill or flat and watch the hill balance.",
    )
    parser.add_argument("--version", action="version", version=f"hillsync {__version__}")
    parser.add_argument("--config", type=Path, help="config file (default: searched for)")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="count", default=0, help="more output, tracebacks")
    noise.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[App], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    add("init", cmd_init, "write a commented config and create the database")

    p = add("classify", cmd_classify, "classify activity files offline (nothing is stored)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true")

    p = add("connect", cmd_connect, "connect a Strava or Garmin Connect account once")
    p.add_argument("kind", choices=SOURCE_KINDS)
    p.add_argument("--athlete", metavar="NAME")
    p.add_argument("--code", help="strava: the code from the redirect URL (headless)")
    p.add_argument("--redirect-url", metavar="URL", help="strava: the whole redirect URL")
    p.add_argument("--no-browser", action="store_true", help="strava: print the URL only")
    p.add_argument("--email", help="garmin: account e-mail")
    p.add_argument("--tokens", metavar="FILE", help="garmin: import a token file")

    p = add("disconnect", cmd_disconnect, "forget an account's tokens")
    p.add_argument("kind", choices=SOURCE_KINDS, metavar="SOURCE")
    p.add_argument("--athlete", metavar="NAME")

    p = add("sync", cmd_sync, "sync every source now, then evaluate and notify")
    p.add_argument("--source", metavar="NAME")
    p.add_argument("--since", type=parse_date, metavar="YYYY-MM-DD")
    p.add_argument("--full", action="store_true", help="re-list the whole backfill window")

    add("run", cmd_run, "the daemon: sync each source at its poll interval until stopped")

    p = add("activities", cmd_activities, "list stored runs")
    p.add_argument("--json", action="store_true")
    p.add_argument("--since", type=parse_date, metavar="DATE")
    p.add_argument("--label", choices=[str(t) for t in Terrain])
    p.add_argument("--athlete", metavar="NAME")

    p = add("balance", cmd_balance, "hill balance over the goal window")
    p.add_argument("--json", action="store_true")
    p.add_argument("--at", type=parse_date, metavar="DATE")
    p.add_argument("--athlete", metavar="NAME")

    p = add("report", cmd_report, "weekly terrain volume chart with the goal band")
    p.add_argument("--weeks", type=int, default=12)
    p.add_argument("--out", default="hillsync-report.html", metavar="FILE.html|FILE.png")
    p.add_argument("--athlete", metavar="NAME")

    p = add("status", cmd_status, "sources, last/next sync, errors, pending notifications")
    p.add_argument("--json", action="store_true")

    p = add("notify", cmd_notify_test, "notification commands")
    p.add_argument("action", choices=["test"])

    add("reclassify", cmd_reclassify, "recompute every label from stored data")

    p = add("db", cmd_db_upgrade, "database commands")
    p.add_argument("action", choices=["upgrade"])

    add("demo", cmd_demo, "one full cycle on bundled sample runs, on a throw-away database")
    return parser


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    verbosity = -1 if args.quiet else args.verbose
    configure_logging(verbosity, stream=sys.stderr, environ=env)
    app = App(args, env, sys.stdout)
    try:
        return int(args.func(app))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"hillsync: {redact(problem)}", file=sys.stderr)
        if args.verbose:
            traceback.print_exc()
        return EXIT_CONFIG
    except HillsyncError as exc:
        print(f"hillsync: {redact(str(exc))}", file=sys.stderr)
        if args.verbose:
            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        print("hillsync: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        message = redact(str(exc).splitlines()[0] if str(exc) else "")
        print(
            f"hillsync: unexpected error: {type(exc).__name__}: {message} "
            "(run with -v for the traceback)",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED
