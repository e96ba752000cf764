"""Benchmark: memory of classifying a long GPX, and what checking FIT CRCs costs.

Not a test. Run it as `.venv/bin/python bench/bench_files.py [--points N] [--rounds R]`.

1. Peak memory: writes a GPX of N points (default 200,000: a 55-hour ultra at 1 s, or two
   weeks of a 6 s logger) built from the real fenix 2 run in tests/data/fit (its points
   repeated, shifted on in time and place), then classifies it as `hillsync classify` does
   in a separate process and reports that process's peak RSS (resource.getrusage). The
   reference is the same process after its imports, before reading anything: the
   difference is what the file costs. Target: 150 MB or less in all.
2. FIT CRC cost: reads every real FIT file of tests/data/fit R times with fitdecode with
   CRC checks off and on (the only difference), and with hillsync's reader (CRCs on).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import fitdecode

ROOT = Path(__file__).resolve().parent.parent
FIT_DIR = ROOT / "tests" / "data" / "fit"
SEMICIRCLE = 180.0 / 2**31

_CHILD = r"""
import resource, sys
from pathlib import Path
from hillsync.model import ClassifyParams
try:
    from hillsync.pipeline import classify_activity
except ImportError:  # before the application layer split the worker
    from hillsync.worker import classify_activity
from hillsync.sources.fileformats import read_activities
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for activity in read_activities(Path(sys.argv[1])):
    _, result = classify_activity(activity, ClassifyParams())
    print(activity.sport, result.label, round(result.distance_m), len(activity.track or ()))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"RSS {before} {after}")
"""


def write_long_gpx(path: Path, points: int) -> None:
    """A GPX of `points` track points made of the real fenix 2 run, repeated."""
    base = []
    with fitdecode.FitReader(str(FIT_DIR / "activity-small-fenix2-run.fit")) as reader:
        for frame in reader:
            if isinstance(frame, fitdecode.FitDataMessage) and frame.name == "record":
                lat = frame.get_value("position_lat", fallback=None)
                lon = frame.get_value("position_long", fallback=None)
                alt = frame.get_value("enhanced_altitude", fallback=None)
                t = frame.get_value("timestamp", fallback=None)
                if isinstance(lat, int) and isinstance(lon, int) and t is not None:
                    base.append((lat * SEMICIRCLE, lon * SEMICIRCLE, alt or 0.0, t))
    span = base[-1][3] - base[0][3] + timedelta(seconds=1)
    with path.open("w") as out:
        out.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="bench" '
            'xmlns="http://www.topografix.com/GPX/1/1"><trk><type>running</type><trkseg>\n'
        )
        for i in range(points):
            lap, k = divmod(i, len(base))
            lat, lon, alt, t = base[k]
            when = (t + span * lap).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.write(
                f'<trkpt lat="{lat + lap * 0.001:.7f}" lon="{lon:.7f}"><ele>{alt:.1f}</ele>'
                f"<time>{when}</time></trkpt>\n"
            )
        out.write("</trkseg></trk></gpx>\n")


def peak_rss(points: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.gpx"
        write_long_gpx(path, points)
        size_mb = path.stat().st_size / 1e6
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - t0
    lines = done.stdout.strip().splitlines()
    before, after = (int(x) / 1024 for x in lines[-1].split()[1:])
    print(f"GPX of {points:,} points ({size_mb:.0f} MB): {lines[0]}")
    print(
        f"  peak RSS {after:.0f} MB (imports alone {before:.0f} MB, the file "
        f"{after - before:.0f} MB), {seconds:.1f} s; target <= 150 MB: "
        f"{'met' if after <= 150 else 'NOT met'}"
    )


def crc_cost(rounds: int) -> None:
    from hillsync.sources.fileformats import read_activities_bytes

    files = sorted(FIT_DIR.glob("*.fit"))
    blobs = [(p.name, p.read_bytes()) for p in files]

    def fitdecode_read(check: fitdecode.CrcCheck) -> float:
        t0 = time.perf_counter()
        for _ in range(rounds):
            for _name, data in blobs:
                reader = fitdecode.FitReader(
                    data,
                    processor=None,
                    check_crc=check,
                    error_handling=fitdecode.ErrorHandling.IGNORE,
                )
                try:
                    for _frame in reader:
                        pass
                except fitdecode.FitError:
                    pass
        return time.perf_counter() - t0

    off = fitdecode_read(fitdecode.CrcCheck.DISABLED)
    on = fitdecode_read(fitdecode.CrcCheck.RAISE)
    from hillsync.errors import BadActivity

    t0 = time.perf_counter()
    for _ in range(rounds):
        for name, data in blobs:
            # A benchmark times every file, the damaged ones (rejected) too.
            with contextlib.suppress(BadActivity):
                read_activities_bytes(data, name)
    ours = time.perf_counter() - t0
    print(f"FIT read of {len(blobs)} real files x {rounds}:")
    print(f"  fitdecode, CRC off  {off:.2f} s")
    print(f"  fitdecode, CRC on   {on:.2f} s  (CRC costs {100 * (on - off) / off:+.0f} %)")
    print(f"  hillsync (CRC on)   {ours:.2f} s  ({ours / on:.2f}x fitdecode with CRCs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    peak_rss(args.points)
    crc_cost(args.rounds)


if __name__ == "__main__":
    main()
