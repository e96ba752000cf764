"""Finds, parses and validates the TOML configuration into frozen typed settings.

Every problem in a file is reported at once, each with its key path; unknown keys are
errors. Secrets are given as `env:NAME`, `file:PATH` or `credential:NAME` references (or,
discouraged, inline) and resolved into `Secret` values.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import structlog

from hillsync.errors import ConfigError
from hillsync.model import (
    GOAL_BANDS,
    OTHER_SPORTS,
    RUN_SPORTS,
    ClassifyParams,
    Goal,
    GoalProfile,
    Secret,
)
from hillsync.paths import config_dir, credentials_dir, default_database_url

log = structlog.get_logger(__name__)

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
        """The band this goal stands for: the profile's, overridden by explicit keys.

        Raises ConfigError for a custom profile without hill_share and downhill_share_max
        (load_settings never returns one).
        """
        band = GOAL_BANDS.get(self.profile)
        if band is None and (self.hill_share is None or self.downhill_share_max is None):
            raise ConfigError("goal: a custom profile needs hill_share and downhill_share_max")
        if self.hill_share is not None:
            lo, hi = self.hill_share
        else:
            assert band is not None
            lo, hi = band[0], band[1]
        if self.downhill_share_max is not None:
            down = self.downhill_share_max
        else:
            assert band is not None
            down = band[2]
        return Goal(
            profile=self.profile,
            hill_share_min=float(lo),
            hill_share_max=float(hi),
            downhill_share_max=float(down),
            window_days=self.window_days,
            race_date=self.race_date,
        )


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

    def database_url(self, environ: Mapping[str, str]) -> str:
        """The database URL to open: the configured one, or SQLite in the data directory."""
        return self.database.url or default_database_url(environ)


SYSTEM_CONFIG = Path("/etc/hillsync/config.toml")
CONFIG_FILE = "config.toml"
#: Every sport name hillsync knows (what `sync.sports` may name).
KNOWN_SPORTS: tuple[str, ...] = (*RUN_SPORTS, *OTHER_SPORTS)
RESERVED_SOURCE_NAMES = frozenset({"strava", "garmin"})
_ATHLETE_NAME = re.compile(r"[a-z0-9_-]+")
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_SECRET_PREFIXES = ("env:", "file:", "credential:")


def find_config(
    explicit: Path | None,
    environ: Mapping[str, str],
    *,
    system_path: Path = SYSTEM_CONFIG,
) -> tuple[Path | None, bool]:
    """Where the config is: (path or None, whether it was named explicitly).

    Order: `explicit` (--config), $HILLSYNC_CONFIG, $CONFIGURATION_DIRECTORY/config.toml,
    $XDG_CONFIG_HOME/hillsync/config.toml, /etc/hillsync/config.toml. An explicit path is
    returned whether or not it exists; the others only when they exist. Raises nothing.
    """
    if explicit is not None:
        return explicit.expanduser(), True
    named = environ.get("HILLSYNC_CONFIG", "")
    if named:
        return Path(named).expanduser(), True
    for candidate in _search_path(environ, system_path):
        if candidate.is_file():
            return candidate, False
    return None, False


def _search_path(environ: Mapping[str, str], system_path: Path) -> list[Path]:
    candidates = []
    if environ.get("CONFIGURATION_DIRECTORY"):
        candidates.append(config_dir(environ) / CONFIG_FILE)
    xdg_only = {k: v for k, v in environ.items() if k != "CONFIGURATION_DIRECTORY"}
    candidates.append(config_dir(xdg_only) / CONFIG_FILE)
    candidates.append(system_path)
    return candidates


def init_config_path(explicit: Path | None, environ: Mapping[str, str]) -> Path:
    """Where `hillsync init` writes the config: --config, else $HILLSYNC_CONFIG, else
    config.toml in the config directory ($CONFIGURATION_DIRECTORY or the XDG one).
    Raises nothing."""
    if explicit is not None:
        return explicit.expanduser()
    if environ.get("HILLSYNC_CONFIG"):
        return Path(environ["HILLSYNC_CONFIG"]).expanduser()
    return config_dir(environ) / CONFIG_FILE


def load_settings(
    explicit: Path | None,
    environ: Mapping[str, str],
    *,
    system_path: Path = SYSTEM_CONFIG,
) -> Settings:
    """Find and load the config; defaults when there is none.

    Raises ConfigError listing every problem with its key path; also when a file named by
    --config or $HILLSYNC_CONFIG does not exist, cannot be read or is not valid TOML.
    """
    path, named = find_config(explicit, environ, system_path=system_path)
    if path is None:
        return Settings()
    if named and not path.exists():
        raise ConfigError(f"config file {path} does not exist (create it with `hillsync init`)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    return parse_settings(raw, environ, path=path)


def parse_settings(
    text: str | bytes, environ: Mapping[str, str], *, path: Path | None = None
) -> Settings:
    """Parse and validate config text (the contents of `path`, if given).

    Raises ConfigError with every problem found, each starting with its key path.
    """
    where = str(path) if path else "config"
    try:
        data = tomllib.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        # The message already carries "(at line L, column C)".
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    parser = _Parser(environ, base_dir=path.parent if path else Path.cwd())
    settings = parser.settings(data, path)
    if parser.problems:
        n = len(parser.problems)
        head = f"{where}: " if n == 1 else f"{where}: {n} problems: "
        raise ConfigError(head + "; ".join(parser.problems), parser.problems)
    if path is not None and parser.inline_secrets:
        _warn_if_readable(path, parser.inline_secrets)
    return settings


def _warn_if_readable(path: Path, keys: list[str]) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o077:
        log.warning(
            "config_readable_by_others",
            path=str(path),
            inline_secrets=keys,
            hint=f"the config holds secrets inline and is readable by others: chmod 600 {path}",
        )


def example_config_text() -> str:
    """The packaged example config (every key, commented). Raises nothing."""
    return resources.files("hillsync").joinpath("hillsync.example.toml").read_text("utf-8")


def write_example_config(path: Path) -> None:
    """Write the example config to `path` (mode 0600, folders made as needed).

    Raises ConfigError when the file already exists or cannot be written.
    """
    if path.exists():
        raise ConfigError(f"{path} already exists; not overwriting it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(example_config_text())
    except FileExistsError:
        raise ConfigError(f"{path} already exists; not overwriting it") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


_MISSING: Any = object()


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Parser:
    """Turns the TOML data into Settings, collecting every problem on the way."""

    def __init__(self, environ: Mapping[str, str], base_dir: Path) -> None:
        self.environ = environ
        self.base_dir = base_dir
        self.problems: list[str] = []
        self.inline_secrets: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    # -- helpers ------------------------------------------------------------------------

    def table(self, data: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
        value = data.get(key, _MISSING)
        if value is _MISSING:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"expected a table, got {_type_name(value)}")
            return {}
        return dict(value)

    def unknown(self, table: Mapping[str, Any], known: set[str], prefix: str) -> None:
        for key in table:
            if key not in known:
                self.problem(f"{prefix}{key}", "unknown key")

    def number(self, table: Mapping[str, Any], key: str, path: str, default: float) -> float:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(path, f"expected a number, got {_show(value)}")
            return default
        if not math.isfinite(value):
            self.problem(path, "must be a finite number")
            return default
        return float(value)

    def positive(self, table: Mapping[str, Any], key: str, path: str, default: float) -> float:
        value = self.number(table, key, path, default)
        if value <= 0:
            self.problem(path, "must be a positive number")
            return default
        return value

    def fraction(
        self, table: Mapping[str, Any], key: str, path: str, default: float | None
    ) -> float | None:
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(path, f"expected a number, got {_show(value)}")
        elif not 0.0 <= value <= 1.0:
            self.problem(path, f"must be a fraction between 0 and 1, got {_show(value)}")
        else:
            return float(value)
        return default

    def integer(
        self, table: Mapping[str, Any], key: str, path: str, default: int, minimum: int
    ) -> int:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, f"expected a whole number, got {_show(value)}")
            return default
        if value < minimum:
            self.problem(path, f"must be at least {minimum}, got {value}")
            return default
        return value

    def streams(self, table: Mapping[str, Any], path: str) -> StreamsMode:
        value = table.get("streams", "auto")
        if value == "auto":
            return "auto"
        if value == "always":
            return "always"
        self.problem(path, f'expected "auto" or "always", got {_show(value)}')
        return "auto"

    def secret(self, value: object, path: str) -> Secret | None:
        """Resolve a secret reference; the value itself never enters a message."""
        if not isinstance(value, str):
            self.problem(
                path,
                f"expected a string (env:NAME, file:PATH, credential:NAME or the value),"
                f" got {_type_name(value)}",
            )
            return None
        if value.startswith("env:"):
            name = value[4:]
            if name not in self.environ:
                self.problem(path, f"environment variable {name} is not set")
                return None
            resolved = self.environ[name]
        elif value.startswith("file:"):
            resolved_opt = self._read_secret_file(Path(value[5:]).expanduser(), path)
            if resolved_opt is None:
                return None
            resolved = resolved_opt
        elif value.startswith("credential:"):
            name = value[len("credential:") :]
            folder = credentials_dir(self.environ)
            if folder is None:
                self.problem(
                    path,
                    f"credential {name}: CREDENTIALS_DIRECTORY is not set"
                    " (LoadCredential= in the systemd unit)",
                )
                return None
            if not name or "/" in name:
                self.problem(path, f"credential name {name!r} is not a plain file name")
                return None
            resolved_opt = self._read_secret_file(folder / name, path)
            if resolved_opt is None:
                return None
            resolved = resolved_opt
        else:
            self.inline_secrets.append(path)
            resolved = value
        if not resolved:
            self.problem(path, "the secret is empty")
            return None
        return Secret(resolved)

    def _read_secret_file(self, file: Path, path: str) -> str | None:
        if not file.is_absolute():
            file = self.base_dir / file
        try:
            return file.read_text("utf-8").strip()
        except FileNotFoundError:
            self.problem(path, f"secret file {file} does not exist")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            self.problem(path, f"cannot read secret file {file}: {reason}")
        return None

    # -- sections -----------------------------------------------------------------------

    def settings(self, data: Mapping[str, Any], path: Path | None) -> Settings:
        self.unknown(
            data, {"database", "goal", "classify", "sync", "sources", "notify", "athletes"}, ""
        )
        database = self.database(self.table(data, "database", "database"))
        classify = self.classify(self.table(data, "classify", "classify"))
        sync = self.sync(self.table(data, "sync", "sync"))
        sources = self.table(data, "sources", "sources")
        self.unknown(sources, {"strava", "garmin", "folder"}, "sources.")
        strava = self.strava(self.table(sources, "strava", "sources.strava"))
        garmin = self.garmin(self.table(sources, "garmin", "sources.garmin"))
        top_level = any(k in data for k in ("goal", "notify")) or "folder" in sources
        me = self.athlete(DEFAULT_ATHLETE, data, sources, "")
        athletes: dict[str, AthleteSettings] = {DEFAULT_ATHLETE: me}
        for name, table in self.table(data, "athletes", "athletes").items():
            prefix = f"athletes.{name}"
            if not _ATHLETE_NAME.fullmatch(name):
                self.problem(prefix, "athlete names use only a-z, 0-9, _ and -")
                continue
            if not isinstance(table, dict):
                self.problem(prefix, f"expected a table, got {_type_name(table)}")
                continue
            if name == DEFAULT_ATHLETE and top_level:
                self.problem(
                    prefix,
                    "athlete 'me' is already set by the top-level [goal], [notify] and"
                    " [[sources.folder]]; use one or the other",
                )
                continue
            self.unknown(table, {"goal", "notify", "sources"}, f"{prefix}.")
            own_sources = self.table(table, "sources", f"{prefix}.sources")
            self.unknown(own_sources, {"folder"}, f"{prefix}.sources.")
            athletes[name] = self.athlete(name, table, own_sources, f"{prefix}.")
        return Settings(
            database=database,
            classify=classify,
            sync=sync,
            strava=strava,
            garmin=garmin,
            athletes=athletes,
            path=path,
        )

    def database(self, table: dict[str, Any]) -> DatabaseSettings:
        self.unknown(table, {"url"}, "database.")
        if "url" not in table:
            return DatabaseSettings()
        value = table["url"]
        if isinstance(value, str) and value.startswith(_SECRET_PREFIXES):
            secret = self.secret(value, "database.url")
            if secret is None:
                return DatabaseSettings()
            value = secret.reveal()
        if not isinstance(value, str):
            self.problem("database.url", f"expected a string, got {_type_name(value)}")
            return DatabaseSettings()
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if not scheme.startswith(("sqlite", "postgresql")):
            # The URL itself is not shown: it may carry a password.
            self.problem(
                "database.url",
                "expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
            )
            return DatabaseSettings()
        password = urlsplit(value).password
        if password:
            Secret(password)  # registered for log redaction
            if not table["url"].startswith(_SECRET_PREFIXES):
                self.inline_secrets.append("database.url")
        return DatabaseSettings(url=value)

    def goal(self, table: dict[str, Any], prefix: str) -> GoalSettings:
        p = f"{prefix}goal"
        self.unknown(
            table,
            {"profile", "hill_share", "downhill_share_max", "window_days", "race_date"},
            f"{p}.",
        )
        defaults = GoalSettings()
        profile = defaults.profile
        if "profile" in table:
            try:
                profile = GoalProfile(table["profile"])
            except ValueError:
                choices = " | ".join(g.value for g in GoalProfile)
                self.problem(
                    f"{p}.profile", f"expected one of {choices}, got {_show(table['profile'])}"
                )
        hill_share: tuple[float, float] | None = None
        if "hill_share" in table:
            hill_share = self.share_band(table["hill_share"], f"{p}.hill_share")
        downhill = self.fraction(table, "downhill_share_max", f"{p}.downhill_share_max", None)
        window = self.integer(table, "window_days", f"{p}.window_days", defaults.window_days, 7)
        race_date: date | None = None
        if "race_date" in table:
            value = table["race_date"]
            if isinstance(value, date) and not isinstance(value, datetime):
                race_date = value
            else:
                self.problem(
                    f"{p}.race_date", f"expected a date like 2027-04-25, got {_show(value)}"
                )
        if profile is GoalProfile.CUSTOM:
            for key in ("hill_share", "downhill_share_max"):
                if key not in table:
                    self.problem(f"{p}.{key}", "required when profile is 'custom'")
        return GoalSettings(
            profile=profile,
            hill_share=hill_share,
            downhill_share_max=downhill,
            window_days=window,
            race_date=race_date,
        )

    def share_band(self, value: object, path: str) -> tuple[float, float] | None:
        if (
            not isinstance(value, list)
            or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value)
        ):
            self.problem(path, f"expected [min, max] with two numbers, got {_show(value)}")
            return None
        lo, hi = float(value[0]), float(value[1])
        bad = [v for v in (lo, hi) if not 0.0 <= v <= 1.0]
        if bad:
            self.problem(path, f"must be fractions between 0 and 1, got {_show(value)}")
            return None
        if lo > hi:
            self.problem(path, f"min {value[0]} is above max {value[1]}")
            return None
        return lo, hi

    def classify(self, table: dict[str, Any]) -> ClassifyParams:
        d = ClassifyParams()
        keys = ("hilly_m_per_km", "downhill_ratio", "grade_pct", "hysteresis_m")
        self.unknown(table, set(keys), "classify.")
        values = {k: self.positive(table, k, f"classify.{k}", getattr(d, k)) for k in keys}
        return ClassifyParams(**values)

    def sync(self, table: dict[str, Any]) -> SyncSettings:
        self.unknown(table, {"sports", "backfill_days"}, "sync.")
        d = SyncSettings()
        sports = d.sports
        if "sports" in table:
            value = table["sports"]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                self.problem("sync.sports", f"expected an array of sport names, got {_show(value)}")
            elif not value:
                self.problem("sync.sports", "must name at least one sport")
            else:
                unknown = [v for v in value if v not in KNOWN_SPORTS]
                for v in unknown:
                    self.problem(
                        "sync.sports",
                        f"unknown sport {v!r} (known: {', '.join(KNOWN_SPORTS)})",
                    )
                if not unknown:
                    sports = tuple(dict.fromkeys(value))
        backfill = self.integer(table, "backfill_days", "sync.backfill_days", d.backfill_days, 0)
        return SyncSettings(sports=sports, backfill_days=backfill)

    def strava(self, table: dict[str, Any]) -> StravaSettings:
        p = "sources.strava"
        self.unknown(table, {"client_id", "client_secret", "poll_minutes", "streams"}, f"{p}.")
        d = StravaSettings()
        client_id: int | None = None
        if "client_id" in table:
            value = table["client_id"]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                self.problem(
                    f"{p}.client_id", f"expected the application's number, got {_show(value)}"
                )
            else:
                client_id = value
        secret = (
            self.secret(table["client_secret"], f"{p}.client_secret")
            if "client_secret" in table
            else None
        )
        if ("client_id" in table) != ("client_secret" in table):
            missing = "client_secret" if "client_id" in table else "client_id"
            self.problem(f"{p}.{missing}", "client_id and client_secret go together")
        return StravaSettings(
            client_id=client_id,
            client_secret=secret,
            poll_minutes=self.positive(table, "poll_minutes", f"{p}.poll_minutes", d.poll_minutes),
            streams=self.streams(table, f"{p}.streams"),
        )

    def garmin(self, table: dict[str, Any]) -> GarminSettings:
        p = "sources.garmin"
        self.unknown(table, {"poll_minutes", "streams"}, f"{p}.")
        d = GarminSettings()
        return GarminSettings(
            poll_minutes=self.positive(table, "poll_minutes", f"{p}.poll_minutes", d.poll_minutes),
            streams=self.streams(table, f"{p}.streams"),
        )

    def notify(self, table: dict[str, Any], prefix: str) -> NotifySettings:
        p = f"{prefix}notify"
        self.unknown(table, {"urls", "remind_days"}, f"{p}.")
        d = NotifySettings()
        urls: list[Secret] = []
        value = table.get("urls", [])
        if not isinstance(value, list):
            self.problem(f"{p}.urls", f"expected an array of Apprise URLs, got {_type_name(value)}")
            value = []
        for i, item in enumerate(value):
            secret = self.secret(item, f"{p}.urls[{i}]")
            if secret is None:
                continue
            if "://" not in secret.reveal():
                self.problem(f"{p}.urls[{i}]", "not a URL (expected scheme://...)")
                continue
            urls.append(secret)
        remind = self.integer(table, "remind_days", f"{p}.remind_days", d.remind_days, 1)
        return NotifySettings(urls=tuple(urls), remind_days=remind)

    def folders(self, value: object, prefix: str) -> tuple[FolderSettings, ...]:
        p = f"{prefix}sources.folder"
        if value is _MISSING:
            return ()
        if isinstance(value, dict):
            value = [value]  # [sources.folder] written as a single table
        if not isinstance(value, list):
            self.problem(p, f"expected [[sources.folder]] tables, got {_type_name(value)}")
            return ()
        folders: list[FolderSettings] = []
        used: set[str] = set()
        explicit = {
            t["name"] for t in value if isinstance(t, dict) and isinstance(t.get("name"), str)
        }
        for i, table in enumerate(value):
            q = f"{p}[{i}]"
            if not isinstance(table, dict):
                self.problem(q, f"expected a table, got {_type_name(table)}")
                continue
            self.unknown(table, {"path", "name", "poll_minutes"}, f"{q}.")
            poll = self.positive(table, "poll_minutes", f"{q}.poll_minutes", 5.0)
            raw_path = table.get("path", _MISSING)
            folder_path: Path | None = None
            if raw_path is _MISSING:
                self.problem(f"{q}.path", "required")
            elif not isinstance(raw_path, str) or not raw_path:
                self.problem(f"{q}.path", f"expected a folder path, got {_show(raw_path)}")
            else:
                folder_path = Path(raw_path).expanduser()
                if not folder_path.is_absolute():
                    folder_path = self.base_dir / folder_path
            name = self.folder_name(table, q, used, explicit)
            if folder_path is not None and name is not None:
                folders.append(FolderSettings(path=folder_path, name=name, poll_minutes=poll))
        return tuple(folders)

    def folder_name(
        self, table: dict[str, Any], q: str, used: set[str], explicit: set[str]
    ) -> str | None:
        if "name" not in table:
            # Unnamed folders are "folder", "folder-2", ... skipping names given explicitly.
            n = 1
            name = "folder"
            while name in used or name in explicit:
                n += 1
                name = f"folder-{n}"
            used.add(name)
            return name
        name = table["name"]
        if not isinstance(name, str) or not _FOLDER_NAME.fullmatch(name):
            self.problem(
                f"{q}.name", f"use only letters, digits, '.', '_' and '-', got {_show(name)}"
            )
            return None
        if name in RESERVED_SOURCE_NAMES:
            self.problem(f"{q}.name", f"{name!r} is the name of a source kind")
            return None
        if name in used:
            self.problem(f"{q}.name", f"{name!r} is already the name of another folder")
            return None
        used.add(name)
        return name

    def athlete(
        self, name: str, data: Mapping[str, Any], sources: Mapping[str, Any], prefix: str
    ) -> AthleteSettings:
        return AthleteSettings(
            name=name,
            goal=self.goal(self.table(data, "goal", f"{prefix}goal"), prefix),
            notify=self.notify(self.table(data, "notify", f"{prefix}notify"), prefix),
            folders=self.folders(sources.get("folder", _MISSING), prefix),
        )
