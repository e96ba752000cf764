"""Benchmark: sources synced per minute by 1, 2 and 4 workers sharing one PostgreSQL database.

Not a test. Run it as `.venv/bin/python bench/bench_workers.py [--url ADMIN_URL]
[--sources 200] [--files 3]` (ADMIN_URL defaults to $HILLSYNC_TEST_DATABASE_URL). For each
worker count it creates a fresh database, `--sources` athletes with one folder each holding
`--files` small GPX runs, and starts that many worker processes, each opening the database
and building its sources first; then all start at once, each claiming due sources
(`Worker.sync_due`, the daemon's work: SELECT ... FOR UPDATE SKIP LOCKED) until none is
left. The figure is sources synced per minute from the start signal until the last worker
is done; the ratio is against one worker measured in the same run. Target (DESIGN.md 12):
4 workers >= 2.5x one worker, on a machine with the cores for it; the cores this machine
has, the CPU time the workers used and the machine's load when each run started are
printed beside the figures (a busy machine caps every count at the same throughput).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.common import Row

TARGET_4X = 2.5


def gpx(start: datetime, climb: float, n: int = 300) -> str:
    """A small GPX run heading north about 3 m a point, one second apart."""
    pts = "".join(
        f'<trkpt lat="{46.0 + i * 0.000027:.6f}" lon="7.000000"><ele>{800 + i * climb:.1f}</ele>'
        f"<time>{(start + timedelta(seconds=i)):%Y-%m-%dT%H:%M:%SZ}</time></trkpt>"
        for i in range(n)
    )
    return (
        '<?xml version="1.0"?><gpx version="1.1" creator="bench" '
        'xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk><type>running</type><trkseg>{pts}</trkseg></trk></gpx>"
    )


def make_folders(root: Path, sources: int, files: int) -> list[Path]:
    """One folder per athlete, `files` runs each, aged an hour (complete files)."""
    now = datetime.now(UTC).replace(microsecond=0)
    old = time.time() - 3600
    folders = []
    for a in range(sources):
        folder = root / f"a{a:03d}"
        folder.mkdir(parents=True)
        for f in range(files):
            path = folder / f"run-{f}.gpx"
            path.write_text(gpx(now - timedelta(days=f + 1, hours=a % 24), (f % 3) * 0.1))
            os.utime(path, (old, old))
        folders.append(folder)
    return folders


def write_config(path: Path, url: str, folders: list[Path]) -> None:
    tables = "".join(
        f'[[athletes.{f.name}.sources.folder]]\npath = "{f}"\npoll_minutes = 60\n\n'
        for f in folders
    )
    path.write_text(f'[database]\nurl = "{url}"\n\n{tables}')


def _worker(config: str, ready: Any, results: Any) -> None:
    from hillsync.config import load_settings
    from hillsync.logs import configure_logging
    from hillsync.store.db import open_database
    from hillsync.worker import Worker

    configure_logging(-1, stream=sys.stderr)
    settings = load_settings(Path(config), os.environ)
    db = open_database(settings.database.url or "", upgrade=False)
    worker = Worker(settings, db, environ=os.environ)
    specs = worker.source_specs()
    ready.wait()
    began = time.monotonic()
    cpu = time.process_time()
    outcomes = worker.sync_due(specs)
    synced = len([o for o in outcomes if o.state == "ok"])
    results.put((synced, time.monotonic() - began, time.process_time() - cpu))
    db.close()


@dataclass(frozen=True)
class Measured:
    """One worker count's run."""

    workers: int
    sources: int
    seconds: float
    #: CPU seconds the workers used together, and the machine's 1-minute load at the start.
    cpu_s: float
    load: float

    @property
    def per_minute(self) -> float:
        return self.sources / self.seconds * 60.0


def measure(admin_url: str, tmp: Path, folders: list[Path], workers: int) -> Measured:
    """Sync every folder source once with `workers` processes on a fresh database."""
    from hillsync.store.db import open_database

    admin = make_url(admin_url)
    if admin.drivername == "postgresql":
        admin = admin.set(drivername="postgresql+psycopg")
    name = f"hillsync_bench_{secrets.token_hex(4)}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.set(database=name).render_as_string(hide_password=False)
    try:
        open_database(url).close()  # migrated before the clock starts
        config = tmp / f"workers-{workers}.toml"
        write_config(config, url, folders)
        ctx = mp.get_context("spawn")
        ready = ctx.Barrier(workers + 1)
        results: Any = ctx.Queue()
        procs = [
            ctx.Process(target=_worker, args=(str(config), ready, results)) for _ in range(workers)
        ]
        for p in procs:
            p.start()
        ready.wait()
        load = os.getloadavg()[0]
        began = time.monotonic()
        done = [results.get(timeout=1800) for _ in procs]
        elapsed = time.monotonic() - began
        for p in procs:
            p.join(timeout=60)
        synced = sum(n for n, _s, _c in done)
        if synced != len(folders):
            raise SystemExit(f"{workers} workers synced {synced} sources of {len(folders)}")
        return Measured(workers, synced, elapsed, sum(c for _n, _s, c in done), load)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def run(
    admin_url: str, sources: int, files: int, counts: tuple[int, ...] = (1, 2, 4)
) -> list[Measured]:
    """Each worker count in turn, on the same folders."""
    with tempfile.TemporaryDirectory(prefix="hillsync-bench-workers-") as tmp:
        folders = make_folders(Path(tmp) / "athletes", sources, files)
        return [measure(admin_url, Path(tmp), folders, n) for n in counts]


def worker_rows(sources: int, files: int) -> list[Row]:
    """`python -m bench`'s rows: the seconds 2 and 4 workers take to sync every source,
    against one worker's in the same run (4 workers >= 2.5x is a ratio <= 0.4). Without a
    PostgreSQL admin URL in $HILLSYNC_TEST_DATABASE_URL there is nothing to measure on."""
    url = os.environ.get("HILLSYNC_TEST_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        print(
            "bench: workers skipped (HILLSYNC_TEST_DATABASE_URL names no PostgreSQL)",
            file=sys.stderr,
        )
        return []
    results = run(url, sources, files)
    one = results[0]
    cores = os.cpu_count()
    return [
        Row(
            f"{sources} folder sources synced by {m.workers} workers, one PostgreSQL"
            f" ({cores} cores, load {m.load:.1f})",
            m.seconds,
            one.seconds,
            "s",
            "1 worker",
            limit=1 / TARGET_4X if m.workers == 4 else None,
            on_ratio=True,
        )
        for m in results[1:]
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("HILLSYNC_TEST_DATABASE_URL"))
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--files", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("a PostgreSQL admin URL is needed: --url or HILLSYNC_TEST_DATABASE_URL")
    results = run(args.url, args.sources, args.files)
    one = results[0].per_minute
    print(f"{args.sources} folder sources of {args.files} GPX runs each, one PostgreSQL database,")
    print(f"on {os.cpu_count()} cores (hillsync's workers and PostgreSQL share them):")
    print("| workers | sources/min | seconds | ratio to 1 worker | workers' CPU s | load |")
    print("|---|---|---|---|---|---|")
    for m in results:
        print(
            f"| {m.workers} | {m.per_minute:.0f} | {m.seconds:.1f} | {m.per_minute / one:.2f}x"
            f" | {m.cpu_s:.1f} | {m.load:.1f} |"
        )
    four = next(m for m in results if m.workers == 4).per_minute / one
    met = "met" if four >= TARGET_4X else "not met"
    print(f"target: 4 workers >= {TARGET_4X}x one worker: {four:.2f}x, {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
