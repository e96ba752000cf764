"""What every use case needs: the settings, the environment, the database and the clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING

from hillsync.clock import Clock, utc_now
from hillsync.config import DEFAULT_ATHLETE, AthleteSettings, Settings
from hillsync.errors import UsageError

if TYPE_CHECKING:  # the store (SQLAlchemy) loads on first use: `--help` stays fast
    from hillsync.store.db import Database


class AppContext:
    """Settings (loaded on first use), the database (opened and migrated on first use), the
    environment (paths, secrets) and the clock."""

    def __init__(
        self,
        settings: Settings | Callable[[], Settings],
        environ: Mapping[str, str],
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._settings = settings
        self.environ = environ
        self.clock = clock
        self._db: Database | None = None

    @cached_property
    def settings(self) -> Settings:
        """The settings. Raises ConfigError when the config cannot be loaded."""
        if isinstance(self._settings, Settings):
            return self._settings
        return self._settings()

    @property
    def database_url(self) -> str:
        """The database to open: `[database] url`, or SQLite in the data directory."""
        return self.settings.database_url(self.environ)

    @property
    def db(self) -> Database:
        """The open, migrated database. Raises StoreError when it cannot be opened."""
        if self._db is None:
            from hillsync.store.db import open_database

            self._db = open_database(self.database_url)
        return self._db

    def close(self) -> None:
        """Close the database if it was opened. Raises nothing."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def athlete(self, name: str | None) -> AthleteSettings:
        """The settings of the athlete `name` (the default one for None).

        Raises UsageError for an athlete the config does not have.
        """
        name = name or DEFAULT_ATHLETE
        try:
            return self.settings.athletes[name]
        except KeyError:
            if name == DEFAULT_ATHLETE:
                return AthleteSettings(DEFAULT_ATHLETE)
            known = ", ".join(self.settings.athletes)
            raise UsageError(f"no athlete {name!r} in the config (known: {known})") from None
