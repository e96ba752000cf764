"""What every benchmark shares: a table row, generated runs, a measured child process.

Not a test and not part of hillsync. Every figure is measured on this machine in the run
that prints it; nothing is cached between runs.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIT_DIR = ROOT / "tests" / "data" / "fit"
#: The real run FIT files (the damaged samples and the ride are left out).
FIT_RUNS = (
    "2013-02-06-12-11-14.fit",
    "activity-small-fenix2-run.fit",
    "compressed-speed-distance.fit",
)
GPX_NS = "http://www.topografix.com/GPX/1/1"


@dataclass(frozen=True)
class Row:
    """One line of the table: hillsync's figure beside a reference measured in the same run.

    `limit` applies to `ratio` when `on_ratio`, else to `hillsync` itself; None: no target.
    """

    figure: str
    hillsync: float
    reference: float | None
    unit: str
    reference_is: str
    limit: float | None = None
    on_ratio: bool = False
    strict: bool = False
    digits: int = 2

    @property
    def ratio(self) -> float | None:
        if self.reference is None or self.reference == 0:
            return None
        return self.hillsync / self.reference

    @property
    def target(self) -> str:
        if self.limit is None:
            return "-"
        op = "<" if self.strict else "<="
        return f"{op} {self.limit:g}x" if self.on_ratio else f"{op} {self.limit:g} {self.unit}"

    @property
    def met(self) -> bool | None:
        if self.limit is None:
            return None
        value = self.ratio if self.on_ratio else self.hillsync
        if value is None:
            return None
        return value < self.limit if self.strict else value <= self.limit

    def cells(self) -> list[str]:
        """figure, hillsync, reference, ratio, target, met."""
        ref = "-" if self.reference is None else f"{self.reference:.{self.digits}f} {self.unit}"
        ratio = self.ratio
        met = self.met
        return [
            self.figure,
            f"{self.hillsync:.{self.digits}f} {self.unit}",
            f"{ref} ({self.reference_is})" if self.reference is not None else self.reference_is,
            "-" if ratio is None else f"{ratio:.2f}x",
            self.target,
            "-" if met is None else ("yes" if met else "**no**"),
        ]


HEADERS = ("figure", "hillsync", "reference (same run)", "ratio", "target", "met")


def markdown(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (what the README shows)."""
    lines = [
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" for _ in HEADERS) + "|",
    ]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


# -- generated runs ----------------------------------------------------------------------


def route(
    n: int, seed: int, *, spacing_m: float = 3.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A wandering route of n samples about `spacing_m` apart over rolling hills, with noise."""
    rng = np.random.default_rng(seed)
    heading = np.cumsum(rng.normal(0.0, 0.05, n))
    step = rng.normal(spacing_m, spacing_m / 10, n).clip(spacing_m / 6)
    north = np.cumsum(step * np.cos(heading))
    east = np.cumsum(step * np.sin(heading))
    lat = 46.0 + north / 111_195.0
    lon = 7.0 + east / (111_195.0 * math.cos(math.radians(46.0)))
    d = np.cumsum(step)
    phase = rng.uniform(0, 6.28)
    climb = rng.choice([0.0, 0.0, 0.01, 0.03, -0.03])
    alt = (
        800.0
        + climb * d
        + 40.0 * np.sin(d / 1500.0 + phase)
        + 15.0 * np.sin(d / 420.0 + 1.0)
        + rng.normal(0.0, 0.8, n)
    )
    return lat, lon, alt


def gpx_text(start: datetime, n: int, seed: int) -> str:
    """A GPX 1.1 running track of n points, one a second, as a watch writes it."""
    lat, lon, alt = route(n, seed)
    t0 = int(start.timestamp())
    stamps = [datetime.fromtimestamp(t0 + i, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(n)]
    pts = "\n".join(
        f'<trkpt lat="{la:.7f}" lon="{lo:.7f}"><ele>{al:.1f}</ele><time>{ts}</time></trkpt>'
        for la, lo, al, ts in zip(lat.tolist(), lon.tolist(), alt.tolist(), stamps, strict=True)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<gpx version="1.1" creator="hillsync bench" xmlns="{GPX_NS}">\n'
        f"<trk><name>Run {seed}</name><type>running</type><trkseg>\n{pts}\n</trkseg></trk></gpx>\n"
    )


def make_gpx_folder(folder: Path, files: int, points: int, *, seed: int = 0) -> list[Path]:
    """`files` distinct runs, one every ~9 hours back from 2026-11-30, in yearly subfolders.

    Modification times are an hour old, so no file counts as still being written.
    """
    end = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    old = time.time() - 3600
    out: list[Path] = []
    for i in range(files):
        start = end - timedelta(hours=9 * i, minutes=i % 37)
        sub = folder / f"{start.year}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"{start:%Y-%m-%d-%H%M}-{i:05d}.gpx"
        path.write_text(gpx_text(start, points, seed + i))
        os.utime(path, (old, old))
        out.append(path)
    return out


# -- processes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """A child process's wall time, peak resident memory and exit code."""

    wall_s: float
    peak_rss_mb: float
    returncode: int
    stderr: str


#: Prepended to a child's code: at exit it writes its own peak RSS (VmHWM, which exec
#: resets) to the file named by $BENCH_PEAK_FILE. wait4's ru_maxrss would not do: it keeps
#: the resident size of the (large) benchmark process the child was forked from.
_PEAK_PRELUDE = """
import atexit, os, sys
def _bench_peak():
    with open('/proc/self/status') as f:
        hwm = next(line.split()[1] for line in f if line.startswith('VmHWM:'))
    with open(os.environ['BENCH_PEAK_FILE'], 'w') as out:
        out.write(hwm)
atexit.register(_bench_peak)
"""
_RUN_MODULE = """
import runpy
del sys.argv[0]
runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)
"""


def _with_peak(argv: Sequence[str]) -> list[str]:
    """argv (`python -m MOD ...` or `python -c CODE`) rewritten to report its peak RSS."""
    python, flag, arg, *rest = argv
    if flag == "-m":
        return [python, "-c", _PEAK_PRELUDE + _RUN_MODULE, arg, *rest]
    if flag == "-c":
        return [python, "-c", _PEAK_PRELUDE + arg, *rest]
    raise ValueError(f"cannot measure {argv!r}")


def run_measured(argv: Sequence[str], *, env: dict[str, str] | None = None) -> Measured:
    """Run a python child (`-m` or `-c`) to its end: wall time and its own peak RSS."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    tag = f"bench-{os.getpid()}-{time.monotonic_ns()}"
    err_path, peak_path = tmp / f"{tag}.err", tmp / f"{tag}.peak"
    child_env = dict(os.environ if env is None else env, BENCH_PEAK_FILE=str(peak_path))
    with err_path.open("w+") as err:
        start = time.perf_counter()
        proc = subprocess.run(
            _with_peak(argv), env=child_env, stdout=subprocess.DEVNULL, stderr=err, check=False
        )
        wall = time.perf_counter() - start
        err.seek(0)
        text = err.read()
    err_path.unlink()
    try:
        peak_mb = int(peak_path.read_text()) / 1024
        peak_path.unlink()
    except (OSError, ValueError):
        peak_mb = float("nan")  # killed before its exit handlers ran
    return Measured(wall, peak_mb, proc.returncode, text)


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` runs of fn, in seconds (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def hillsync_env(home: Path) -> dict[str, str]:
    """A child environment with its own XDG folders (nothing of the user's is touched)."""
    return {
        "HOME": str(home),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "PATH": os.environ.get("PATH", ""),
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        # Measuring another checkout (a before/after comparison) goes through PYTHONPATH.
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
    }


def folder_config(path: Path, db: Path, folder: Path, *, poll_minutes: float = 5.0) -> Path:
    """A config with one folder source on an SQLite database."""
    path.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n\n'
        f'[[sources.folder]]\npath = "{folder}"\npoll_minutes = {poll_minutes}\n'
    )
    return path


def hillsync_argv(config: Path, *args: str) -> list[str]:
    """`python -m hillsync --config CONFIG ARGS` with this interpreter."""
    return [sys.executable, "-m", "hillsync", "--config", str(config), *args]


def bare_python(repeats: int) -> float:
    """Wall seconds of the bare interpreter starting and exiting (the floor of any command)."""
    return best_of(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), repeats)


def check(measured: Measured, what: str) -> None:
    """Stop the benchmark when a measured command failed (its figure would mean nothing)."""
    if measured.returncode not in (0, 3):
        raise SystemExit(f"{what} exited with {measured.returncode}:\n{measured.stderr[-3000:]}")
