"""The `hillsync` command: parses arguments, calls the application layer, renders.

This is the only module that turns errors into messages and exit codes: 0 success, 1
unexpected failure, 2 usage or config error, 3 partial (a source needs re-authentication,
is rate-limited or unavailable, or an input file was rejected). An expected failure is one
line on stderr; `-v` adds the traceback. Every use case lives in `hillsync.app`; nothing
here reads the store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from hillsync import __version__
from hillsync.balance import terrain_lines
from hillsync.errors import ConfigError, HillsyncError, UsageError
from hillsync.logs import configure_logging, redact
from hillsync.model import ACCOUNT_KINDS, BalanceReport, SourceKind, SyncStatus, Terrain

if TYPE_CHECKING:
    from datetime import date

    from hillsync.app.classify import ClassifiedFile
    from hillsync.app.context import AppContext
    from hillsync.app.status import StatusDocument
    from hillsync.worker import CycleResult

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_CONFIG = 2
EXIT_PARTIAL = 3


class Cli:
    """One command's arguments, its application context and its output stream."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> None:
        self.args = args
        self.out = out
        # Settings (pydantic) and the store load on first use: `--help` needs neither.
        from hillsync.app.context import AppContext
        from hillsync.config import load_settings

        self.ctx: AppContext = AppContext(lambda: load_settings(args.config, environ), environ)

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def print_json(self, value: object) -> None:
        # Indented for a person at a terminal; one line for a pipe, where json's C encoder
        # applies (indenting is pure Python: 0.8 s of `activities --json` with 10,000
        # runs). One string, one write: json.dump would feed the stream small chunks.
        indent = 2 if self.out.isatty() else None
        self.out.write(json.dumps(value, indent=indent, ensure_ascii=False) + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A plain aligned table (readable in a terminal, in a pipe and in journald)."""
        widths = [len(h) for h in headers]
        for row in rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
        self.print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
        for row in rows:
            self.print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# -- formatting ------------------------------------------------------------------------


def parse_date(text: str) -> date:
    """A YYYY-MM-DD argument."""
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def km(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f}"


def metres(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def minute(text: str | None) -> str:
    """An ISO time as `YYYY-MM-DD HH:MM`, or `-`."""
    return (text or "-")[:16].replace("T", " ")


# -- commands --------------------------------------------------------------------------


def cmd_init(cli: Cli) -> int:
    from hillsync.app.setup import init

    result = init(cli.ctx, cli.args.config)
    if result.written:
        cli.print(
            f"wrote {result.config}: edit it, then run `hillsync connect strava` or add a folder"
        )
    else:
        cli.print(f"{result.config} exists already: left as it is")
    cli.print(f"database ready: {result.database}")
    return EXIT_OK


def cmd_classify(cli: Cli) -> int:
    from hillsync.app.classify import classify_files

    settings = cli.ctx.settings
    names = cli.args.files
    with classify_progress(len(names) > 1 and sys.stderr.isatty()) as progress:
        files = classify_files(
            names, settings.classify, untyped=settings.sync.untyped, progress=progress
        )
    if cli.args.json:
        cli.print_json([f.as_json() for f in files])
    else:
        print_classified(cli, files)
    return EXIT_PARTIAL if any(f.error for f in files) else EXIT_OK


@contextmanager
def classify_progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """Files classified so far, on the terminal's stderr (stdout may be JSON for a pipe)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("classifying"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("classify", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def print_classified(cli: Cli, files: Sequence[ClassifiedFile]) -> None:
    table = []
    for f in files:
        c = f.result
        if c is None:
            table.append([f.file, "-", "error", "-", "-", "-", f.error or ""])
        elif f.warning:
            table.append([f.file, f.sport or "-", c.label, km(c.distance_m), "-", "-", f.warning])
        elif c.label == "unknown" or f.sport == "unknown":
            # A label or sport that might surprise: say why instead of the split.
            why = c.reason if c.label == "unknown" else "sport neither stated nor inferable"
            table.append(
                [
                    f.file,
                    f.sport or "-",
                    c.label,
                    km(c.distance_m),
                    metres(c.elevation_gain_m),
                    metres(c.elevation_loss_m),
                    why,
                ]
            )
        else:
            split = f"{km(c.uphill_m)}/{km(c.downhill_m)}/{km(c.flat_m)}"
            table.append(
                [
                    f.file,
                    f.sport or "-",
                    c.label,
                    km(c.distance_m),
                    metres(c.elevation_gain_m),
                    metres(c.elevation_loss_m),
                    split,
                ]
            )
    cli.table(["file", "sport", "label", "km", "gain m", "loss m", "up/down/flat km or why"], table)


@contextmanager
def sync_progress(enabled: bool) -> Iterator[Callable[[str, int, int | None], None] | None]:
    """A rich progress display on a terminal; nothing otherwise."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(source: str, items: int, total: int | None) -> None:
            if source not in tasks:
                tasks[source] = progress.add_task(f"syncing {source}", total=total)
            elif total is not None:
                progress.update(tasks[source], total=total)
            progress.advance(tasks[source], items)

        yield advance


def cmd_sync(cli: Cli) -> int:
    from hillsync.app.sync import sync

    with sync_progress(cli.out.isatty()) as progress:
        result = sync(
            cli.ctx, only=cli.args.source, since=cli.args.since, full=cli.args.full,
            progress=progress,
        )  # fmt: skip
    print_cycle(cli, result)
    return EXIT_PARTIAL if result.partial else EXIT_OK


def print_cycle(cli: Cli, result: CycleResult) -> None:
    if not result.outcomes:
        cli.print(
            "no sources configured: add a [[sources.folder]] or run `hillsync connect strava`"
        )
    for o in result.outcomes:
        if o.skipped:
            cli.print(f"{o.name}: skipped, {o.skipped}")
            continue
        line = (
            f"{o.name}: {o.new} new, {o.updated} updated, {o.deleted} deleted, "
            f"{o.rejected} rejected, {o.waiting} waiting"
        )
        if o.rejected:
            line += " (see `hillsync status` for the rejected)"
        if o.waiting:
            line += " (still being written: read at the next sync)"
        if o.state is not SyncStatus.OK:
            line += f"; {o.state}: {o.error}"
        cli.print(line)
    for report in result.reports.values():
        cli.print(balance_line(report))


def balance_line(report: BalanceReport) -> str:
    goal = report.goal
    band = f"{goal.hill_share_min:.0%}-{goal.hill_share_max:.0%}"
    if report.hill_share is None:
        share = "no labelled runs"
    else:
        share = f"hill share {report.hill_share:.0%}"
    from hillsync.config import DEFAULT_ATHLETE

    prefix = "" if report.athlete == DEFAULT_ATHLETE else f"{report.athlete}: "
    return (
        f"{prefix}{share} (goal {band}) over {report.runs} runs, "
        f"{report.distance_m / 1000:.0f} km, {report.goal.window_days} days: {report.status}"
    )


def cmd_activities(cli: Cli) -> int:
    from hillsync.app.runs import list_runs, run_json

    label = Terrain(cli.args.label) if cli.args.label else None
    runs = list_runs(cli.ctx, athlete=cli.args.athlete, since=cli.args.since, label=label)
    if cli.args.json:
        cli.print_json([run_json(r) for r in runs])
        return EXIT_OK
    table = [
        [
            f"{r.start_time:%Y-%m-%d %H:%M}",
            r.athlete,
            r.sport,
            r.label,
            km(r.distance_m),
            metres(r.elevation_gain_m),
            metres(r.elevation_loss_m),
            ",".join(source for source, _id in r.sources),
            # Where a label might surprise (unknown), say why.
            (r.reason or "") if r.label == "unknown" else "",
        ]
        for r in runs
    ]
    cli.table(
        ["start (UTC)", "athlete", "sport", "label", "km", "gain m", "loss m", "sources", "why"],
        table,
    )
    cli.print(f"{len(runs)} runs")
    return EXIT_OK


def share_bar(share: float | None, low: float, high: float, width: int = 40) -> str:
    """A bar from 0 to 100%: the band as '=' , the share as '|'."""
    cells = ["." for _ in range(width)]
    for i in range(int(low * width), min(width, int(high * width) + 1)):
        cells[i] = "="
    if share is not None:
        cells[min(width - 1, int(share * width))] = "|"
    return "0% [" + "".join(cells) + "] 100%"


def cmd_balance(cli: Cli) -> int:
    from hillsync.app.balance import current_balance
    from hillsync.balance import report_as_json

    report = current_balance(cli.ctx, cli.args.athlete, cli.args.at)
    if cli.args.json:
        cli.print_json(report_as_json(report))
    else:
        print_balance(cli, report)
    return EXIT_OK


def print_balance(cli: Cli, report: BalanceReport) -> None:
    goal = report.goal
    cli.print(
        f"{report.athlete}: {report.window_start:%Y-%m-%d} to {report.window_end:%Y-%m-%d}, "
        f"{report.runs} runs, {report.distance_m / 1000:.1f} km, {report.vertical_m:.0f} m up"
    )
    for label in Terrain:
        cli.print(f"  {label!s:<9} {report.by_label.get(label, 0.0) / 1000:7.1f} km")
    if report.hill_share is not None:
        bar = share_bar(report.hill_share, goal.hill_share_min, goal.hill_share_max)
        cli.print(
            f"  hill share     {report.hill_share:.0%} (goal {goal.hill_share_min:.0%}-"
            f"{goal.hill_share_max:.0%})  {bar}"
        )
    if report.downhill_share is not None:
        cli.print(
            f"  downhill share {report.downhill_share:.0%} (max {goal.downhill_share_max:.0%})"
        )
    for line in terrain_lines(report):
        cli.print(line)
    cli.print(f"status: {report.status}")
    cli.print(report.advice)


def cmd_report(cli: Cli) -> int:
    from hillsync.app.report import write_report

    out = write_report(cli.ctx, cli.args.athlete, cli.args.weeks, Path(cli.args.out))
    cli.print(f"wrote {out}")
    return EXIT_OK


def cmd_status(cli: Cli) -> int:
    from hillsync.app.status import status_document

    doc = status_document(cli.ctx)
    if cli.args.json:
        cli.print_json(doc.as_json())
    else:
        print_status(cli, doc)
    return EXIT_OK


def print_status(cli: Cli, doc: StatusDocument) -> None:
    from hillsync.model import iso_utc

    table = [
        [
            s.name,
            s.state,
            minute(iso_utc(s.last_sync)),
            minute(iso_utc(s.next_sync)),
            f"{s.worker} since {minute(iso_utc(s.lease_since))[11:]}" if s.worker else "-",
            s.last_error or "",
        ]
        for s in doc.sources
    ]
    cli.table(["source", "state", "last sync", "next sync", "worker", "last error"], table)
    for s in doc.sources:
        for budget in s.rate_budget.budgets if s.rate_budget else ():
            if budget.name in ("read", "overall"):
                cli.print(
                    f"  {s.name} {budget.name} budget: {budget.short.used}/{budget.short.limit}"
                    f" this quarter hour, {budget.daily.used}/{budget.daily.limit} today"
                )
        for item in s.rejected:
            cli.print(f"  rejected {s.name}:{item.file}: {item.reason}")
        if s.stale_since is not None:
            cli.print(
                f"  {s.name} has gone silent: no run lately (noticed {s.stale_since:%Y-%m-%d})"
            )
        if s.application is not None:
            cli.print(f"  {s.name} uses Strava application {s.application}")
    cli.print(
        f"{doc.activities} activities stored, {doc.pending_notifications} notifications pending"
    )


def cmd_reclassify(cli: Cli) -> int:
    from hillsync.app.runs import reclassify

    result = reclassify(cli.ctx)
    cli.print(f"reclassified {result.total} activities: {result.changed} labels changed")
    return EXIT_OK


def cmd_db_upgrade(cli: Cli) -> int:
    from hillsync.app.setup import db_upgrade

    cli.print(f"database up to date: {db_upgrade(cli.ctx)}")
    return EXIT_OK


def cmd_notify_test(cli: Cli) -> int:
    from hillsync.app.notifications import notify_test

    results = notify_test(cli.ctx)
    if not results:
        cli.print("no notify.urls configured: messages go to the log")
        return EXIT_OK
    for r in results:
        cli.print(f"{r.url}: {'sent' if r.ok else 'FAILED: ' + (r.error or 'refused')}")
    return EXIT_OK if all(r.ok for r in results) else EXIT_PARTIAL


def cmd_connect(cli: Cli) -> int:
    from hillsync.app import accounts

    args = cli.args
    if SourceKind(args.kind) is SourceKind.STRAVA:
        account = accounts.connect_strava(
            cli.ctx,
            args.athlete,
            code=args.code,
            redirect_url=args.redirect_url,
            open_browser=not args.no_browser,
            say=cli.print,
        )
        who = account.display_name or account.remote_id
        cli.print(
            f"connected Strava athlete {who} for {account.athlete} (application"
            f" {account.application}); run `hillsync sync` to fetch runs"
        )
        return EXIT_OK
    import getpass

    account = accounts.connect_garmin(
        cli.ctx,
        args.athlete,
        tokens_file=Path(args.tokens) if args.tokens else None,
        email=args.email,
        password_prompt=lambda: terminal_prompt(
            lambda: getpass.getpass("Garmin Connect password: "), "the password"
        ),
        mfa_prompt=lambda: terminal_prompt(
            lambda: input("Garmin MFA code: ").strip(), "the MFA code"
        ),
        say=cli.print,
    )
    who = account.display_name or account.remote_id or "account"
    cli.print(f"connected Garmin {who} for {account.athlete}; run `hillsync sync` to fetch runs")
    return EXIT_OK


def terminal_prompt(ask: Callable[[], str], what: str) -> str:
    """`ask()` on a terminal; without one (cron, a pipe, ssh without -t) a usage error.

    Raises UsageError saying how to connect without a prompt.
    """
    hint = (
        f"no terminal to ask {what}: set HILLSYNC_GARMIN_PASSWORD (and run where the MFA "
        "code can be typed), or import a token file made elsewhere with --tokens FILE"
    )
    if not sys.stdin.isatty():
        raise UsageError(hint)
    try:
        return ask()
    except EOFError:
        raise UsageError(hint) from None


def cmd_disconnect(cli: Cli) -> int:
    from hillsync.app.accounts import disconnect

    kind = SourceKind(cli.args.kind)
    result = disconnect(cli.ctx, kind, cli.args.athlete, delete_data=cli.args.delete_data)
    if kind is not SourceKind.STRAVA:
        done = "tokens deleted"
    elif result.revoked:
        done = "access revoked on Strava, tokens deleted"
    else:
        done = (
            "tokens deleted (Strava did not confirm the revocation: remove hillsync at"
            " https://www.strava.com/settings/apps)"
        )
    kept = "" if result.deleted is not None else "; its runs are kept (--delete-data deletes them)"
    cli.print(f"disconnected {kind} for {result.athlete}: {done}{kept}")
    if result.deleted is not None:
        cli.print(result.deleted.describe({"strava": "Strava", "garmin": "Garmin"}[kind.value]))
    return EXIT_OK


def cmd_run(cli: Cli) -> int:
    from hillsync.config import load_settings
    from hillsync.daemon import Daemon

    args, environ = cli.args, cli.ctx.environ
    return Daemon(lambda: load_settings(args.config, environ), environ=environ).run()


def cmd_serve(cli: Cli) -> int:
    from hillsync.app.web import WebUseCases
    from hillsync.web.server import check_options, serve, web_options

    options = web_options(cli.ctx.settings, cli.args.host, cli.args.port)
    check_options(options)
    backend = WebUseCases(cli.ctx)
    _ = cli.ctx.db  # opened (and migrated) before the server says it is serving
    try:
        serve(backend, options, ready=lambda where: cli.print(f"hillsync serving on {where}"))
    except OSError as exc:
        raise HillsyncError(
            f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}"
        ) from None
    return EXIT_OK


def cmd_webhook(cli: Cli) -> int:
    from hillsync.app import webhook
    from hillsync.worker import SAFETY_POLL_MINUTES

    action, url = cli.args.action, cli.args.public_url
    if action == "subscribe":
        if not url:
            raise UsageError("webhook subscribe needs the server's public address (https://...)")
        made = webhook.subscribe(cli.ctx, url)
        cli.print(
            f"subscribed: Strava sends push events to {made.callback_url} (subscription"
            f" {made.id}); Strava sources are now polled only every"
            f" {SAFETY_POLL_MINUTES / 60:g} hours as a safety net"
        )
        return EXIT_OK
    if url:
        raise UsageError(f"webhook {action} takes no address")
    if action == "show":
        found = webhook.show(cli.ctx)
        if not found:
            cli.print("no push subscription: Strava sources are polled every poll_minutes")
        for sub in found:
            cli.print(f"subscription {sub.id}: {sub.callback_url}")
        return EXIT_OK
    gone = webhook.unsubscribe(cli.ctx)
    if gone:
        cli.print(f"unsubscribed {', '.join(map(str, gone))}: polling is back to poll_minutes")
    else:
        cli.print("there was no push subscription")
    return EXIT_OK


def cmd_demo(cli: Cli) -> int:
    from hillsync.app.sync import demo

    result = demo(dict(cli.ctx.environ))
    cli.print(f"hillsync demo: synced the sample runs in {result.data}")
    for o in result.outcomes:
        cli.print(f"{o.name}: {o.new} activities stored, {o.rejected} rejected")
    cli.print()
    cli.table(
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
            for r in result.runs
        ],
    )
    cli.print(f"{len(result.runs)} runs stored")
    cli.print()
    for report in result.reports:
        print_balance(cli, report)
    # The demo's console notifier: what would have been pushed.
    for message in result.messages:
        cli.print()
        cli.print(f"notification: {message.title}")
        cli.print(message.body)
        if message.attachment_name:
            cli.print(f"(with the chart {message.attachment_name} where the service takes it)")
    return EXIT_OK


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

    def add(name: str, func: Callable[[Cli], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    add("init", cmd_init, "write a commented config and create the database")

    p = add("classify", cmd_classify, "classify activity files offline (nothing is stored)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true")

    p = add("connect", cmd_connect, "connect a Strava or Garmin Connect account once")
    p.add_argument("kind", choices=[str(k) for k in ACCOUNT_KINDS])
    p.add_argument("--athlete", metavar="NAME")
    p.add_argument("--code", help="strava: the code from the redirect URL (headless)")
    p.add_argument("--redirect-url", metavar="URL", help="strava: the whole redirect URL")
    p.add_argument("--no-browser", action="store_true", help="strava: print the URL only")
    p.add_argument("--email", help="garmin: account e-mail")
    p.add_argument("--tokens", metavar="FILE", help="garmin: import a token file")

    p = add("disconnect", cmd_disconnect, "forget an account's tokens (Strava: and its data)")
    p.add_argument("kind", choices=[str(k) for k in ACCOUNT_KINDS], metavar="SOURCE")
    p.add_argument("--athlete", metavar="NAME")
    p.add_argument(
        "--delete-data",
        action="store_true",
        help="garmin: also delete its activities (Strava's are always deleted)",
    )

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

    p = add("serve", cmd_serve, "the web dashboard, browser connect flows, Strava push events")
    p.add_argument("--host", help="address to listen on (default: [web] host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: [web] port, 8722)")

    p = add("webhook", cmd_webhook, "manage the Strava application's push subscription")
    p.add_argument("action", choices=["subscribe", "unsubscribe", "show"])
    p.add_argument("public_url", nargs="?", metavar="PUBLIC_URL")

    add("demo", cmd_demo, "one full cycle on bundled sample runs, on a throw-away database")
    return parser


def print_traceback() -> None:
    """The current exception's traceback on stderr (for -v), every known secret masked."""
    print(redact(traceback.format_exc()), file=sys.stderr, end="")


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    verbosity = -1 if args.quiet else args.verbose
    configure_logging(verbosity, stream=sys.stderr, environ=env)
    cli = Cli(args, env, sys.stdout)
    try:
        return int(args.func(cli))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"hillsync: {redact(problem)}", file=sys.stderr)
        if args.verbose:
            print_traceback()
        return EXIT_CONFIG
    except HillsyncError as exc:
        print(f"hillsync: {redact(str(exc))}", file=sys.stderr)
        if args.verbose:
            print_traceback()
        return exc.exit_code
    except KeyboardInterrupt:
        print("hillsync: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        if args.verbose:
            print_traceback()
        message = redact(str(exc).splitlines()[0] if str(exc) else "")
        print(
            f"hillsync: unexpected error: {type(exc).__name__}: {message} "
            "(run with -v for the traceback)",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED
    finally:
        cli.ctx.close()
