"""A Strava push event through a real HTTP client against `hillsync serve` on loopback makes a
running `hillsync run` fetch and store the new run within seconds.

Both are real processes on one SQLite database. Strava's API is mocked inside the daemon's
process with `responses` (the first listing is empty, later ones hold the new run), so
nothing reaches the network.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from hillsync.store import repo
from hillsync.store.db import open_database
from hillsync.store.tables import SyncState
from web.browser import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

OWNER = 5551234
VERIFY = "e2e-verify-token-0123"
SECRET = "e2e-client-secret-0123"

DAEMON = textwrap.dedent(
    """
    import re, sys
    import responses
    from hillsync.cli import main

    RUN = {
        "id": 987654321, "resource_state": 2, "name": "Pushed hill run",
        "athlete": {"id": %(owner)d, "resource_state": 1},
        "distance": 10012.4, "moving_time": 3120, "elapsed_time": 3300,
        "total_elevation_gain": 412.0, "elev_high": 690.2, "elev_low": 280.1,
        "type": "Run", "sport_type": "Run",
        "start_date": "2026-12-05T07:00:00Z", "start_date_local": "2026-12-05T08:00:00Z",
        "timezone": "(GMT+01:00) Europe/Berlin", "trainer": False, "manual": False,
        "start_latlng": [47.9990, 7.8421], "end_latlng": [47.9991, 7.8422],
        "external_id": "pushed.fit",
    }
    calls = []

    def listing(request):
        calls.append(request.url)
        body = [] if len(calls) == 1 else ([RUN] if "page=1" in request.url else [])
        return 200, {"X-ReadRateLimit-Usage": "%%d,%%d" %% (len(calls), len(calls)),
                     "X-ReadRateLimit-Limit": "100,1000"}, __import__("json").dumps(body)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(
            responses.GET,
            re.compile(r"https://www\\.strava\\.com/api/v3/athlete/activities.*"),
            callback=listing,
            content_type="application/json",
        )
        sys.exit(main(sys.argv[1:]))
    """
)


def wait_for(check: object, timeout: float, what: str) -> float:
    """Poll `check()` until true; returns the seconds it took. Fails after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.1)
    pytest.fail(f"{what} within {timeout:g} s")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[dict[str, object]]:
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n'
        "[sources.strava]\nclient_id = 4242\n"
        'client_secret = "env:HS_SECRET"\nwebhook_verify_token = "env:HS_VERIFY"\n'
        "poll_minutes = 15\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HILLSYNC")},
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "HOME": str(tmp_path),
        "HS_SECRET": SECRET,
        "HS_VERIFY": VERIFY,
        "NOTIFY_SOCKET": "",
    }
    token = tmp_path / "state" / "hillsync" / "tokens" / "me" / "strava.json"
    token.parent.mkdir(parents=True)
    token.write_text(
        json.dumps(
            {
                "access_token": "e2e-access-token-0001",
                "refresh_token": "e2e-refresh-token-0001",
                "expires_at": int(time.time()) + 86_400,
                "athlete_id": str(OWNER),
                "scope": "read,activity:read_all",
                "display_name": "Ann Runner",
                "client_id": 4242,
            }
        )
    )
    token.chmod(0o600)
    db = open_database(db_url)
    with db.session() as session:
        from datetime import UTC, datetime

        row = repo.ensure_athlete(session, "me")
        repo.upsert_account(
            session, row, "strava", str(OWNER), "Ann Runner", str(token), "read,activity:read_all",
            datetime.now(UTC),
        )  # fmt: skip
    yield {"config": config, "env": env, "db": db, "tmp": tmp_path}
    db.close()


def test_push_event_reaches_the_daemon(setup: dict[str, object]) -> None:
    """After the event, the daemon lists Strava again and stores the run within 10 s."""
    config, env, db, tmp = setup["config"], setup["env"], setup["db"], setup["tmp"]
    assert isinstance(tmp, Path)
    assert isinstance(env, dict)
    daemon_script = tmp / "daemon.py"
    daemon_script.write_text(DAEMON % {"owner": OWNER})
    port = free_port()
    logs = tmp / "logs"
    logs.mkdir()
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                [sys.executable, str(daemon_script), "--config", str(config), "run"],
                env=env,
                stdout=(logs / "run.out").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "hillsync", "--config", str(config), "serve",
                 "--port", str(port)],
                env=env,
                stdout=(logs / "serve.out").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"

        def serving() -> bool:
            try:
                return requests.get(f"{base}/static/style.css", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        def first_sync_done() -> bool:
            with db.session(readonly=True) as session:  # type: ignore[attr-defined]
                st = session.query(SyncState).filter_by(name="strava").one_or_none()
                return st is not None and st.last_sync is not None

        def stored() -> bool:
            with db.session(readonly=True) as session:  # type: ignore[attr-defined]
                return any(r.distance_m > 10_000 for r in repo.list_runs(session))

        wait_for(serving, 30, "hillsync serve did not answer")
        wait_for(first_sync_done, 30, "the daemon did not sync Strava once")
        assert not stored(), "the run was there before the event"
        event = {
            "aspect_type": "create", "event_time": int(time.time()), "object_id": 987654321,
            "object_type": "activity", "owner_id": OWNER, "subscription_id": 1, "updates": {},
        }  # fmt: skip
        sent = time.monotonic()
        answer = requests.post(f"{base}/strava/webhook", json=event, timeout=5)
        assert answer.status_code == 200
        assert time.monotonic() - sent < 2.0  # Strava's limit for the acknowledgement
        took = wait_for(stored, 10, "the pushed run was not stored")
        print(f"pushed run stored {took:.1f} s after the event")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        for name in ("run.out", "serve.out"):
            text = (logs / name).read_text(errors="replace")
            assert SECRET not in text
            assert "e2e-refresh-token-0001" not in text
    assert [p.returncode for p in procs] == [0, 0]
