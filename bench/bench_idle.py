"""Benchmark: resident memory and CPU of an idle `hillsync run` with one folder source.

Not a test. Run it as `.venv/bin/python -m bench.bench_idle [--seconds N] [--poll-minutes M]`.
It copies the real run FIT files of tests/data/fit into a temporary folder and imports them
with one `hillsync sync`, then starts `python -m hillsync run` on that database, as a
restarted service finds it: a folder polled every M minutes (default 0.5) holding nothing
new. Once the daemon's first sync is logged, it samples /proc/PID/status VmRSS and
/proc/PID/stat utime+stime for N seconds (default 60), and longer if no poll fell inside
the window (a window without a poll would flatter the CPU figure): the polls counted are
printed. A bare `python -c "import time; time.sleep(...)"` is measured beside it, in the
same run, as the reference.
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
from dataclasses import dataclass
from pathlib import Path

from bench.common import FIT_DIR, FIT_RUNS, Row, check, hillsync_argv, hillsync_env, run_measured

TARGET_RSS_MB = 60.0
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


def synced_events(log: Path) -> int:
    """How many "synced" events the daemon has logged so far."""
    count = 0
    for line in log.read_text(errors="replace").splitlines():
        try:
            if json.loads(line).get("event") == "synced":
                count += 1
        except (json.JSONDecodeError, AttributeError):
            continue
    return count


def wait_synced(log: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until the daemon logs its first "synced" event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"hillsync run exited with {proc.returncode}:\n{log.read_text()}")
        if synced_events(log):
            return
        time.sleep(0.1)
    raise SystemExit("hillsync run did not sync within the timeout")


@dataclass(frozen=True)
class Idle:
    """What an idle daemon and a bare python cost over the same window."""

    seconds: float
    polls: int
    peak_rss_mb: float
    last_rss_mb: float
    cpu_s: float
    bare_rss_mb: float
    bare_cpu_s: float
    startup_s: float
    exit_code: int

    def per_minute(self, cpu: float) -> float:
        return cpu * 60 / self.seconds


def sample(pid: int, seconds: float, log: Path, max_seconds: float) -> tuple[float, float, int]:
    """(peak RSS MB, last RSS MB, seconds sampled) over `seconds`, longer until a poll."""
    before = synced_events(log)
    peak = last = rss_mb(pid)
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= max_seconds or (elapsed >= seconds and synced_events(log) > before):
            break
        time.sleep(min(1.0, max(0.05, seconds - elapsed)))
        last = rss_mb(pid)
        peak = max(peak, last)
    return peak, last, time.monotonic() - start


def measure(seconds: float, poll_minutes: float) -> Idle:
    """Start an idle daemon on an already imported folder and sample it for `seconds`."""
    with tempfile.TemporaryDirectory(prefix="hillsync-bench-") as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "runs"
        folder.mkdir()
        past = time.time() - 60
        for name in FIT_RUNS:
            shutil.copy2(FIT_DIR / name, folder / name)
            os.utime(folder / name, (past, past))
        config = tmp / "config.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp / "hillsync.db"}"\n\n'
            f'[[sources.folder]]\npath = "{folder}"\npoll_minutes = {poll_minutes}\n'
        )
        env = hillsync_env(tmp)
        # As a restarted service: the database exists and the folder was imported, so
        # every poll in the window finds nothing new.
        check(run_measured(hillsync_argv(config, "-q", "sync"), env=env), "first sync")
        log = tmp / "daemon.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                hillsync_argv(config, "run"), env=env, stdout=subprocess.DEVNULL, stderr=err
            )
        max_seconds = seconds + poll_minutes * 60 * 1.1 + 5
        bare = subprocess.Popen(
            [sys.executable, "-c", f"import time; time.sleep({max_seconds + 200})"]
        )
        try:
            started = time.monotonic()
            wait_synced(log, proc, timeout=180)
            startup_s = time.monotonic() - started
            cpu0, bare_cpu0 = cpu_s(proc.pid), cpu_s(bare.pid)
            before = synced_events(log)
            peak, last, sampled = sample(proc.pid, seconds, log, max_seconds)
            used, bare_used = cpu_s(proc.pid) - cpu0, cpu_s(bare.pid) - bare_cpu0
            polls = synced_events(log) - before
            bare_rss = rss_mb(bare.pid)
        finally:
            bare.kill()
            bare.wait()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
    return Idle(sampled, polls, peak, last, used, bare_rss, bare_used, startup_s, code)


def idle_rows(seconds: float, poll_minutes: float) -> list[Row]:
    """The idle daemon's peak RSS and CPU per minute, beside a bare python."""
    idle = measure(seconds, poll_minutes)
    if idle.exit_code != 0:
        raise SystemExit(f"hillsync run exited with {idle.exit_code} after SIGTERM")
    what = f"idle `run`, {idle.seconds:.0f} s with {idle.polls} quiet poll(s)"
    return [
        Row(
            f"{what}: peak RSS",
            idle.peak_rss_mb,
            idle.bare_rss_mb,
            "MB",
            "bare python",
            limit=TARGET_RSS_MB,
            digits=1,
        ),
        Row(
            f"{what}: CPU per minute",
            idle.per_minute(idle.cpu_s),
            idle.per_minute(idle.bare_cpu_s),
            "s",
            "bare python",
            limit=TARGET_CPU_S_PER_MIN,
            strict=True,
            digits=3,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle time sampled")
    parser.add_argument("--poll-minutes", type=float, default=0.5, help="the folder's poll")
    args = parser.parse_args()
    idle = measure(args.seconds, args.poll_minutes)
    print(
        f"hillsync run, one folder of {len(FIT_RUNS)} known FIT files, poll {args.poll_minutes} min"
    )
    print(f"  start-up to first sync: {idle.startup_s:.1f} s")
    print(f"  sampled {idle.seconds:.0f} s, quiet polls inside: {idle.polls}")
    print(
        f"  RSS: {idle.last_rss_mb:.1f} MB (peak {idle.peak_rss_mb:.1f}), "
        f"bare python {idle.bare_rss_mb:.1f}"
    )
    print(
        f"  CPU per minute: {idle.per_minute(idle.cpu_s):.3f} s, "
        f"bare python {idle.per_minute(idle.bare_cpu_s):.3f} s"
    )
    print(f"  exit code after SIGTERM: {idle.exit_code}")


if __name__ == "__main__":
    main()
