"""Finds, parses and validates the TOML configuration into frozen typed settings.

Every problem in a file is reported at once, each with its key path; unknown keys are
errors. Secrets are given as `env:NAME`, `file:PATH` or `credential:NAME` references (or,
discouraged, inline) and resolved into `Secret` values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

from hillsync.model import RUN_SPORTS, ClassifyParams, Goal, GoalProfile, Secret

DEFAULT_ATHLETE = "me"

StreamsMode = Literal["auto", "always"]


@dataclass(frozen=True)
class DatabaseSettings:
    """[database]: `url` None means SQLite in the data directory."""

    url: str | None = None


@dataclass(frozen=True)
class GoalSettings:
    """[goal]."""

    profile: GoalProfile = GoalProfile.ROAD_MARATHON
    hill_share: tuple[float, float] | None = None
    downhill_share_max: float | None = None
    window_days: int = 28
    race_date: date | None = None

    def goal(self) -> Goal:
        """The band this goal stands for: the profile's, overridden by explicit keys."""
        raise NotImplementedError


@dataclass(frozen=True)
class SyncSettings:
    """[sync]."""

    sports: tuple[str, ...] = RUN_SPORTS
    backfill_days: int = 365


@dataclass(frozen=True)
class StravaSettings:
    """[sources.strava]: the Strava API application and how often to poll."""

    client_id: int | None = None
    client_secret: Secret | None = None
    poll_minutes: float = 15.0
    streams: StreamsMode = "auto"


@dataclass(frozen=True)
class GarminSettings:
    """[sources.garmin]."""

    poll_minutes: float = 30.0
    streams: StreamsMode = "auto"


@dataclass(frozen=True)
class FolderSettings:
    """One [[sources.folder]]: `name` defaults to "folder" (made unique when several)."""

    path: Path
    name: str = "folder"
    poll_minutes: float = 5.0


@dataclass(frozen=True)
class NotifySettings:
    """[notify]: Apprise URLs (secrets) and the reminder interval."""

    urls: tuple[Secret, ...] = ()
    remind_days: int = 7


@dataclass(frozen=True)
class AthleteSettings:
    """One athlete: the default `me` from the top-level tables, or an [athletes.NAME] table."""

    name: str
    goal: GoalSettings = field(default_factory=GoalSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    folders: tuple[FolderSettings, ...] = ()


@dataclass(frozen=True)
class Settings:
    """The whole configuration."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    classify: ClassifyParams = field(default_factory=ClassifyParams)
    sync: SyncSettings = field(default_factory=SyncSettings)
    strava: StravaSettings = field(default_factory=StravaSettings)
    garmin: GarminSettings = field(default_factory=GarminSettings)
    #: Every athlete, the default one (`me`) first.
    athletes: Mapping[str, AthleteSettings] = field(
        default_factory=lambda: {DEFAULT_ATHLETE: AthleteSettings(DEFAULT_ATHLETE)}
    )
    #: The file these settings were read from (None: defaults).
    path: Path | None = None


def find_config(explicit: Path | None, environ: Mapping[str, str]) -> tuple[Path | None, bool]:
    """Where the config is: (path or None, whether it was named explicitly)."""
    raise NotImplementedError


def load_settings(explicit: Path | None, environ: Mapping[str, str]) -> Settings:
    """Find and load the config; defaults when there is none.

    Raises ConfigError listing every problem with its key path.
    """
    raise NotImplementedError
