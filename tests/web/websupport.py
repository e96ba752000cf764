"""Shared by the web tests: the sample runs synced into SQLite, a site around a copy of them."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from hillsync.app.context import AppContext
from hillsync.app.web import WebUseCases
from hillsync.cli import main
from hillsync.config import load_settings
from hillsync.model import Activity, Batch, Secret, SyncStatus
from hillsync.store import repo
from hillsync.store.db import Database
from hillsync.store.tables import ActivityRow, SyncState
from hillsync.web.app import WebOptions, create_app

PASSWORD = "correct horse battery staple"
VERIFY = "strava-verify-token-1234"
STRAVA_SECRET = "strava-app-secret-0123456789"
#: A Strava application for the connect tests.
STRAVA_APP = '[sources.strava]\nclient_id = 4242\nclient_secret = "env:HS_STRAVA_SECRET"\n'
STRAVA_ATHLETE = 5551234
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PUBLIC = "0.0.0.0"  # noqa: S104 - the address that must be refused without a password


def sync_samples(tmp: Path) -> Path:
    """The bundled sample runs synced into a SQLite file in `tmp`; returns the file."""
    demo = Path(str(resources.files("hillsync") / "demo"))
    config = tmp / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp / "h.db"}"\n'
        f'[goal]\nprofile = "trail"\n[[sources.folder]]\npath = "{demo}"\n'
    )
    env = {"XDG_STATE_HOME": str(tmp / "state"), "HOME": str(tmp)}
    assert main(["--config", str(config), "-q", "sync"], environ=env) == 0
    return tmp / "h.db"


class Site:
    """A copy of the synced database, its backend and a way to make clients."""

    def __init__(self, tmp: Path, db_file: Path, extra_config: str = "") -> None:
        for part in db_file.parent.glob(db_file.name + "*"):  # with SQLite's -wal file
            shutil.copy2(part, tmp / part.name)
        self.tmp = tmp
        self.env = {"XDG_STATE_HOME": str(tmp / "state"), "HOME": str(tmp)}
        config = tmp / "config.toml"
        demo = Path(str(resources.files("hillsync") / "demo"))
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp / "h.db"}"\n[goal]\nprofile = "trail"\n'
            f'[[sources.folder]]\npath = "{demo}"\n{extra_config}'
        )
        self.env["HS_STRAVA_SECRET"] = STRAVA_SECRET
        self.settings = load_settings(config, self.env)
        self.clock_now = NOW
        self.ctx = AppContext(self.settings, self.env, clock=lambda: self.clock_now)
        self.db: Database = self.ctx.db
        self.backend = WebUseCases(self.ctx)

    def client(self, base_url: str = "http://127.0.0.1:8722", **options: Any) -> TestClient:
        opts = WebOptions(webhook_verify_token=Secret(VERIFY), **options)
        app = create_app(self.backend, opts, clock=lambda: self.clock_now)
        return TestClient(app, base_url=base_url, raise_server_exceptions=False)

    def run_ids(self) -> list[int]:
        with self.db.session(readonly=True) as session:
            return [r.id for r in repo.list_runs(session, athlete="me")]

    def add_strava(self, athlete: str = "me") -> None:
        """A connected Strava account with one stored activity (id 777)."""
        with self.db.session() as session:
            row = repo.ensure_athlete(session, athlete)
            repo.upsert_account(
                session, row, "strava", str(STRAVA_ATHLETE), "Ann Runner", None, None, NOW
            )
            state = repo.ensure_sync_state(session, row, "strava", "strava")
            repo.record_sync_result(
                session,
                state,
                status=SyncStatus.OK,
                now=NOW,
                next_sync=NOW + timedelta(hours=6),
                error=None,
            )
            activity = Activity(
                source="strava",
                source_id="777",
                sport="run",
                start_time=NOW - timedelta(days=1),
                distance_m=10_000.0,
                reported_gain_m=20.0,
                elevation_source="strava",
            )
            repo.save_batch(session, state, Batch(activities=[activity]), {}, ["run"], NOW)
        token = self.tmp / "state" / "hillsync" / "tokens" / athlete / "strava.json"
        token.parent.mkdir(parents=True, exist_ok=True)
        token.write_text("{}")
        self.token_file = token

    def strava_state(self) -> SyncState | None:
        with self.db.session(readonly=True) as session:
            return session.query(SyncState).filter_by(name="strava").one_or_none()

    def strava_activity(self) -> ActivityRow | None:
        with self.db.session(readonly=True) as session:
            return session.query(ActivityRow).filter_by(source="strava").one_or_none()


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match is not None, "no CSRF field in the form"
    return match.group(1)
