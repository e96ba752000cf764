"""Finds, parses and validates the TOML configuration into frozen typed settings.

The file's shape is declared once, as pydantic v2 dataclasses (`ConfigFile` and the
tables under it, every one `extra="forbid"`); validating a file collects every problem at
once, each reported as "key.path: what is wrong". Secrets are given as `env:NAME`,
`file:PATH` or `credential:NAME` references (or, discouraged, inline) and resolved into
`Secret` values while validating. The settings the rest of hillsync reads (`Settings`,
`AthleteSettings`, ...) are frozen pydantic dataclasses too; the file's per-athlete layout
(top-level tables for the default athlete, `[athletes.NAME]` for the others) is turned
into one `AthleteSettings` per athlete.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn
from urllib.parse import urlsplit

import structlog
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.dataclasses import dataclass as settings_class
from pydantic_core import PydanticCustomError

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
#: Strava's API host (Strava announced a new one for 2027-06-01: `api_base` follows it).
STRAVA_API_BASE = "https://www.strava.com/api/v3"
WEB_HOST = "127.0.0.1"
WEB_PORT = 8722

StreamsMode = Literal["auto", "always"]
UntypedMode = Literal["infer", "run"]

SYSTEM_CONFIG = Path("/etc/hillsync/config.toml")
CONFIG_FILE = "config.toml"
#: Every sport name hillsync knows (what `sync.sports` may name).
KNOWN_SPORTS: tuple[str, ...] = (*RUN_SPORTS, *OTHER_SPORTS)
RESERVED_SOURCE_NAMES = frozenset({"strava", "garmin"})
_ATHLETE_NAME = re.compile(r"[a-z0-9_-]+")
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_SECRET_PREFIXES = ("env:", "file:", "credential:")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MAX_DEFAULT_WORKERS = 4

# One pydantic configuration for every table: unknown keys are errors, values are frozen.
_TABLE = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
_PROBLEM = "hillsync_config"


def default_workers() -> int:
    """The default `[sync] workers`: the machine's cores, at most 4. Raises nothing."""
    return max(1, min(os.cpu_count() or 1, _MAX_DEFAULT_WORKERS))


# -- problems --------------------------------------------------------------------------


def _fail(message: str, *problems: tuple[str | None, str]) -> NoReturn:
    """Reject the value being validated. `problems` (sub-key or None, message) report
    several problems at once, each under its own key below the value's key path."""
    raise PydanticCustomError(
        _PROBLEM, "{message}", {"message": message, "problems": problems or ((None, message),)}
    )


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
        date: "a date",
        datetime: "a date and time",
        time: "a time",
    }.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- validation context: the environment, the config's folder, inline secrets seen ------


@dataclass
class _Context:
    """What validating one file needs beyond the data, and what it learns on the way."""

    environ: Mapping[str, str]
    base_dir: Path
    #: Secret values written inline in the file (to find their keys for the warning).
    inline: set[str] = field(default_factory=set)

    def path(self, raw: str) -> Path:
        """`raw` with ~ expanded; relative to the config file's folder."""
        path = Path(raw).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def secret(self, value: str) -> Secret:
        """Resolve a secret reference; the value itself never enters a message."""
        if value.startswith("env:"):
            name = value[4:]
            if name not in self.environ:
                _fail(f"environment variable {name} is not set")
            resolved = self.environ[name]
        elif value.startswith("file:"):
            resolved = self._read(self.path(value[5:]))
        elif value.startswith("credential:"):
            name = value[len("credential:") :]
            folder = credentials_dir(self.environ)
            if folder is None:
                _fail(
                    f"credential {name}: CREDENTIALS_DIRECTORY is not set"
                    " (LoadCredential= in the systemd unit)"
                )
            if not name or "/" in name:
                _fail(f"credential name {name!r} is not a plain file name")
            resolved = self._read(folder / name)
        else:
            self.inline.add(value)
            resolved = value
        if not resolved:
            _fail("the secret is empty")
        return Secret(resolved)

    def _read(self, file: Path) -> str:
        try:
            return file.read_text("utf-8").strip()
        except FileNotFoundError:
            _fail(f"secret file {file} does not exist")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            _fail(f"cannot read secret file {file}: {reason}")


def _context(info: ValidationInfo) -> _Context:
    # Settings built in code (tests, the demo) carry no context: nothing to resolve against.
    ctx = info.context
    return ctx if isinstance(ctx, _Context) else _Context({}, Path.cwd())


# -- value types: each validator gives the one-line message users see -------------------


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(f"expected a number, got {_show(value)}")
    if not math.isfinite(value):
        _fail("must be a finite number")
    return float(value)


def _positive(value: object) -> float:
    number = _number(value)
    if number <= 0:
        _fail("must be a positive number")
    return number


def _fraction(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(f"expected a number, got {_show(value)}")
    if not 0.0 <= value <= 1.0:
        _fail(f"must be a fraction between 0 and 1, got {_show(value)}")
    return float(value)


def _whole(minimum: int, maximum: int | None = None) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(f"expected a whole number, got {_show(value)}")
        if value < minimum:
            _fail(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            _fail(f"must be at most {maximum}, got {value}")
        return value

    return check


def _choice(*choices: str) -> Callable[[object], Any]:
    def check(value: object) -> str:
        if isinstance(value, str) and value in choices:
            return value
        expected = " or ".join(f'"{c}"' for c in choices)
        _fail(f"expected {expected}, got {_show(value)}")

    return check


def _secret(value: object, info: ValidationInfo) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        _fail(
            "expected a string (env:NAME, file:PATH, credential:NAME or the value),"
            f" got {_type_name(value)}"
        )
    return _context(info).secret(value)


def _secret_url(value: object, info: ValidationInfo) -> Secret:
    secret = _secret(value, info)
    if secret is None or "://" not in secret.reveal():
        _fail("not a URL (expected scheme://...)")
    return secret


def _array_of(what: str) -> Callable[[object], object]:
    def check(value: object) -> object:
        if not isinstance(value, list | tuple):
            _fail(f"expected an array of {what}, got {_type_name(value)}")
        return value

    return check


def _database_url(value: object, info: ValidationInfo) -> str | None:
    if value is None:
        return None
    ctx = _context(info)
    url = value
    if isinstance(value, str) and value.startswith(_SECRET_PREFIXES):
        url = ctx.secret(value).reveal()
    if not isinstance(url, str):
        _fail(f"expected a string, got {_type_name(url)}")
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if not scheme.startswith(("sqlite", "postgresql")):
        # The URL itself is not shown: it may carry a password.
        _fail("expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
    password = urlsplit(url).password
    if password:
        Secret(password)  # registered for log redaction
        if url == value:
            ctx.inline.add(url)
    return url


def _http_url(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.netloc:
            return value.rstrip("/")
    _fail(f"expected an http:// or https:// URL, got {_show(value)}")


def _required_http_url(value: object) -> str:
    url = _http_url(value)
    if url is None:
        _fail("expected an http:// or https:// URL, got None")
    return url


def _host(value: object) -> str:
    if isinstance(value, str) and value and not any(c.isspace() for c in value):
        return value
    _fail(f"expected a host name or address, got {_show(value)}")


def _profile(value: object) -> GoalProfile:
    if isinstance(value, str) and value in GoalProfile.__members__.values():
        return GoalProfile(value)
    choices = " | ".join(g.value for g in GoalProfile)
    _fail(f"expected one of {choices}, got {_show(value)}")


def _share_band(value: object) -> tuple[float, float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value)
    ):
        _fail(f"expected [min, max] with two numbers, got {_show(value)}")
    lo, hi = float(value[0]), float(value[1])
    if not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0):
        _fail(f"must be fractions between 0 and 1, got {_show(value)}")
    if lo > hi:
        _fail(f"min {value[0]} is above max {value[1]}")
    return lo, hi


def _race_date(value: object) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    _fail(f"expected a date like 2027-04-25, got {_show(value)}")


def _file_path(value: object, info: ValidationInfo) -> Path | None:
    if value is None or isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value:
        _fail(f"expected a file path, got {_show(value)}")
    return _context(info).path(value)


def _folder_path(value: object, info: ValidationInfo) -> Path:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value:
        _fail(f"expected a folder path, got {_show(value)}")
    return _context(info).path(value)


def _folder_name(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _FOLDER_NAME.fullmatch(value):
        _fail(f"use only letters, digits, '.', '_' and '-', got {_show(value)}")
    if value in RESERVED_SOURCE_NAMES:
        _fail(f"{value!r} is the name of a source kind")
    return value


def _sports(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        _fail(f"expected an array of sport names, got {_show(value)}")
    if not value:
        _fail("must name at least one sport")
    unknown = [v for v in value if v not in KNOWN_SPORTS]
    if unknown:
        known = ", ".join(KNOWN_SPORTS)
        problems = [(None, f"unknown sport {v!r} (known: {known})") for v in unknown]
        _fail(problems[0][1], *problems)
    return tuple(dict.fromkeys(value))


def _client_id(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        _fail(f"expected the application's number, got {_show(value)}")
    return value


def _athlete_name(value: str) -> str:
    if not _ATHLETE_NAME.fullmatch(value):
        _fail("athlete names use only a-z, 0-9, _ and -")
    return value


@dataclass(frozen=True)
class WeeklyTime:
    """A time of the week, in local time: `[notify] digest = "mon 07:00"`."""

    #: 0 is Monday (as `date.weekday()`).
    weekday: int
    at: time

    def __str__(self) -> str:
        return f"{_WEEKDAYS[self.weekday]} {self.at:%H:%M}"


def _weekly_time(value: object) -> WeeklyTime | None:
    if value is None or isinstance(value, WeeklyTime):
        return value
    match = (
        re.fullmatch(r"([A-Za-z]+) +(\d{1,2}):(\d{2})", value) if isinstance(value, str) else None
    )
    if match:
        day, hour, minute = match[1].lower(), int(match[2]), int(match[3])
        if (day in _WEEKDAYS or day in _WEEKDAY_NAMES) and hour < 24 and minute < 60:
            return WeeklyTime(_WEEKDAYS.index(day[:3]), time(hour, minute))
    _fail(f'expected a weekday and a local time like "mon 07:00", got {_show(value)}')


Number = Annotated[float, PlainValidator(_number)]
Positive = Annotated[float, PlainValidator(_positive)]
OptionalFraction = Annotated[float | None, PlainValidator(_fraction)]
OptionalSecret = Annotated[Secret | None, PlainValidator(_secret)]
SecretURL = Annotated[Secret, PlainValidator(_secret_url)]
Streams = Annotated[StreamsMode, PlainValidator(_choice("auto", "always"))]
Untyped = Annotated[UntypedMode, PlainValidator(_choice("infer", "run"))]
ClientId = Annotated[int | None, PlainValidator(_client_id)]
OptionalURL = Annotated[str | None, PlainValidator(_http_url)]


# -- the tables ----------------------------------------------------------------------


@settings_class(frozen=True, config=_TABLE)
class DatabaseSettings:
    """[database]: `url` None means SQLite in the data directory."""

    url: Annotated[str | None, PlainValidator(_database_url)] = None


@settings_class(frozen=True, config=_TABLE)
class GoalSettings:
    """[goal] (or [athletes.NAME.goal])."""

    profile: Annotated[GoalProfile, PlainValidator(_profile)] = GoalProfile.ROAD_MARATHON
    hill_share: Annotated[tuple[float, float] | None, PlainValidator(_share_band)] = None
    downhill_share_max: OptionalFraction = None
    window_days: Annotated[int, PlainValidator(_whole(7))] = 28
    race_date: Annotated[date | None, PlainValidator(_race_date)] = None
    #: The race route (GPX/FIT/TCX): targets from its terrain (DESIGN section 5).
    course: Annotated[Path | None, PlainValidator(_file_path)] = None
    #: Least share of downhill running before a descending race.
    downhill_share_min: OptionalFraction = None

    @model_validator(mode="after")
    def _downhill_band(self) -> GoalSettings:
        low, high = self.downhill_share_min, self.downhill_share_max
        if low is not None and high is not None and low > high:
            _fail(
                "",
                ("downhill_share_min", f"{low} is above downhill_share_max {high}"),
            )
        return self

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
            downhill_share_min=self.downhill_share_min,
        )


_CLASSIFY = ClassifyParams()


@settings_class(frozen=True, config=_TABLE)
class ClassifyTable:
    """[classify], read into the classifier's own `ClassifyParams`."""

    hilly_m_per_km: Positive = _CLASSIFY.hilly_m_per_km
    downhill_ratio: Positive = _CLASSIFY.downhill_ratio
    grade_pct: Positive = _CLASSIFY.grade_pct
    hysteresis_m: Positive = _CLASSIFY.hysteresis_m

    def params(self) -> ClassifyParams:
        """The classifier's thresholds. Raises nothing."""
        return ClassifyParams(
            hilly_m_per_km=self.hilly_m_per_km,
            downhill_ratio=self.downhill_ratio,
            grade_pct=self.grade_pct,
            hysteresis_m=self.hysteresis_m,
        )


@settings_class(frozen=True, config=_TABLE)
class SyncSettings:
    """[sync]."""

    sports: Annotated[tuple[str, ...], PlainValidator(_sports)] = RUN_SPORTS
    backfill_days: Annotated[int, PlainValidator(_whole(0))] = 365
    #: A file that does not state its sport: "infer" it from how it moved, or take it as "run".
    untyped: Untyped = "infer"
    #: Processes that read and classify files in parallel.
    workers: Annotated[int, PlainValidator(_whole(1))] = field(default_factory=default_workers)
    #: How long a worker's claim on a source lasts without renewal (it renews it with every
    #: batch): a killed worker's sources are taken over after this long.
    lease_seconds: Positive = 120.0


@settings_class(frozen=True, config=_TABLE)
class StravaAppSettings:
    """A Strava API application: [athletes.NAME.sources.strava] holds only this."""

    client_id: ClientId = None
    client_secret: OptionalSecret = None


@settings_class(frozen=True, config=_TABLE)
class StravaSettings(StravaAppSettings):
    """[sources.strava]: the default athlete's Strava application and how to poll."""

    poll_minutes: Positive = 15.0
    streams: Streams = "auto"
    api_base: Annotated[str, PlainValidator(_required_http_url)] = STRAVA_API_BASE
    #: `hub.verify_token` of the push subscription (`hillsync serve`).
    webhook_verify_token: OptionalSecret = None


@settings_class(frozen=True, config=_TABLE)
class GarminSettings:
    """[sources.garmin]."""

    poll_minutes: Positive = 30.0
    streams: Streams = "auto"


@settings_class(frozen=True, config=_TABLE)
class FolderTable:
    """One [[sources.folder]] as written: `name` may be left out."""

    path: Annotated[Path, PlainValidator(_folder_path)]
    name: Annotated[str | None, PlainValidator(_folder_name)] = None
    poll_minutes: Positive = 5.0


@settings_class(frozen=True, config=_TABLE)
class FolderSettings:
    """One folder source: `name` defaults to "folder" (made unique when several)."""

    path: Path
    name: str = "folder"
    poll_minutes: Positive = 5.0


@settings_class(frozen=True, config=_TABLE)
class NotifySettings:
    """[notify]: Apprise URLs (secrets), reminders, the weekly digest, staleness."""

    urls: Annotated[tuple[SecretURL, ...], BeforeValidator(_array_of("Apprise URLs"))] = ()
    remind_days: Annotated[int, PlainValidator(_whole(1))] = 7
    #: The weekly summary's time (local); None: no digest.
    digest: Annotated[WeeklyTime | None, PlainValidator(_weekly_time)] = None
    stale_days: Annotated[int, PlainValidator(_whole(1))] = 10


@settings_class(frozen=True, config=_TABLE)
class WebSettings:
    """[web]: `hillsync serve`."""

    host: Annotated[str, PlainValidator(_host)] = WEB_HOST
    port: Annotated[int, PlainValidator(_whole(1, 65535))] = WEB_PORT
    #: The address users reach it at behind a reverse proxy (OAuth redirects, webhooks).
    public_url: OptionalURL = None
    #: Required on any address but loopback.
    password: OptionalSecret = None


def _tables(what: str) -> Callable[[object], object]:
    def check(value: object) -> object:
        if isinstance(value, dict):
            return [value]  # [sources.folder] written as a single table
        if not isinstance(value, list):
            _fail(f"expected {what}, got {_type_name(value)}")
        return value

    return check


Folders = Annotated[tuple[FolderTable, ...], BeforeValidator(_tables("[[sources.folder]] tables"))]


@settings_class(frozen=True, config=_TABLE)
class SourcesTable:
    """[sources]."""

    strava: StravaSettings = field(default_factory=StravaSettings)
    garmin: GarminSettings = field(default_factory=GarminSettings)
    folder: Folders = ()


@settings_class(frozen=True, config=_TABLE)
class AthleteSourcesTable:
    """[athletes.NAME.sources]: folders and the athlete's own Strava application."""

    folder: Folders = ()
    strava: StravaAppSettings | None = None


@settings_class(frozen=True, config=_TABLE)
class AthleteTable:
    """[athletes.NAME]."""

    goal: GoalSettings = field(default_factory=GoalSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    sources: AthleteSourcesTable = field(default_factory=AthleteSourcesTable)


@settings_class(frozen=True, config=_TABLE)
class ConfigFile:
    """The whole file, as written: the one schema of the configuration."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    goal: GoalSettings = field(default_factory=GoalSettings)
    classify: ClassifyTable = field(default_factory=ClassifyTable)
    sync: SyncSettings = field(default_factory=SyncSettings)
    sources: SourcesTable = field(default_factory=SourcesTable)
    notify: NotifySettings = field(default_factory=NotifySettings)
    web: WebSettings = field(default_factory=WebSettings)
    athletes: dict[Annotated[str, AfterValidator(_athlete_name)], AthleteTable] = field(
        default_factory=dict
    )


# -- the settings hillsync reads ------------------------------------------------------


@settings_class(frozen=True, config=_TABLE)
class AthleteSettings:
    """One athlete: the default `me` from the top-level tables, or an [athletes.NAME] table."""

    name: str
    goal: GoalSettings = field(default_factory=GoalSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    folders: tuple[FolderSettings, ...] = ()
    #: The athlete's own Strava application; None: the top-level [sources.strava] one.
    strava: StravaAppSettings | None = None


def _default_athletes() -> dict[str, AthleteSettings]:
    return {DEFAULT_ATHLETE: AthleteSettings(DEFAULT_ATHLETE)}


@settings_class(frozen=True, config=_TABLE)
class Settings:
    """The whole configuration."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    classify: ClassifyParams = field(default_factory=ClassifyParams)
    sync: SyncSettings = field(default_factory=SyncSettings)
    strava: StravaSettings = field(default_factory=StravaSettings)
    garmin: GarminSettings = field(default_factory=GarminSettings)
    web: WebSettings = field(default_factory=WebSettings)
    #: Every athlete, the default one (`me`) first.
    athletes: Mapping[str, AthleteSettings] = field(default_factory=_default_athletes)
    #: The file these settings were read from (None: defaults).
    path: Path | None = None

    def database_url(self, environ: Mapping[str, str]) -> str:
        """The database URL to open: the configured one, or SQLite in the data directory."""
        return self.database.url or default_database_url(environ)

    def strava_app(self, athlete: str) -> StravaAppSettings:
        """The Strava application `athlete` connects through: their own, else the
        top-level one (which may be unset: client_id None). Raises nothing."""
        own = self.athletes[athlete].strava if athlete in self.athletes else None
        return own if own is not None else self.strava


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

    Raises ConfigError with every problem found, each starting with its key path, in the
    order the keys appear in the file.
    """
    where = str(path) if path else "config"
    try:
        data = tomllib.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        # The message already carries "(at line L, column C)".
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    ctx = _Context(environ, path.parent if path else Path.cwd())
    problems = _across_tables(data)
    try:
        file = _FILE.validate_python(data, context=ctx)
    except ValidationError as exc:
        problems += _problems(exc)
    if problems:
        order = _document_order(data)
        problems.sort(key=lambda p: _position(p[0], order))
        lines = [f"{key or where}: {message}" for key, message in problems]
        head = f"{where}: " if len(lines) == 1 else f"{where}: {len(lines)} problems: "
        raise ConfigError(head + "; ".join(lines), lines)
    settings = _settings(file, path)
    if path is not None and ctx.inline:
        _warn_if_readable(path, _keys_holding(data, ctx.inline))
    return settings


_FILE = TypeAdapter(ConfigFile)


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Each of pydantic's errors as (key path, the message users see)."""
    found: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        # "[key]" marks a bad table key (an athlete's name): the problem is the key itself.
        loc = [part for part in error["loc"] if part != "[key]"]
        kind = error["type"]
        if kind == _PROBLEM:
            for sub, message in error["ctx"]["problems"]:
                found.append((_key_path([*loc, sub] if sub else loc), message))
            continue
        if kind in ("missing", "missing_argument"):
            message = "required"
        elif kind in ("unexpected_keyword_argument", "extra_forbidden"):
            message = "unknown key"
        elif kind in ("dataclass_type", "dict_type", "model_type", "dataclass_exact_type"):
            message = f"expected a table, got {_type_name(error['input'])}"
        elif kind in ("tuple_type", "list_type"):
            message = f"expected an array, got {_type_name(error['input'])}"
        else:
            message = error["msg"]
        found.append((_key_path(loc), message))
    return found


def _key_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


def _document_order(data: Mapping[str, Any]) -> dict[str, int]:
    """Every key path of the file, numbered in the order it is written."""
    order: dict[str, int] = {}

    def walk(value: object, path: str) -> None:
        items: list[tuple[str, object]] = []
        if isinstance(value, dict):
            items = [(f"{path}.{k}" if path else k, v) for k, v in value.items()]
        elif isinstance(value, list):
            items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
        for key, item in items:
            order.setdefault(key, len(order))
            walk(item, key)

    walk(data, "")
    return order


def _position(key: str, order: Mapping[str, int]) -> int:
    # A missing key (a required one) sorts where its nearest written parent is.
    while key:
        if key in order:
            return order[key]
        key = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", key) if re.search(r"[.\[]", key) else ""
    return len(order)


def _keys_holding(data: Mapping[str, Any], values: set[str]) -> list[str]:
    """The key paths whose value is one of `values` (the inline secrets, never shown)."""
    keys: list[str] = []

    def walk(value: object, path: str) -> None:
        if isinstance(value, str) and value in values:
            keys.append(path)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else k)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")

    walk(data, "")
    return keys


def _across_tables(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The rules that span keys pydantic checks separately, checked on the raw data so
    they are reported together with every other problem."""
    problems: list[tuple[str, str]] = []
    sources = data.get("sources")
    sources = sources if isinstance(sources, dict) else {}
    athletes = data.get("athletes")
    athletes = athletes if isinstance(athletes, dict) else {}
    top_level = any(k in data for k in ("goal", "notify")) or "folder" in sources
    if isinstance(athletes.get(DEFAULT_ATHLETE), dict) and top_level:
        problems.append(
            (
                f"athletes.{DEFAULT_ATHLETE}",
                "athlete 'me' is already set by the top-level [goal], [notify] and"
                " [[sources.folder]]; use one or the other",
            )
        )
    tables: list[tuple[str, object]] = [("", data)]
    tables += [(f"athletes.{name}.", t) for name, t in athletes.items() if isinstance(t, dict)]
    for prefix, table in tables:
        assert isinstance(table, dict)
        goal = table.get("goal")
        if isinstance(goal, dict) and goal.get("profile") == GoalProfile.CUSTOM.value:
            for key in ("hill_share", "downhill_share_max"):
                if key not in goal:
                    problems.append((f"{prefix}goal.{key}", "required when profile is 'custom'"))
        own = table.get("sources") if prefix else sources
        own = own if isinstance(own, dict) else {}
        folders = own.get("folder")
        if isinstance(folders, list):
            problems += _duplicate_folders(folders, f"{prefix}sources.folder")
        strava = own.get("strava")
        if isinstance(strava, dict) and ("client_id" in strava) != ("client_secret" in strava):
            missing = "client_secret" if "client_id" in strava else "client_id"
            problems.append(
                (f"{prefix}sources.strava.{missing}", "client_id and client_secret go together")
            )
    return problems


def _duplicate_folders(folders: list[Any], path: str) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    used: set[str] = set()
    for i, table in enumerate(folders):
        name = table.get("name") if isinstance(table, dict) else None
        # Malformed and reserved names are the table's own problem (FolderTable.name).
        if not isinstance(name, str) or not _FOLDER_NAME.fullmatch(name):
            continue
        if name in RESERVED_SOURCE_NAMES:
            continue
        if name in used:
            problems.append(
                (f"{path}[{i}].name", f"{name!r} is already the name of another folder")
            )
        used.add(name)
    return problems


def _settings(file: ConfigFile, path: Path | None) -> Settings:
    """The validated file as settings: one AthleteSettings per athlete, `me` first."""
    own_me = file.athletes.get(DEFAULT_ATHLETE)
    if own_me is not None:
        me = _athlete(DEFAULT_ATHLETE, own_me)
    else:
        me = AthleteSettings(
            DEFAULT_ATHLETE,
            goal=file.goal,
            notify=file.notify,
            folders=_folders(file.sources.folder),
        )
    athletes = {DEFAULT_ATHLETE: me}
    for name, table in file.athletes.items():
        if name != DEFAULT_ATHLETE:
            athletes[name] = _athlete(name, table)
    return Settings(
        database=file.database,
        classify=file.classify.params(),
        sync=file.sync,
        strava=file.sources.strava,
        garmin=file.sources.garmin,
        web=file.web,
        athletes=athletes,
        path=path,
    )


def _athlete(name: str, table: AthleteTable) -> AthleteSettings:
    return AthleteSettings(
        name,
        goal=table.goal,
        notify=table.notify,
        folders=_folders(table.sources.folder),
        strava=table.sources.strava,
    )


def _folders(tables: Sequence[FolderTable]) -> tuple[FolderSettings, ...]:
    # Unnamed folders are "folder", "folder-2", ... skipping names given explicitly.
    explicit = {t.name for t in tables if t.name is not None}
    used: set[str] = set()
    folders: list[FolderSettings] = []
    for table in tables:
        name = table.name
        if name is None:
            n, name = 1, "folder"
            while name in used or name in explicit:
                n += 1
                name = f"folder-{n}"
        used.add(name)
        folders.append(FolderSettings(path=table.path, name=name, poll_minutes=table.poll_minutes))
    return tuple(folders)


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
