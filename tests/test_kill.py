"""Crash safety: `hillsync sync` killed with SIGKILL at random points loses and repeats nothing.

A folder of about 60 files (real FIT files under several names, generated GPX runs) is
synced once cleanly into a reference database. Into a second database, the same sync is
started and killed -9 at random instants several times, then run once to the end: the
stored runs, the counts and the notifications must equal the reference.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import OperationalError

from helpers import gpx_track
from hillsync.store.tables import ActivityRow, OutboxMessage, Run

FIT = Path(__file__).parent / "data" / "fit"
ROUNDS = 5

pytestmark = pytest.mark.slow


def gpx_run(start: datetime, climb_per_point: float, n: int = 700) -> str:
    """A GPX run heading north about 3 m a point, one second apart."""
    points = [
        (46.0 + i * 0.000027, 7.0, 800 + i * climb_per_point + (i % 5) * 0.1) for i in range(n)
    ]
    return gpx_track(points, start=start, sport="running")


def make_folder(folder: Path) -> int:
    """Fill `folder` with FIT copies and generated GPX runs; returns how many files."""
    folder.mkdir(parents=True)
    # The 350 kB cycling file would only slow every round down.
    fits = sorted(f for f in FIT.glob("*.fit") if "edge-500" not in f.name)
    count = 0
    for copy in range(2):
        for fit in fits:
            shutil.copy(fit, folder / f"watch-{copy}-{fit.stem}.fit")
            count += 1
    now = datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(20261201)
    sub = folder / "2026"
    sub.mkdir()
    while count < 60:
        start = now - timedelta(days=count % 40, hours=rng.randint(1, 12), minutes=count)
        climb = rng.choice([0.0, 0.02, 0.05, 0.3, -0.3])
        (sub / f"run-{count:03d}.gpx").write_text(gpx_run(start, climb))
        count += 1
    # Files written just now are left for a later sync (a watch may still be copying them).
    old = time.time() - 3600
    for path in folder.rglob("*"):
        os.utime(path, (old, old))
    return count


class Setup:
    """Two databases on one folder: a reference synced cleanly, a target killed at random."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.folder = tmp / "activities"
        self.files = make_folder(self.folder)

    def config(self, name: str) -> Path:
        path = self.tmp / f"{name}.toml"
        if not path.exists():
            path.write_text(
                f'[database]\nurl = "sqlite:///{self.tmp / name}.db"\n\n'
                f'[[sources.folder]]\npath = "{self.folder}"\npoll_minutes = 5\n'
            )
        return path

    def env(self, name: str) -> dict[str, str]:
        home = self.tmp / f"home-{name}"
        return {
            "HOME": str(home),
            "XDG_STATE_HOME": str(home / "state"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join(sys.path),
        }

    def start(self, name: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "hillsync", "--config", str(self.config(name)), *args],
            env=self.env(name),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, name: str, *args: str) -> tuple[int, str, str]:
        proc = self.start(name, *args)
        out, err = proc.communicate(timeout=60)
        return proc.returncode, out, err

    def json(self, name: str, *args: str) -> Any:
        code, out, err = self.run(name, *args, "--json")
        assert code == 0, err
        return json.loads(out)

    def stored(self, name: str) -> int:
        """Activities committed so far (0 before the database exists)."""
        path = self.tmp / f"{name}.db"
        if not path.exists():
            return 0
        engine = create_engine(f"sqlite:///{path}")
        try:
            with engine.connect() as conn:
                return int(conn.scalar(select(func.count()).select_from(ActivityRow)) or 0)
        except OperationalError:  # not migrated yet, or locked for a moment
            return 0
        finally:
            engine.dispose()

    def counts(self, name: str) -> dict[str, Any]:
        engine = create_engine(f"sqlite:///{self.tmp / name}.db")
        try:
            with engine.connect() as conn:
                rows = conn.scalar(select(func.count()).select_from(ActivityRow))
                distinct = conn.scalar(
                    select(func.count()).select_from(
                        select(ActivityRow.source, ActivityRow.source_id).distinct().subquery()
                    )
                )
                runs = conn.scalar(select(func.count()).select_from(Run))
                kinds = list(conn.scalars(select(OutboxMessage.kind).order_by(OutboxMessage.id)))
        finally:
            engine.dispose()
        return {"rows": rows, "distinct": distinct, "runs": runs, "messages": kinds}


def comparable(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs without their database ids."""
    return [{k: v for k, v in r.items() if k != "id"} for r in runs]


def test_sigkill_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """Killed -9 five times at random instants, then synced: the store equals a clean sync."""
    setup = Setup(tmp_path)
    began = time.monotonic()
    code, _out, err = setup.run("reference", "sync")
    full_sync_s = time.monotonic() - began
    assert code in (0, 3), err
    reference = setup.json("reference", "activities")
    ref_status = setup.json("reference", "status")
    assert len(reference) >= 40
    total = ref_status["activities"]
    # First a kill right after the first batch of files was committed, mid-import.
    proc = setup.start("target", "sync")
    deadline = time.monotonic() + 60
    while proc.poll() is None and setup.stored("target") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert 0 < setup.stored("target") < total
    rng = random.Random(20261206)  # seeded: a failure can be replayed
    for _ in range(ROUNDS):
        proc = setup.start("target", "sync")
        time.sleep(rng.uniform(0.1, max(0.2, full_sync_s)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    code, _out, err = setup.run("target", "sync")
    assert code in (0, 3), err
    assert "Traceback" not in err
    target = setup.json("target", "activities")
    assert comparable(target) == comparable(reference)
    ids = [(s["source"], s["source_id"]) for r in target for s in r["sources"]]
    assert len(ids) == len(set(ids))
    status = setup.json("target", "status")
    assert status["activities"] == ref_status["activities"]
    assert status["pending_notifications"] == ref_status["pending_notifications"]
    assert status["sources"][0]["rejected"] == ref_status["sources"][0]["rejected"]
    counts = setup.counts("target")
    assert counts["rows"] == counts["distinct"]
    assert counts == setup.counts("reference")
    assert status["activities"] == counts["rows"]
