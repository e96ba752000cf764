"""Benchmark: a first import of a folder, end to end, against plain scripts doing the same.

Not a test. Run it as `.venv/bin/python -m bench.bench_folder_import [--gpx N] [--fit-copies N]`.

- GPX: `hillsync sync` (the whole process: walk, read, classify, store in SQLite) on a folder
  of generated runs, against a plain lxml + numpy + sqlite3 script that parses the same files
  (XPath for the points), computes distance, a 10 m profile and gain/loss, and stores one
  row with the profile per file (the floor of any import built on those libraries).
- FIT: `hillsync sync` on copies of the real FIT runs in tests/data/fit, against fitdecode
  reading every frame of the same files with its defaults (CRCs checked, the data processor
  on), which stores nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import fitdecode
import numpy as np
from lxml import etree

from bench.common import (
    FIT_DIR,
    FIT_RUNS,
    GPX_NS,
    Row,
    check,
    folder_config,
    hillsync_argv,
    hillsync_env,
    make_gpx_folder,
    markdown,
    run_measured,
)

EARTH_M = 6_371_008.8


def _profile(lat: np.ndarray, lon: np.ndarray, alt: np.ndarray) -> tuple[float, np.ndarray]:
    la, lo = np.radians(lat), np.radians(lon)
    a = (
        np.sin(np.diff(la) / 2) ** 2
        + np.cos(la[:-1]) * np.cos(la[1:]) * np.sin(np.diff(lo) / 2) ** 2
    )
    d = np.concatenate(([0.0], np.cumsum(2 * EARTH_M * np.arcsin(np.sqrt(a)))))
    grid = np.arange(0.0, float(d[-1]), 10.0)
    return float(d[-1]), np.interp(grid, d, alt)


def reference_gpx_import(paths: list[Path], db: Path) -> int:
    """Parse, profile and store every file with lxml, numpy and sqlite3; returns rows stored."""
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE runs (id INTEGER PRIMARY KEY, path TEXT UNIQUE, start TEXT,"
        " distance_m REAL, gain_m REAL, loss_m REAL, profile BLOB)"
    )
    ns = {"g": GPX_NS}
    for k, path in enumerate(paths):
        tree = etree.parse(str(path))
        lat = np.array(tree.xpath("//g:trkpt/@lat", namespaces=ns), dtype=np.float64)
        lon = np.array(tree.xpath("//g:trkpt/@lon", namespaces=ns), dtype=np.float64)
        alt = np.array(tree.xpath("//g:trkpt/g:ele/text()", namespaces=ns), dtype=np.float64)
        start = tree.xpath("string(//g:trkpt[1]/g:time)", namespaces=ns)
        distance, profile = _profile(lat, lon, alt)
        steps = np.diff(profile)
        conn.execute(
            "INSERT INTO runs (path, start, distance_m, gain_m, loss_m, profile)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                str(path),
                start,
                distance,
                float(steps[steps > 0].sum()),
                float(-steps[steps < 0].sum()),
                profile.astype(np.float32).tobytes(),
            ),
        )
        if k % 50 == 49:
            conn.commit()
    conn.commit()
    count = int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
    conn.close()
    return count


def fitdecode_read(paths: list[Path]) -> int:
    """Iterate every frame of every file with fitdecode's defaults (CRC checked)."""
    frames = 0
    for path in paths:
        with fitdecode.FitReader(path, check_crc=fitdecode.CrcCheck.RAISE) as reader:
            for _ in reader:
                frames += 1
    return frames


def hillsync_sync(tmp: Path, folder: Path, name: str) -> tuple[float, int]:
    """Wall seconds of `hillsync sync` importing `folder` into a fresh SQLite database."""
    db = tmp / f"{name}.db"
    config = folder_config(tmp / f"{name}.toml", db, folder)
    env = hillsync_env(tmp / f"home-{name}")
    # The schema first, as after `hillsync init`: the figure is the import, not a migration.
    check(run_measured(hillsync_argv(config, "-q", "db", "upgrade"), env=env), "db upgrade")
    measured = run_measured(hillsync_argv(config, "-q", "sync"), env=env)
    check(measured, "hillsync sync")
    with sqlite3.connect(db) as conn:
        stored = int(conn.execute("SELECT count(*) FROM activities").fetchone()[0])
    return measured.wall_s, stored


def gpx_row(tmp: Path, files: int, points: int) -> Row:
    """hillsync vs the plain script on `files` generated GPX runs of `points` points."""
    folder = tmp / "gpx"
    paths = make_gpx_folder(folder, files, points, seed=1000)
    reference_gpx_import(paths[:5], tmp / "warm.db")  # page cache and imports
    start = time.perf_counter()
    stored_ref = reference_gpx_import(paths, tmp / "reference.db")
    t_ref = time.perf_counter() - start
    t_ours, stored = hillsync_sync(tmp, folder, "gpx")
    if stored != files or stored_ref != files:
        raise SystemExit(f"GPX import stored {stored} (reference {stored_ref}) of {files}")
    return Row(
        f"import {files:,} GPX runs into SQLite (sync, whole process)",
        t_ours,
        t_ref,
        "s",
        "lxml+numpy+sqlite3 script",
        limit=0.7,
        on_ratio=True,
        digits=1,
    )


def fit_row(tmp: Path, copies: int) -> Row:
    """hillsync importing `copies` copies of each real FIT run vs fitdecode reading them."""
    folder = tmp / "fit"
    folder.mkdir()
    paths: list[Path] = []
    for k in range(copies):
        for name in FIT_RUNS:
            target = folder / f"{k:04d}-{name}"
            shutil.copy(FIT_DIR / name, target)
            paths.append(target)
    old = time.time() - 3600
    for p in paths:
        os.utime(p, (old, old))
    fitdecode_read(paths[: len(FIT_RUNS)])
    start = time.perf_counter()
    fitdecode_read(paths)
    t_ref = time.perf_counter() - start
    t_ours, stored = hillsync_sync(tmp, folder, "fit")
    if stored != len(paths):
        raise SystemExit(f"FIT import stored {stored} of {len(paths)}")
    return Row(
        f"import {len(paths):,} FIT runs into SQLite (sync, whole process)",
        t_ours,
        t_ref,
        "s",
        "fitdecode reading, CRC checked",
        limit=0.8,
        on_ratio=True,
        digits=1,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpx", type=int, default=2000, help="GPX runs")
    parser.add_argument("--points", type=int, default=1500, help="points per GPX run")
    parser.add_argument("--fit-copies", type=int, default=30, help="copies of each FIT run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hillsync-bench-") as tmp:
        rows = [gpx_row(Path(tmp), args.gpx, args.points), fit_row(Path(tmp), args.fit_copies)]
    print(markdown(rows))


if __name__ == "__main__":
    main()
