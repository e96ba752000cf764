"""Opening the database: engine, sessions and migrations.

SQLite (the default) gets WAL, a 30 s busy timeout and foreign keys on every connection,
and writing sessions take the write lock up front (BEGIN IMMEDIATE) so that two processes
never fail half-way with "database is locked". PostgreSQL is used through psycopg 3.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from hillsync.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from alembic.config import Config

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: The newest migration. Checked against alembic's own head by a test: it lets a start on
#: an up-to-date database skip importing alembic (about 10 MB of a Raspberry Pi's memory).
HEAD_REVISION = "leases_and_api_budgets"
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Any fixed number: every hillsync process that migrates a PostgreSQL database takes it.
PG_MIGRATION_LOCK = 0x68696C6C
_BEGIN_OPTION = "hillsync_sqlite_begin"


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # The driver's own implicit transactions would defeat BEGIN IMMEDIATE (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))


def make_engine(url: str | URL) -> Engine:
    """An engine for `url` with hillsync's connection settings (not yet connected).

    Raises StoreError when the URL cannot be parsed or names an unknown database driver.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"database URL is not valid: {_one_line(exc)}") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is what hillsync ships with; plain postgresql:// would want psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the database folder {path.parent}: {exc.strerror}"
                ) from None
            parsed = parsed.set(database=str(path))
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ArgumentError) as exc:
        raise StoreError(f"database URL is not supported: {_one_line(exc)}") from None
    except ImportError as exc:
        # The driver is an optional extra: say which one to install.
        if backend == "postgresql":
            raise ConfigError(
                "database.url is PostgreSQL but its driver (psycopg) is not installed: "
                "install hillsync[postgres] (pip install 'hillsync[postgres]')"
            ) from None
        raise ConfigError(
            f"database.url needs a driver that is not installed ({exc.name or exc})"
        ) from None
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


class Database:
    """An open database: sessions (one transaction each) and migrations."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: The URL without its password: what may be shown to a user.
        self.shown_url = engine.url.render_as_string(hide_password=True)
        self.is_sqlite = engine.dialect.name == "sqlite"
        writer = engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
        self._writer = sessionmaker(writer, expire_on_commit=False)
        self._reader = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back when it raises.

        `readonly` sessions do not take SQLite's write lock (they must not write).
        Raises StoreError when the database is unreachable or locked beyond the timeout;
        any exception from the block is re-raised after the rollback.
        """
        maker = self._reader if readonly else self._writer
        try:
            with maker.begin() as session:
                yield session
        except OperationalError as exc:
            raise StoreError(f"database error: {_one_line(exc)}") from exc

    def upgrade(self) -> None:
        """Apply every pending migration (none: nothing happens).

        Concurrent upgrades are serialised: by SQLite's write lock, or by an advisory lock
        on PostgreSQL. Raises StoreError when the database cannot be migrated.
        """
        if self.is_current():
            return
        from alembic import command

        config = alembic_config()
        try:
            with self.engine.execution_options(
                **{_BEGIN_OPTION: "BEGIN IMMEDIATE"}
            ).begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK}
                    )
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except DBAPIError as exc:
            raise StoreError(f"cannot migrate the database: {_one_line(exc)}") from exc
        log.debug("database_migrated", dialect=self.engine.dialect.name)

    def is_current(self) -> bool:
        """True when the database is already at HEAD_REVISION (nothing to migrate).

        Raises StoreError when the database cannot be read.
        """
        try:
            with self.engine.connect() as connection:
                version = connection.execute(
                    text("SELECT version_num FROM alembic_version")
                ).scalar_one_or_none()
        except OperationalError:
            return False  # no alembic_version table yet: a new database
        except DBAPIError as exc:
            if "alembic_version" in str(exc):
                return False
            raise StoreError(f"cannot read the database: {_one_line(exc)}") from exc
        return version == HEAD_REVISION

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def alembic_config() -> Config:
    """An alembic configuration pointing at the migrations inside the package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def open_database(url: str, *, upgrade: bool = True) -> Database:
    """Open (and by default migrate) the database at `url`.

    Raises StoreError with a one-line reason: a bad URL, an unreachable server, a file
    that cannot be created or written, a failed migration.
    """
    engine = make_engine(url)
    shown = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as exc:
        engine.dispose()
        hint = (
            "check the file's folder and permissions, or [database] url in the config"
            if engine.dialect.name == "sqlite"
            else "is the server running and reachable? check [database] url in the config"
        )
        raise StoreError(f"cannot open the database {shown}: {_one_line(exc)} ({hint})") from None
    database = Database(engine)
    if upgrade:
        try:
            database.upgrade()
        except StoreError:
            database.close()
            raise
    log.debug("database_opened", url=shown)
    return database
