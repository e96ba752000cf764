"""Benchmark: resident memory and CPU of an idle `hillsync run` with one folder source.

Not a test. Run it as `.venv/bin/python bench/bench_idle.py [--seconds N] [--poll-minutes M]`.
It copies the real run FIT files of tests/data/fit into a temporary folder, starts
`python -m hillsync run` on a throw-away SQLite database with that folder polled every
M minutes (default 1, so an idle minute holds a real poll of the folder), waits until the
first sync is done (its "synced" log line), then samples /proc/PID/status VmRSS and
/proc/PID/stat utime+stime for N seconds (default 60). The database is created beforehand
(as `hillsync init` does), so the daemon measured is one restarted on an existing database.

Beside the targets (80 MB resident, under 0.5 s CPU per idle minute) it prints, measured in
the same run, a bare `python -c "import time; time.sleep(N)"` process's resident memory and
the ratio hillsync / bare python.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIT = Path(__file__).resolve().parent.parent / "tests" / "data" / "fit"
RUNS = ["2013-02-06-12-11-14.fit", "activity-small-fenix2-run.fit", "compressed-speed-distance.fit"]
TARGET_RSS_MB = 80.0
TARGET_CPU_S_PER_MIN = 0.5
TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """The resident set size of a process, in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds a process has used."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_synced(log: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until the daemon logs its first "synced" event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"hillsync run exited with {proc.returncode}:\n{log.read_text()}")
        for line in log.read_text(errors="replace").splitlines():
            try:
                if json.loads(line).get("event") == "synced":
                    return
            except json.JSONDecodeError:
                continue
        time.sleep(0.1)
    raise SystemExit("hillsync run did not sync within the timeout")


def sample(pid: int, seconds: float) -> tuple[float, float, float]:
    """(peak RSS MB, last RSS MB, CPU seconds used) over `seconds`."""
    start_cpu = cpu_s(pid)
    peak = last = rss_mb(pid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        last = rss_mb(pid)
        peak = max(peak, last)
    return peak, last, cpu_s(pid) - start_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle time sampled")
    parser.add_argument("--poll-minutes", type=float, default=1.0, help="the folder's poll")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hillsync-bench-") as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "runs"
        folder.mkdir()
        for name in RUNS:
            shutil.copy2(FIT / name, folder / name)
            past = time.time() - 60
            os.utime(folder / name, (past, past))
        config = tmp / "config.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp / "hillsync.db"}"\n\n'
            f'[[sources.folder]]\npath = "{folder}"\npoll_minutes = {args.poll_minutes}\n'
        )
        env = {
            "HOME": str(tmp),
            "XDG_STATE_HOME": str(tmp / "state"),
            "XDG_DATA_HOME": str(tmp / "data"),
            "XDG_CONFIG_HOME": str(tmp / "config"),
            "PATH": os.environ.get("PATH", ""),
        }
        # As after `hillsync init`: the service starts on a database that exists, so the
        # idle figures are those of every start but the one right after an upgrade (which
        # also loads alembic, about 10 MB more, until the next restart).
        subprocess.run(
            [sys.executable, "-m", "hillsync", "--config", str(config), "-q", "db", "upgrade"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        log = tmp / "daemon.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hillsync", "--config", str(config), "run"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        bare = subprocess.Popen(
            [sys.executable, "-c", f"import time; time.sleep({args.seconds + 120})"]
        )
        try:
            started = time.monotonic()
            wait_synced(log, proc, timeout=180)
            startup_s = time.monotonic() - started
            startup_cpu = cpu_s(proc.pid)
            peak, last, used = sample(proc.pid, args.seconds)
            bare_rss = rss_mb(bare.pid)
        finally:
            bare.kill()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=15)

    per_min = used * 60 / args.seconds
    print(f"hillsync run, one folder source of {len(RUNS)} FIT files, poll {args.poll_minutes} min")
    print(f"  start-up to first sync: {startup_s:.1f} s wall, {startup_cpu:.2f} s CPU")
    print(
        f"  idle RSS: {last:.1f} MB (peak {peak:.1f} MB), target <= {TARGET_RSS_MB:.0f} MB: "
        f"{'ok' if peak <= TARGET_RSS_MB else 'OVER'}"
    )
    print(
        f"  idle CPU: {per_min:.3f} s per minute over {args.seconds:.0f} s, "
        f"target < {TARGET_CPU_S_PER_MIN} s: {'ok' if per_min < TARGET_CPU_S_PER_MIN else 'OVER'}"
    )
    print(f"  bare python RSS: {bare_rss:.1f} MB; ratio hillsync / bare: {last / bare_rss:.1f}")
    print(f"  exit code after SIGTERM: {code}")


if __name__ == "__main__":
    main()
