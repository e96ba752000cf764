"""`hillsync init` and `hillsync db upgrade`: the config file and the database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hillsync.app.context import AppContext
from hillsync.config import find_config, init_config_path, write_example_config


@dataclass(frozen=True)
class InitResult:
    """Where the config is, whether `init` wrote it, and the database (password hidden)."""

    config: Path
    written: bool
    database: str


def init(ctx: AppContext, explicit: Path | None) -> InitResult:
    """Write the commented example config where the config is looked for (unless one is
    there already), then create and migrate the database.

    Raises ConfigError when the config cannot be written or read, StoreError when the
    database cannot be created.
    """
    found, _named = find_config(explicit, ctx.environ)
    written = found is None or not found.exists()
    target = found if found is not None else init_config_path(explicit, ctx.environ)
    if written:
        write_example_config(target)
    return InitResult(target, written, ctx.db.shown_url)


def db_upgrade(ctx: AppContext) -> str:
    """Apply every pending migration; returns the database URL (password hidden).

    Raises StoreError when the database cannot be opened or migrated.
    """
    ctx.db.upgrade()
    return ctx.db.shown_url
