"""The configured sources: the config's folders and the accounts connected in the store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hillsync.app.context import AppContext
from hillsync.registry import ConnectedAccount, Registry, SourceSpec
from hillsync.retry import default_retrying

if TYPE_CHECKING:
    from hillsync.store.db import Database


def connected_accounts(db: Database) -> list[ConnectedAccount]:
    """Every connected account, by athlete and kind. Raises StoreError."""
    from hillsync.store import repo

    with db.session(readonly=True) as session:
        return [ConnectedAccount(a, k) for a, k in repo.connected_kinds(session)]


def configured_sources(ctx: AppContext) -> list[SourceSpec]:
    """Every source of the settings and the store, folders first. Raises StoreError."""
    registry = Registry(
        ctx.settings, environ=ctx.environ, clock=ctx.clock, retrying=default_retrying
    )
    return registry.specs(connected_accounts(ctx.db))
