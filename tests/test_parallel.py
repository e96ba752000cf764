"""Parallel import: the process pool reads files in order, so batches equal a serial read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from helpers import child_env
from hillsync.model import Batch
from hillsync.parallel import ordered_map, pool_mapper, serial_map
from hillsync.sources.base import SourceState
from hillsync.sources.files import FolderSource

DATA = Path(__file__).parent / "data"
SINCE = datetime(2000, 1, 1, tzinfo=UTC)


def _square(x: int) -> int:
    return x * x


def _later() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=5)


def _folder(tmp: Path) -> Path:
    """Real FIT, GPX and TCX runs under several names, and files that must be rejected."""
    folder = tmp / "runs"
    folder.mkdir()
    for k in range(3):
        for src in sorted((DATA / "fit").glob("*.fit")):
            if "edge-500" in src.name:
                continue  # 350 kB: slow on a busy machine, adds nothing here
            shutil.copy(src, folder / f"{k}-{src.name}")
        shutil.copy(DATA / "gpx" / "two-segments.gpx", folder / f"{k}-a.gpx")
        shutil.copy(DATA / "tcx" / "run.tcx", folder / f"{k}-b.tcx")
        (folder / f"{k}-bad.gpx").write_text("<gpx><trk>")
    old = time.time() - 3600
    for path in folder.iterdir():
        os.utime(path, (old, old))
    return folder


def _summary(batches: list[Batch]) -> list[object]:
    """What a batch commits: its seen keys, its activities' figures, its rejections."""
    return [
        (
            sorted(b.seen.items()),
            [(a.source_id, a.sport, a.start_time, a.distance_m, a.warning) for a in b.activities],
            [(r.key, r.reason) for r in b.rejected],
        )
        for b in batches
    ]


class TestOrderedMap:
    """The pool's map keeps the input order and a bounded window."""

    def test_order_kept(self) -> None:
        """Results come back in input order from two workers."""
        with pool_mapper(2) as mapper:
            assert list(mapper(_square, range(50))) == [x * x for x in range(50)]

    def test_one_worker_is_the_builtin_map(self) -> None:
        """One worker means no pool at all."""
        with pool_mapper(1) as mapper:
            assert mapper is serial_map

    def test_window_bounds_the_work_submitted(self) -> None:
        """No more than `window` items are taken from the input before the first result."""
        taken: list[int] = []

        def items() -> object:
            for i in range(100):
                taken.append(i)
                yield i

        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(2) as executor:
            results = ordered_map(executor, _square, items(), window=5)  # type: ignore[arg-type]
            assert next(results) == 0
            assert len(taken) <= 5
            assert list(results) == [x * x for x in range(1, 100)]


class TestParallelFolderImport:
    """FolderSource with a pool yields exactly the batches of a serial read."""

    def test_same_batches_as_serial(self, tmp_path: Path) -> None:
        """Two workers, batches of 7: same keys, activities and rejections in the same order."""
        folder = _folder(tmp_path)
        serial = list(
            FolderSource("f", folder, batch_size=7, clock=_later).fetch(SourceState(since=SINCE))
        )
        pooled = list(
            FolderSource("f", folder, batch_size=7, clock=_later, workers=2).fetch(
                SourceState(since=SINCE)
            )
        )
        assert len(serial) > 3
        assert _summary(pooled) == _summary(serial)
        assert sum(len(b.rejected) for b in pooled) >= 3


class TestForkSafety:
    """The pool forks a process with no other thread alive (a fork with a live thread may
    deadlock the child, and Python warns of it)."""

    def test_pooled_sync_forks_a_single_threaded_process(self, tmp_path: Path) -> None:
        """A whole `hillsync sync` of a folder read by a pool: no fork warning at all."""
        folder = _folder(tmp_path)
        config = tmp_path / "config.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "h.db"}"\n\n[sync]\nworkers = 2\n\n'
            f'[[sources.folder]]\npath = "{folder}"\n'
        )
        # A fresh process: this test process has threads of other tests alive.
        proc = subprocess.run(
            [
                *(sys.executable, "-W", "always::DeprecationWarning", "-m", "hillsync"),
                *("--config", str(config), "sync"),
            ],
            env=child_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode in (0, 3), proc.stderr[-2000:]
        assert "new" in proc.stdout
        assert "multi-threaded" not in proc.stderr
