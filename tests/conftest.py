"""Fixtures shared by the whole suite."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import responses
import structlog
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hillsync import logs
from hillsync.paths import sqlite_url
from hillsync.store.db import Database, open_database

DATA = Path(__file__).parent / "data"
PG_ENV = "HILLSYNC_TEST_DATABASE_URL"


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    """Undo a test's configure_logging(), whose handler writes to that test's captured stream."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, logs._HANDLER_MARK, False):
            root.removeHandler(handler)
    structlog.reset_defaults()


@pytest.fixture
def data_dir() -> Path:
    """The folder of test input files (real device files and hand-made tracks)."""
    return DATA


def _postgres_database() -> Iterator[str]:
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        pytest.skip(
            f"PostgreSQL tests need {PG_ENV} (an admin URL, e.g. postgresql+psycopg://postgres@127.0.0.1/test)"
        )
    admin = make_url(admin_url)
    if admin.drivername == "postgresql":
        admin = admin.set(drivername="postgresql+psycopg")
    name = f"hillsync_t_{secrets.token_hex(6)}"
    # CREATE/DROP DATABASE cannot run inside a transaction.
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield admin.set(database=name).render_as_string(hide_password=False)
        finally:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database's URL: a SQLite file, or a fresh PostgreSQL database (dropped after)."""
    if request.param == "sqlite":
        # A space in the path: the default data directory may well have one.
        yield sqlite_url(tmp_path / "data dir" / "hillsync.db")
    else:
        yield from _postgres_database()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """An opened, migrated Database on `database_url`."""
    database = open_database(database_url)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """A responses mock: any request not mocked fails (no test touches the network)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def garmin_offline(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """garminconnect made mockable and sleepless: its login and refresh posts go through
    requests (not curl_cffi) and its sleeps are recorded instead of slept."""
    import garminconnect.client

    monkeypatch.setattr(garminconnect.client, "HAS_CFFI", False)
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


class Webhook:
    """An HTTP server on 127.0.0.1 recording the JSON bodies posted to it (apprise's json://).

    Each body is recorded with the request's `path`. `url` is the json:// URL to configure.
    """

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append({"path": self.path, **json.loads(self.rfile.read(length) or b"{}")})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loopback() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A Webhook for the test: (its json:// URL, the bodies it received)."""
    hook = Webhook()
    try:
        yield hook.url, hook.received
    finally:
        hook.close()
