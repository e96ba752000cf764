"""Benchmark: importing a folder of FIT files against fitdecode merely reading the same files.

Not a test. Run it as `.venv/bin/python bench/bench_folder_import.py [--copies N]`. It fills
a temporary folder with N copies of every real FIT file in tests/data/fit, then times, in the
same process and on the same files:

- fitdecode: `FitReader(path)` with its defaults, iterating every frame and doing nothing;
- fitdecode with its processor and CRC check switched off, as hillsync reads (the floor of
  any import built on fitdecode), shown for honesty about where the speed comes from;
- hillsync: `FolderSource.fetch()` over the folder: walking, fingerprinting, reading, and
  building every `Activity` (track arrays, session totals, multisport legs).

It prints both times and the ratio hillsync / fitdecode (the target is 1.3 or less), then
the time of a rescan of a folder of 10,000 known files (stat only, nothing read).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fitdecode

from hillsync.sources.base import SourceState
from hillsync.sources.files import FolderSource

FIT_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "fit"
SINCE = datetime(2000, 1, 1, tzinfo=UTC)


def _settled() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=1)


def fitdecode_only(paths: list[Path]) -> int:
    """Iterate every frame of every file; returns the frame count."""
    frames = 0
    for path in paths:
        try:
            with fitdecode.FitReader(path) as reader:
                for _ in reader:
                    frames += 1
        except fitdecode.FitError:
            pass  # the two damaged sample files end early on both sides
    return frames


def fitdecode_floor(paths: list[Path]) -> int:
    """The same with fitdecode's processor and CRC check off, as hillsync reads: the floor."""
    frames = 0
    for path in paths:
        try:
            with fitdecode.FitReader(
                path, processor=None, check_crc=fitdecode.CrcCheck.DISABLED
            ) as reader:
                for _ in reader:
                    frames += 1
        except fitdecode.FitError:
            pass
    return frames


def hillsync_import(folder: Path) -> int:
    """Fetch the whole folder through FolderSource; returns the number of activities."""
    source = FolderSource("bench", folder, batch_size=50, clock=_settled)
    return sum(len(b.activities) for b in source.fetch(SourceState(since=SINCE)))


def rescan(folder: Path, files: int) -> float:
    """Seconds to rescan a folder of `files` known files (every one in `seen`)."""
    sub = folder / "many"
    sub.mkdir()
    seen: dict[str, str] = {}
    for i in range(files):
        path = sub / f"{i:05d}.fit"
        path.write_bytes(b"")
        st = path.stat()
        seen[f"many/{i:05d}.fit"] = f"{st.st_size}:{st.st_mtime_ns}"
    source = FolderSource("bench", sub.parent, clock=_settled)
    state = SourceState(since=SINCE, seen=seen)
    start = time.perf_counter()
    batches = list(source.fetch(state))
    elapsed = time.perf_counter() - start
    assert not batches, "a known file was read again"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=3, help="copies of each FIT file")
    args = parser.parse_args()
    originals = sorted(FIT_DIR.glob("*.fit"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "fit"
        folder.mkdir()
        paths: list[Path] = []
        for k in range(args.copies):
            for original in originals:
                target = folder / f"{k:03d}-{original.name}"
                shutil.copy(original, target)
                paths.append(target)
        size_mb = sum(p.stat().st_size for p in paths) / 1e6
        print(f"{len(paths)} FIT files, {size_mb:.1f} MB")

        # Warm the page cache and imports so neither side pays for the first read.
        fitdecode_only(paths[: len(originals)])

        start = time.perf_counter()
        frames = fitdecode_only(paths)
        t_ref = time.perf_counter() - start
        start = time.perf_counter()
        activities = hillsync_import(folder)
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        fitdecode_floor(paths)
        t_floor = time.perf_counter() - start

        print(f"fitdecode, iterate all frames : {t_ref:8.2f} s  ({frames} frames)")
        print(f"hillsync FolderSource.fetch   : {t_ours:8.2f} s  ({activities} activities)")
        print(f"ratio hillsync / fitdecode    : {t_ours / t_ref:8.2f}  (target <= 1.30)")
        print(f"fitdecode, no processor/CRC   : {t_floor:8.2f} s  (hillsync's own floor)")
        print(f"ratio hillsync / that floor   : {t_ours / t_floor:8.2f}")

        with tempfile.TemporaryDirectory() as tmp2:
            t_rescan = rescan(Path(tmp2), 10_000)
        print(f"rescan of 10,000 known files  : {t_rescan:8.3f} s")


if __name__ == "__main__":
    main()
