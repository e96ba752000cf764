"""Migrations: the packaged alembic scripts build exactly the schema of tables.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from hillsync.errors import StoreError
from hillsync.paths import sqlite_url
from hillsync.store.db import (
    HEAD_REVISION,
    Database,
    alembic_config,
    open_database,
)
from hillsync.store.tables import Base


def _revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


class TestUpgrade:
    """Applying the migrations."""

    def test_creates_every_table(self, db: Database) -> None:
        """A migrated empty database has every table of the metadata."""
        names = set(inspect(db.engine).get_table_names())
        assert set(Base.metadata.tables) <= names

    def test_no_drift_between_metadata_and_schema(self, db: Database) -> None:
        """Autogenerate finds nothing to change after the migrations (like `alembic check`)."""
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
        assert diff == []

    def test_at_head(self, db: Database) -> None:
        """The database is stamped with the newest revision."""
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert head is not None
        assert _revision(db) == head

    def test_head_revision_constant(self, db: Database) -> None:
        """HEAD_REVISION, which lets an up-to-date start skip alembic, is alembic's head."""
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert head == HEAD_REVISION
        assert db.is_current()

    def test_new_database_is_not_current(self, database_url: str) -> None:
        """A database without migrations is not taken for an up-to-date one."""
        database = open_database(database_url, upgrade=False)
        try:
            assert not database.is_current()
        finally:
            database.close()

    def test_upgrade_twice_is_a_no_op(self, db: Database) -> None:
        """Upgrading an up-to-date database changes neither revision nor data."""
        with db.session() as s:
            s.execute(
                text("INSERT INTO athletes (name, created_at) VALUES ('me', :t)"),
                {"t": "2026-01-01 00:00:00+00:00"},
            )
        before = _revision(db)
        db.upgrade()
        db.upgrade()
        assert _revision(db) == before
        with db.session() as s:
            assert s.execute(text("SELECT count(*) FROM athletes")).scalar_one() == 1

    def test_open_without_upgrade_leaves_it_empty(self, database_url: str) -> None:
        """open_database(upgrade=False) creates no table."""
        database = open_database(database_url, upgrade=False)
        try:
            assert "activities" not in inspect(database.engine).get_table_names()
        finally:
            database.close()

    def test_two_databases_opened_on_one_url(self, database_url: str) -> None:
        """A second process starting on a migrated database finds nothing to do."""
        first = open_database(database_url)
        second = open_database(database_url)
        try:
            assert _revision(first) == _revision(second)
        finally:
            first.close()
            second.close()


class TestSqlite:
    """SQLite specifics: pragmas, awkward paths, errors."""

    def test_pragmas(self, tmp_path: Path) -> None:
        """Every connection has WAL, foreign keys on and a 30 s busy timeout."""
        database = open_database(sqlite_url(tmp_path / "x.db"))
        try:
            with database.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30000
        finally:
            database.close()

    def test_path_with_spaces_and_percent(self, tmp_path: Path) -> None:
        """A file path with spaces, % and a missing parent folder works."""
        path = tmp_path / "My Data" / "hill 100% sync" / "hillsync.db"
        database = open_database(sqlite_url(path))
        database.close()
        assert path.is_file()

    def test_unwritable_folder(self, tmp_path: Path) -> None:
        """A folder that cannot be created gives a StoreError."""
        blocker = tmp_path / "file"
        blocker.write_text("not a folder")
        with pytest.raises(StoreError, match="cannot"):
            open_database(sqlite_url(blocker / "sub" / "hillsync.db"))

    def test_bad_url(self) -> None:
        """A URL that is not one gives a one-line StoreError."""
        with pytest.raises(StoreError, match="not valid") as info:
            open_database("not a url")
        assert "\n" not in str(info.value)

    def test_unknown_driver(self) -> None:
        """A URL naming an unknown driver gives a StoreError."""
        with pytest.raises(StoreError, match="not supported"):
            open_database("nosuchdb://host/db")


class TestPostgresErrors:
    """PostgreSQL connection failures."""

    def test_unreachable_server(self) -> None:
        """A server that does not answer gives a StoreError without the password."""
        url = "postgresql+psycopg://hill:s3cretpw@127.0.0.1:1/none?connect_timeout=2"
        with pytest.raises(StoreError, match="cannot open the database") as info:
            open_database(url)
        assert "s3cretpw" not in str(info.value)
        assert "\n" not in str(info.value)
