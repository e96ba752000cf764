"""`hillsync run` as systemd runs it: a subprocess, a fake NOTIFY_SOCKET, signals, real folders.

Notifications go to a json:// URL served by a loopback HTTP server in the test; nothing
leaves the machine. Every wait is a bounded polling loop, never a fixed long sleep.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import helpers
from conftest import Webhook
from helpers import gpx_track
from hillsync.cli import main
from hillsync.daemon import Daemon

FIT = Path(__file__).parent / "data" / "fit"
#: The first start imports SQLAlchemy, alembic and numpy: slow on a loaded CI machine.
START_TIMEOUT = 90.0
TIMEOUT = 30.0


def wait_for(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """`helpers.wait_for` with this file's default timeout."""
    return helpers.wait_for(what, check, timeout)


def hilly_gpx(start: datetime) -> str:
    """A 6 km straight run climbing 500 m, one point a second from `start`."""
    points = [(46.0 + i * 0.000027, 7.0, 1000 + i * 0.25) for i in range(2000)]
    return gpx_track(points, start=start, sport="running")


def age(path: Path) -> None:
    """Set a file's mtime a minute back: the folder source skips files still being written."""
    past = time.time() - 60
    os.utime(path, (past, past))


def drop_hilly_runs(folder: Path, count: int = 5) -> None:
    """`count` hilly runs on the last days: a road-marathon goal finds the hill share high."""
    now = datetime.now(UTC).replace(microsecond=0)
    for day in range(count):
        path = folder / f"hills-{day}.gpx"
        path.write_text(hilly_gpx(now - timedelta(days=day + 1, hours=2)))
        age(path)


def drop_fit(folder: Path, name: str) -> None:
    """Copy a real run's FIT file into `folder`, aged."""
    shutil.copy2(FIT / name, folder / name)
    age(folder / name)


class NotifySocket:
    """A unix datagram socket standing in for systemd's: collects every sd_notify message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self._open = True
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while self._open:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.extend(data.decode().splitlines())

    def has(self, prefix: str) -> list[str]:
        """The messages starting with `prefix`, oldest first."""
        return [m for m in list(self.messages) if m.startswith(prefix)]

    def close(self) -> None:
        self._open = False
        self._thread.join(timeout=2)
        self._sock.close()


class Service:
    """A `hillsync run` subprocess with its own config, XDG folders and notify socket."""

    def __init__(self, tmp: Path, sock_dir: Path, hook: Webhook) -> None:
        self.tmp = tmp
        self.hook = hook
        self.config = tmp / "config.toml"
        self.db = tmp / "db" / "hillsync.db"
        self.log = tmp / "daemon.log"
        self.notify = NotifySocket(sock_dir / "notify")
        self.env = {
            "HOME": str(tmp / "home"),
            "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
            "XDG_STATE_HOME": str(tmp / "xdg-state"),
            "XDG_DATA_HOME": str(tmp / "xdg-data"),
            "PATH": os.environ.get("PATH", ""),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def folder(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(exist_ok=True)
        return path

    def write_config(self, folders: dict[str, Path], extra: str = "") -> None:
        """A config with these folders (name -> path), each polled about every second."""
        tables = "".join(
            f'[[sources.folder]]\nname = "{name}"\npath = "{path}"\npoll_minutes = 0.02\n\n'
            for name, path in folders.items()
        )
        self.config.write_text(
            f'[database]\nurl = "sqlite:///{self.db}"\n\n'
            f'[notify]\nurls = ["{self.hook.url}"]\n\n' + tables + textwrap.dedent(extra)
        )

    def start(self) -> None:
        env = {**self.env, "NOTIFY_SOCKET": str(self.notify.path), "WATCHDOG_USEC": "2000000"}
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hillsync", "--config", str(self.config), "run"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        wait_for("READY=1", lambda: self.notify.has("READY=1"), START_TIMEOUT)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def events(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        """The daemon's JSON log lines with this event name and these field values."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("event") == name and all(entry.get(k) == v for k, v in fields.items()):
                found.append(entry)
        return found

    def synced(self, source: str, **fields: Any) -> list[dict[str, Any]]:
        return self.events("synced", source=source, **fields)

    def cli_json(self, *args: str) -> Any:
        """Run a `hillsync ... --json` command in-process against the same config."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["--config", str(self.config), *args, "--json"], environ=self.env)
        assert code == 0, out.getvalue()
        return json.loads(out.getvalue())

    def stop(self) -> int:
        """SIGTERM, then the exit code (the test fails if it takes more than 5 s)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("hillsync run did not exit within 5 s of SIGTERM")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """A configured but not yet started daemon; killed and cleaned up after the test."""
    # A unix socket path has at most 107 bytes; tmp_path may be longer than that.
    sock_dir = Path(tempfile.mkdtemp(prefix="hs-", dir="/tmp"))
    hook = Webhook()
    svc = Service(tmp_path, sock_dir, hook)
    try:
        yield svc
    finally:
        svc.close()
        hook.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


class TestNotifyProtocol:
    """READY, WATCHDOG, STATUS and STOPPING on the notify socket."""

    def test_ready_watchdog_status_then_stopping(self, service: Service) -> None:
        """READY comes first, then watchdog pings and a status line; SIGTERM says STOPPING."""
        runs = service.folder("runs")
        drop_fit(runs, "activity-small-fenix2-run.fit")
        service.write_config({"runs": runs})
        service.start()
        assert service.notify.messages[0] == "READY=1"
        wait_for("two watchdog pings", lambda: len(service.notify.has("WATCHDOG=1")) >= 2)
        status = wait_for(
            "a status line after a cycle",
            lambda: [m for m in service.notify.has("STATUS=") if "synced today" in m],
        )
        assert status[-1].startswith("STATUS=1 activities synced today")
        assert "next sync" in status[-1]
        assert service.stop() == 0
        assert service.notify.has("STOPPING=1")

    def test_watchdog_pinged_within_half_the_period(self, service: Service) -> None:
        """While idle, no two watchdog pings are more than half of WATCHDOG_USEC apart."""
        runs = service.folder("runs")
        # A long poll interval: between cycles only the sleep itself can feed the watchdog.
        service.write_config({"runs": runs})
        service.config.write_text(service.config.read_text().replace("0.02", "10"))
        service.start()
        stamps: list[float] = []
        seen = 0
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            pings = len(service.notify.has("WATCHDOG=1"))
            if pings > seen:
                stamps.append(time.monotonic())
                seen = pings
            time.sleep(0.02)
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert len(stamps) >= 4
        assert max(gaps) < 1.0 + 0.2  # half of the 2 s period, plus the test's own polling


class TestSyncAndWarn:
    """Files dropped into a watched folder become runs, and the balance warning is delivered."""

    def test_dropped_files_become_runs_and_a_warning(self, service: Service) -> None:
        """Five hilly runs dropped in after start: stored, and a 'high' warning reaches the URL."""
        runs = service.folder("runs")
        service.write_config({"runs": runs})
        service.start()
        wait_for("the first (empty) sync", lambda: service.synced("runs", state="ok"))
        drop_hilly_runs(runs)
        wait_for("the warning at the webhook", lambda: service.hook.received)
        message = service.hook.received[0]
        text = f"{message.get('title', '')} {message.get('message', '')}".lower()
        assert "hill" in text
        assert "flat" in text  # the advice for a marathoner running too many hills
        activities = service.cli_json("activities")
        assert len(activities) == 5
        assert {a["label"] for a in activities} == {"uphill"}
        assert service.stop() == 0
        assert len(service.hook.received) == 1


class TestSignals:
    """SIGTERM/SIGINT stop cleanly; SIGHUP reloads the config, keeping the old one if bad."""

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_stop_signal_exits_zero_quickly(self, service: Service, signum: int) -> None:
        """The daemon exits 0 within 5 s of SIGTERM or SIGINT and says STOPPING=1."""
        runs = service.folder("runs")
        drop_fit(runs, "activity-small-fenix2-run.fit")
        service.write_config({"runs": runs})
        service.start()
        wait_for("the first sync", lambda: service.synced("runs", new=1))
        service.signal(signum)
        assert service.proc is not None
        started = time.monotonic()
        assert service.proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 5
        assert service.notify.has("STOPPING=1")
        assert service.events("stopped")

    def test_sighup_with_a_good_config_adds_a_folder(self, service: Service) -> None:
        """After SIGHUP a folder added to the config is synced, the old one still is."""
        first, second = service.folder("first"), service.folder("second")
        drop_fit(first, "activity-small-fenix2-run.fit")
        drop_fit(second, "2013-02-06-12-11-14.fit")
        service.write_config({"first": first})
        service.start()
        wait_for("the first folder", lambda: service.synced("first", new=1))
        assert not service.synced("second")
        service.write_config({"first": first, "second": second})
        service.signal(signal.SIGHUP)
        wait_for("the reload", lambda: service.events("config reloaded"))
        wait_for("the second folder", lambda: service.synced("second", new=1))
        assert service.notify.has("RELOADING=1")
        assert len(service.notify.has("READY=1")) == 2
        assert service.stop() == 0

    def test_sighup_with_a_bad_config_keeps_the_old(self, service: Service) -> None:
        """A broken new config is logged and ignored: the old folder is still synced."""
        runs = service.folder("runs")
        service.write_config({"runs": runs})
        service.start()
        wait_for("the first sync", lambda: service.synced("runs", state="ok"))
        good = service.config.read_text()
        service.config.write_text(good + "\n[goal]\nprofile = 'couch'\nbogus = 1\n")
        service.signal(signal.SIGHUP)
        failed = wait_for(
            "the failed reload",
            lambda: service.events("config reload failed, keeping the old config"),
        )
        problems = " ".join(failed[0]["problems"])
        assert "goal.profile" in problems
        assert "goal.bogus" in problems
        drop_fit(runs, "activity-small-fenix2-run.fit")
        wait_for("the old folder still synced", lambda: service.synced("runs", new=1))
        assert service.proc is not None
        assert service.proc.poll() is None
        assert service.stop() == 0


class TestFailingSource:
    """One failing source never stops the others, and it backs off."""

    def test_missing_folder_beside_a_healthy_one(self, service: Service) -> None:
        """A folder that does not exist is in error and retried ever later; the other syncs."""
        runs = service.folder("runs")
        drop_fit(runs, "activity-small-fenix2-run.fit")
        service.write_config({"runs": runs, "gone": service.tmp / "does-not-exist"})
        service.start()
        wait_for("the healthy folder", lambda: service.synced("runs", new=1))
        errors = wait_for(
            "three failed tries", lambda: len(service.synced("gone", state="error")) >= 3
        )
        assert errors
        tries = [
            datetime.fromisoformat(e["timestamp"]) for e in service.synced("gone", state="error")
        ]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(tries)]
        # The wait doubles (1.2 s, 2.4 s, 4.8 s ...); a cycle's own time on a busy machine
        # narrows the measured ratio, so only growth is asserted.
        assert gaps[1] > gaps[0] * 1.2
        # The healthy folder keeps its own interval meanwhile: it overtakes the failing one
        # (which of the two a cycle syncs first is the older due time's, not the config's).
        wait_for(
            "the healthy folder synced more often",
            lambda: len(service.synced("runs", state="ok")) > len(tries),
        )
        status = {s["name"]: s for s in service.cli_json("status")["sources"]}
        assert status["gone"]["state"] == "error"
        assert "does not exist" in status["gone"]["last_error"]
        assert status["runs"]["state"] == "ok"
        assert any("failing: gone" in m for m in service.notify.has("STATUS="))
        assert service.stop() == 0


class TestDaemonInProcess:
    """The loop's timing rules, without a subprocess."""

    def daemon(self, **environ: str) -> Daemon:
        return Daemon(lambda: pytest.fail("no settings needed"), environ=environ)

    def test_sleep_is_bounded(self) -> None:
        """The sleep runs to the next due time, never below the floor nor above the ceiling."""
        daemon = self.daemon()
        now = datetime.now(UTC)
        assert daemon.sleep_seconds(None) == daemon.max_sleep_s
        assert daemon.sleep_seconds(now - timedelta(hours=1)) == daemon.min_sleep_s
        assert daemon.sleep_seconds(now + timedelta(days=1)) == daemon.max_sleep_s
        assert 9 < daemon.sleep_seconds(now + timedelta(seconds=10)) <= 10

    def test_stop_request_cuts_a_retry_short(self) -> None:
        """A stop request ends a retry wait at once and stops further attempts."""
        daemon = self.daemon()
        attempts: list[float] = []

        stopped_at: list[float] = []

        def stop() -> None:
            stopped_at.append(time.monotonic())
            daemon.request_stop()

        def flaky() -> None:
            attempts.append(time.monotonic())
            if len(attempts) == 1:
                threading.Timer(0.1, stop).start()
            raise TimeoutError("slow server")

        started = time.monotonic()
        with pytest.raises(TimeoutError):
            daemon.retrying()(flaky)
        # Without the stop the waits could reach 20 s each.
        assert time.monotonic() - started < 3
        assert daemon.stopping
        after_stop = [t for t in attempts if stopped_at and t > stopped_at[0]]
        assert len(after_stop) <= 1

    def test_pause_wakes_on_reload_request(self) -> None:
        """A SIGHUP (request_reload) ends the sleep early."""
        daemon = self.daemon()
        threading.Timer(0.1, daemon.request_reload).start()
        started = time.monotonic()
        daemon.pause(30)
        assert time.monotonic() - started < 5
