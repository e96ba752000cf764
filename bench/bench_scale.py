"""Benchmark: what a big history costs: import memory, a quiet poll, the commands, one huge file.

Not a test. Run it as `.venv/bin/python -m bench.bench_scale [--files N] [--small N]`.

- Peak RSS of `hillsync sync` importing N generated GPX runs (default 10,000) against the
  same import of a tenth as many: flat means the import streams, whatever the history.
- A quiet poll of that N-file folder (every file known), in-process (Worker.sync_source),
  against a bare os.walk + stat of the same folder.
- `activities --json`, `balance` and `status` on the N-run database, and `--help`, as whole
  processes, against a bare `python -c pass`.
- `hillsync classify` of one 200,000-point GPX: its peak RSS against lxml merely parsing it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    Row,
    bare_python,
    best_of,
    check,
    folder_config,
    gpx_text,
    hillsync_argv,
    hillsync_env,
    make_gpx_folder,
    markdown,
    run_measured,
)

#: Points of each run of the big history: short files keep N = 10,000 quick to import.
POINTS = 200


def import_rss(tmp: Path, name: str, files: int) -> tuple[Path, Path, dict[str, str], float]:
    """Import `files` runs with `sync`; returns (config, folder, env, peak RSS MB)."""
    folder = tmp / f"runs-{name}"
    make_gpx_folder(folder, files, POINTS, seed=50_000)
    config = folder_config(tmp / f"{name}.toml", tmp / f"{name}.db", folder)
    env = hillsync_env(tmp / f"home-{name}")
    check(run_measured(hillsync_argv(config, "-q", "db", "upgrade"), env=env), "db upgrade")
    measured = run_measured(hillsync_argv(config, "-q", "sync"), env=env)
    check(measured, f"sync of {files} files")
    return config, folder, env, measured.peak_rss_mb


def walk_and_stat(folder: Path) -> int:
    """The floor of any rescan: list the folder tree and stat every file."""
    count = 0
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            os.stat(os.path.join(dirpath, name))
            count += 1
    return count


def quiet_poll_s(config: Path, env: dict[str, str], repeats: int) -> float:
    """Best wall seconds of one in-process sync of the folder source with nothing new."""
    from hillsync.config import load_settings
    from hillsync.store.db import open_database
    from hillsync.worker import Worker

    settings = load_settings(config, env)
    assert settings.database.url is not None
    db = open_database(settings.database.url)
    try:
        worker = Worker(settings, db, environ=env)
        (spec,) = worker.source_specs()

        def poll() -> None:
            outcome = worker.sync_source(spec)
            if outcome.new or outcome.updated or outcome.state != "ok":
                raise SystemExit(f"the quiet poll was not quiet: {outcome}")

        return best_of(poll, repeats)
    finally:
        db.close()


def command_s(config: Path, env: dict[str, str], args: list[str], repeats: int) -> float:
    """Best wall seconds of one whole `hillsync` process."""

    def once() -> None:
        subprocess.run(hillsync_argv(config, *args), env=env, check=True, stdout=subprocess.DEVNULL)

    return best_of(once, repeats)


def huge_file_rows(tmp: Path, points: int) -> Row:
    """Peak RSS of `hillsync classify` on one long GPX against lxml parsing it."""
    from datetime import UTC, datetime

    path = tmp / "ultra.gpx"
    path.write_text(gpx_text(datetime(2026, 6, 1, 4, 0, tzinfo=UTC), points, seed=7))
    env = hillsync_env(tmp / "home-ultra")
    ours = run_measured([sys.executable, "-m", "hillsync", "-q", "classify", str(path)], env=env)
    check(ours, "hillsync classify")
    ref = run_measured(
        [sys.executable, "-c", f"from lxml import etree; etree.parse({str(path)!r})"], env=env
    )
    check(ref, "lxml parse")
    return Row(
        f"peak RSS, classify one {points:,}-point GPX",
        ours.peak_rss_mb,
        ref.peak_rss_mb,
        "MB",
        "lxml parsing it",
        limit=150,
        digits=0,
    )


def rows(tmp: Path, files: int, small: int, ultra_points: int, repeats: int) -> list[Row]:
    """Every row of this benchmark."""
    _c, _f, _e, rss_small = import_rss(tmp, "small", small)
    config, folder, env, rss_big = import_rss(tmp, "big", files)
    out = [
        Row(
            f"peak RSS, import {files:,} GPX files",
            rss_big,
            rss_small,
            "MB",
            f"same import of {small:,}",
            limit=1.1,
            on_ratio=True,
            digits=0,
        )
    ]
    walk_and_stat(folder)
    t_walk = best_of(lambda: walk_and_stat(folder), repeats)
    out.append(
        Row(
            f"quiet poll of a {files:,}-file folder (in-process)",
            quiet_poll_s(config, env, repeats),
            t_walk,
            "s",
            "os.walk + stat",
            limit=0.1,
            digits=3,
        )
    )
    bare = bare_python(repeats)
    for label, args in (
        ("activities --json", ["activities", "--json"]),
        ("balance", ["balance"]),
        ("status", ["status"]),
    ):
        out.append(
            Row(
                f"`{label}` with {files:,} runs (whole process)",
                command_s(config, env, args, repeats),
                bare,
                "s",
                "bare python",
                limit=0.5,
            )
        )
    out.append(
        Row(
            "`--help` (whole process)",
            command_s(config, env, ["--help"], repeats),
            bare,
            "s",
            "bare python",
            limit=0.15,
        )
    )
    out.append(huge_file_rows(tmp, ultra_points))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--ultra-points", type=int, default=200_000)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hillsync-bench-") as tmp:
        print(markdown(rows(Path(tmp), args.files, args.small, args.ultra_points, 3)))
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
