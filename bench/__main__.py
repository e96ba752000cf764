"""`python -m bench`: every benchmark of DESIGN.md section 12 as one table.

Run from the repository root: `.venv/bin/python -m bench` (several minutes: it imports
10,000 files), or `--quick` for the same table on small sizes (a smoke test: its figures
mean nothing). Each row shows hillsync's figure, a reference measured in the same run, the
ratio, the target and whether it is met. `--only NAME` runs some groups (import, scale,
classify, strava, idle, workers: the last needs a PostgreSQL
admin URL in $HILLSYNC_TEST_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import Row, markdown


@dataclass(frozen=True)
class Sizes:
    """How big each workload is."""

    gpx_files: int
    gpx_points: int
    fit_copies: int
    history_files: int
    history_small: int
    ultra_points: int
    classify_points: int
    strava_activities: int
    idle_seconds: float
    idle_poll_minutes: float
    repeats: int
    worker_sources: int
    worker_files: int


FULL = Sizes(2000, 1500, 30, 10_000, 1_000, 200_000, 100_000, 3000, 60.0, 0.5, 3, 200, 3)
QUICK = Sizes(20, 300, 1, 60, 20, 5_000, 5_000, 300, 3.0, 0.03, 1, 12, 1)


def groups(sizes: Sizes, tmp: Path) -> dict[str, Callable[[], list[Row]]]:
    """Each group of rows, built lazily so `--only` imports only what it runs."""

    def imports() -> list[Row]:
        from bench.bench_folder_import import fit_row, gpx_row

        (tmp / "import").mkdir()
        return [
            gpx_row(tmp / "import", sizes.gpx_files, sizes.gpx_points),
            fit_row(tmp / "import", sizes.fit_copies),
        ]

    def scale() -> list[Row]:
        from bench.bench_scale import rows

        (tmp / "scale").mkdir()
        return rows(
            tmp / "scale",
            sizes.history_files,
            sizes.history_small,
            sizes.ultra_points,
            sizes.repeats,
        )

    def classify() -> list[Row]:
        from bench.bench_classify import classify_rows

        return classify_rows(sizes.classify_points, max(sizes.repeats, 3))

    def strava() -> list[Row]:
        from bench.bench_strava_requests import strava_row

        return [strava_row(sizes.strava_activities)]

    def idle() -> list[Row]:
        from bench.bench_idle import idle_rows

        return idle_rows(sizes.idle_seconds, sizes.idle_poll_minutes)

    def workers() -> list[Row]:
        from bench.bench_workers import worker_rows

        return worker_rows(sizes.worker_sources, sizes.worker_files)

    return {
        "import": imports,
        "scale": scale,
        "classify": classify,
        "strava": strava,
        "idle": idle,
        "workers": workers,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--only", action="append", metavar="GROUP", help="run only these groups")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    # The in-process figures (quiet poll, Strava) log like hillsync; only warnings here.
    from hillsync.logs import configure_logging

    configure_logging(-1, stream=sys.stderr)
    started = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="hillsync-bench-") as tmp:
        table = groups(sizes, Path(tmp))
        unknown = set(args.only or ()) - set(table)
        if unknown:
            parser.error(f"unknown group(s): {', '.join(sorted(unknown))}")
        for name, build in table.items():
            if args.only and name not in args.only:
                continue
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            rows.extend(build())
    print(markdown(rows))
    missed = sum(1 for r in rows if r.met is False)
    print(
        f"\n{len(rows)} figures, {missed} target(s) not met; "
        f"{'quick sizes (smoke test), ' if args.quick else ''}"
        f"{time.monotonic() - started:.0f} s on this machine."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
