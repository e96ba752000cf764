"""Secrets never leak: every command with `-v`, over scenarios that put them in harm's way.

Known token, client secret, password and URL strings are configured; Strava (mocked inside
the child, tests/kill_child.py) answers 401 quoting the Authorization header, or fails with
an unexpected error quoting it; a notification URL with a password is dead; the notifier's
test send fails with an unexpected error quoting the URL. None of the strings may appear in
stdout, stderr (the log and any traceback) or anywhere in the database file.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import connect_kill_child_strava

CHILD = Path(__file__).parent / "kill_child.py"
CLIENT_SECRET = "client-secret-5f3a9c71"
ACCESS = "access-token-7b1e2d93"
REFRESH = "refresh-token-9c4f8a15"
NOTIFY_PASSWORD = "notify-pass-3e8d1b62"
NOTIFY_PATH_TOKEN = "hooktoken6a2c0f44"
GARMIN_PASSWORD = "garmin-pass-0d7e4f58"

pytestmark = pytest.mark.slow


def _dead_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Scenario:
    """A config, a connected Strava account and a folder with a bad file, all on loopback."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = tmp / "hillsync.db"
        folder = tmp / "runs"
        folder.mkdir()
        (folder / "broken.gpx").write_text(f"<gpx>{CLIENT_SECRET[:3]}")
        old = time.time() - 3600
        os.utime(folder / "broken.gpx", (old, old))
        url = f"json://hillsync:{NOTIFY_PASSWORD}@127.0.0.1:{_dead_port()}/{NOTIFY_PATH_TOKEN}"
        self.url = url
        self.config = tmp / "config.toml"
        self.config.write_text(
            f'[database]\nurl = "sqlite:///{self.db}"\n\n'
            "[sync]\nbackfill_days = 1000\n\n"
            f'[[sources.folder]]\npath = "{folder}"\n\n'
            '[sources.strava]\nclient_id = 1\nclient_secret = "env:SECRET_TEST_STRAVA"\n\n'
            '[notify]\nurls = ["env:SECRET_TEST_NOTIFY_URL"]\n'
        )
        home = tmp / "home"
        self.env = {
            "HOME": str(home),
            "XDG_STATE_HOME": str(home / "state"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join(sys.path),
            "SECRET_TEST_STRAVA": CLIENT_SECRET,
            "SECRET_TEST_NOTIFY_URL": url,
            "HILLSYNC_GARMIN_PASSWORD": GARMIN_PASSWORD,
        }
        connect_kill_child_strava(
            self.env, self.db, access=ACCESS, refresh=REFRESH, name="Secret Test"
        )

    def run(self, *args: str, fault: str | None = None) -> tuple[int, str, str]:
        """One `hillsync -v ARGS` process (Strava mocked inside it); (code, stdout, stderr)."""
        env = dict(self.env)
        if fault:
            env["KILL_CHILD_FAULT"] = fault
        proc = subprocess.run(
            [
                sys.executable,
                str(CHILD),
                "20",
                "3",
                "--",
                "--config",
                str(self.config),
                "-v",
                *args,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        return proc.returncode, proc.stdout, proc.stderr


SECRETS = [CLIENT_SECRET, ACCESS, REFRESH, NOTIFY_PASSWORD, NOTIFY_PATH_TOKEN, GARMIN_PASSWORD]


def leaked(text: str) -> list[str]:
    """The known secret strings found in `text`."""
    return [s for s in SECRETS if s in text]


class TestSecretsNeverLeak:
    """No command, verbose and failing, shows or stores a secret."""

    @pytest.mark.parametrize(
        ("args", "fault"),
        [
            (["sync"], "echo401"),
            (["sync"], "raise"),
            (["sync"], None),
            (["status"], None),
            (["status", "--json"], None),
            (["activities", "--json"], None),
            (["balance", "--json"], None),
            (["notify", "test"], None),
            (["notify", "test"], "cli"),
        ],
        ids=[
            "sync-401",
            "sync-unexpected",
            "sync",
            "status",
            "status-json",
            "activities",
            "balance",
            "notify-test",
            "notify-unexpected",
        ],
    )
    def test_command(self, tmp_path: Path, args: list[str], fault: str | None) -> None:
        """stdout, stderr (log and traceback) and the database hold none of the secrets."""
        scenario = Scenario(tmp_path)
        if args[0] != "sync":
            # A sync first, so the database holds errors and the state has something to show.
            scenario.run("sync", fault="echo401")
        code, out, err = scenario.run(*args, fault=fault)
        assert code in (0, 1, 3), err
        assert leaked(out) == [], out
        assert leaked(err) == [], err
        if fault in {"raise", "cli"}:
            assert "Traceback" in err  # -v shows the traceback, masked
        stored = scenario.db.read_bytes().decode("latin-1")
        assert leaked(stored) == []
