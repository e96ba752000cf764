"""The test suite's shared helpers, in one place: a clock, a GPX builder, a CLI harness,
and what every fault storm checks (no traceback logged, nothing stored twice).

Fixtures live in conftest.py; these are the plain classes and functions tests build with.
"""

from __future__ import annotations

import io
import json
import os
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from hillsync.cli import main
from hillsync.logs import configure_logging
from hillsync.store import repo
from hillsync.store.db import Database
from hillsync.store.tables import ActivityRow

#: Metres per degree of latitude on the mean Earth sphere (2 * pi * 6371.0088 km / 360).
M_PER_DEGREE_LAT = 111_195.08
#: The default start of a built track.
TRACK_START = datetime(2026, 11, 20, 7, 0, tzinfo=UTC)


class Clock:
    """A settable clock: call it for "now" (timezone-aware UTC); nothing sleeps."""

    def __init__(self, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("a Clock runs on timezone-aware UTC")
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta | None = None, **kw: float) -> datetime:
        """Move on by `delta` (or timedelta(**kw)); the new now."""
        self.now += delta if delta is not None else timedelta(**kw)
        return self.now


def connect_kill_child_strava(
    environ: Mapping[str, str], db_path: Path, *, access: str, refresh: str, name: str
) -> Path:
    """Record the default athlete's Strava account (athlete 134815, the one
    `tests/kill_child.py` mocks) in the SQLite database at `db_path`, with a private token
    file valid for six hours; the token file's path."""
    from hillsync import paths
    from hillsync.store.db import open_database

    token = paths.token_path(environ, "me", "strava")
    token.parent.mkdir(parents=True, mode=0o700)
    token.write_text(
        json.dumps(
            {
                "access_token": access,
                "refresh_token": refresh,
                "expires_at": int(time.time()) + 6 * 3600,
                "athlete_id": "134815",
                "scope": "read,activity:read_all",
            }
        )
    )
    token.chmod(0o600)
    database = open_database(f"sqlite:///{db_path}")
    try:
        with database.session() as session:
            athlete = repo.ensure_athlete(session, "me")
            repo.upsert_account(
                session,
                athlete,
                "strava",
                "134815",
                name,
                str(token),
                "read,activity:read_all",
                datetime.now(UTC),
            )
    finally:
        database.close()
    return token


def child_env(home: Path) -> dict[str, str]:
    """The environment of a fresh hillsync child process: its own HOME and XDG folders
    under `home`, this interpreter's import path, nothing else of the test run's."""
    return {
        "HOME": str(home),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """Poll `check` (another process's or thread's work) until it returns something truthy
    and return that; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


Point = tuple[float, float, float]


def straight_route(
    length_m: float, ele: Callable[[float], float], *, step_m: float = 5.0, lat0: float = 46.0
) -> list[Point]:
    """(lat, lon, ele) points heading north every `step_m`, altitude ele(distance)."""
    n = int(length_m / step_m) + 1
    return [(lat0 + i * step_m / M_PER_DEGREE_LAT, 7.0, ele(i * step_m)) for i in range(n)]


def gpx_track(
    points: Sequence[Point],
    *,
    start: datetime = TRACK_START,
    step_s: float = 1.0,
    sport: str | None = None,
    name: str | None = None,
) -> str:
    """A one-track GPX 1.1 document of (lat, lon, ele) points, `step_s` seconds apart."""
    pts = "".join(
        f'<trkpt lat="{lat:.7f}" lon="{lon:.7f}"><ele>{ele:.2f}</ele>'
        f"<time>{start + timedelta(seconds=i * step_s):%Y-%m-%dT%H:%M:%SZ}</time></trkpt>"
        for i, (lat, lon, ele) in enumerate(points)
    )
    head = (f"<name>{name}</name>" if name else "") + (f"<type>{sport}</type>" if sport else "")
    return (
        '<?xml version="1.0"?><gpx version="1.1" creator="test" '
        'xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk>{head}<trkseg>{pts}</trkseg></trk></gpx>"
    )


class Cli:
    """Runs `hillsync` in-process with its own HOME and XDG folders under `tmp`.

    The config is `tmp/config.toml`; it is passed with --config once it exists.
    """

    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp = tmp
        self.capsys = capsys
        self.config = tmp / "config.toml"
        self.env: dict[str, str] = {
            "HOME": str(tmp / "home"),
            "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
            "XDG_STATE_HOME": str(tmp / "xdg-state"),
            "XDG_DATA_HOME": str(tmp / "xdg-data"),
            "PATH": os.environ.get("PATH", ""),
        }

    @property
    def state_dir(self) -> Path:
        """hillsync's state folder under this harness's XDG_STATE_HOME."""
        return Path(self.env["XDG_STATE_HOME"]) / "hillsync"

    def write_config(self, text: str) -> None:
        """Write the config (dedented, private)."""
        self.config.write_text(textwrap.dedent(text))
        self.config.chmod(0o600)

    def __call__(self, *args: str) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of `hillsync [--config CFG] ARGS`."""
        self.capsys.readouterr()
        argv = ["--config", str(self.config), *args] if self.config.exists() else list(args)
        code = main(argv, environ=self.env)
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> Any:
        """The parsed output of `ARGS --json`, which must exit 0."""
        code, out, err = self(*args, "--json")
        assert code == 0, err
        return json.loads(out)


@contextmanager
def storm() -> Iterator[list[MutableMapping[str, Any]]]:
    """Log as the service does (hillsync's setup, to a buffer) and capture hillsync's own
    events; on leaving, assert that no traceback was logged, by hillsync or a library."""
    out = io.StringIO()
    configure_logging(0, stream=out, environ={})
    with capture_logs() as events:
        yield events
    assert_no_traceback(events, out.getvalue())


def assert_no_traceback(events: Sequence[Mapping[str, Any]], written: str) -> None:
    """No hillsync event with exc_info (the worker's fault boundary logs `source_failed` so),
    and no traceback in what the service's log handler wrote."""
    with_traceback = [e for e in events if e.get("exc_info") or e["event"] == "source_failed"]
    assert with_traceback == []
    assert "Traceback" not in written


def stored_ids(db: Database, source: str) -> list[str]:
    """Every stored (not deleted) activity id of `source`, sorted."""
    with db.session(readonly=True) as session:
        return sorted(
            session.scalars(
                select(ActivityRow.source_id).where(
                    ActivityRow.source == source, ActivityRow.deleted_at.is_(None)
                )
            )
        )


def assert_nothing_twice(db: Database) -> None:
    """No (source, source id) stored twice, and no activity counted in two runs."""
    with db.session(readonly=True) as session:
        twice = session.execute(
            select(ActivityRow.source, ActivityRow.source_id, func.count())
            .group_by(ActivityRow.source, ActivityRow.source_id)
            .having(func.count() > 1)
        ).all()
        members = [s for r in repo.list_runs(session) for s in r.sources]
    assert twice == []
    assert len(members) == len(set(members))
