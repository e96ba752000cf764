"""Alembic environment: runs on the connection hillsync.store.db hands over.

Run by hand (`alembic revision --autogenerate`), it opens `sqlalchemy.url` with the same
connection settings as hillsync.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from hillsync.store.tables import Base, UtcDateTime

config = context.config
target_metadata = Base.metadata


def _render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # Migrations must not import the application's types: they outlive them.
    if kind == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite can alter a table only by copying it: batch mode does that.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate the given connection, or one opened from `sqlalchemy.url`."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from hillsync.store.db import make_engine

    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url to run alembic by hand")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("hillsync migrations run online only")
run_migrations_online()
