"""Tests of finding, parsing and validating the configuration."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import tomllib
import typing
from collections.abc import Iterator
from datetime import date, time
from pathlib import Path

import pytest
import structlog
from pydantic import ValidationError

from hillsync.config import (
    DEFAULT_ATHLETE,
    AthleteSettings,
    ConfigFile,
    FolderSettings,
    GoalSettings,
    Settings,
    example_config_text,
    find_config,
    init_config_path,
    load_settings,
    parse_settings,
    write_example_config,
)
from hillsync.errors import ConfigError
from hillsync.logs import configure_logging
from hillsync.model import ClassifyParams, GoalProfile, Secret

CONFIG = "hillsync.config"
NO_SYSTEM = Path("/nonexistent/hillsync/config.toml")


def _problems(text: str, environ: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, environ or {})
    return info.value.problems


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _schema_keys(table: type, prefix: str) -> list[str]:
    """Every key path of a config table class, sub-tables walked (athletes as NAME)."""
    keys: list[str] = []
    hints = typing.get_type_hints(table, include_extras=True)
    for f in dataclasses.fields(table):
        key = f"{prefix}{f.name}"
        keys.append(key)
        for inner in _classes_in(hints[f.name]):
            sub = f"{key}.NAME." if f.name == "athletes" else f"{key}."
            keys += _schema_keys(inner, sub)
    return keys


def _classes_in(hint: object) -> list[type]:
    """The config table classes a type hint holds (inside Optional, tuple, dict, Annotated)."""
    if isinstance(hint, type) and hasattr(hint, "__pydantic_fields__"):
        return [hint]
    return [c for arg in typing.get_args(hint) for c in _classes_in(arg)]


def _uncommented_example() -> str:
    """The example config with every commented-out key and table header uncommented."""
    return re.sub(r"(?m)^#(?=\[|[a-z_]+ = )", "", example_config_text())


def _has_key(data: object, key: str) -> bool:
    """Whether the parsed TOML holds `key` (a dotted path; arrays of tables: any element)."""
    head, _, rest = key.partition(".")
    if isinstance(data, list):
        return any(_has_key(item, key) for item in data)
    if not isinstance(data, dict) or head not in data:
        return False
    return not rest or _has_key(data[head], rest)


class TestSearchOrder:
    """The config is looked for in the documented order."""

    def test_explicit_first(self, tmp_path: Path) -> None:
        """--config wins over $HILLSYNC_CONFIG and is named explicitly."""
        env = {"HILLSYNC_CONFIG": str(tmp_path / "env.toml")}
        assert find_config(tmp_path / "cli.toml", env, system_path=NO_SYSTEM) == (
            tmp_path / "cli.toml",
            True,
        )

    def test_env_variable(self, tmp_path: Path) -> None:
        """$HILLSYNC_CONFIG is used (even if missing) before any searched place."""
        conf = _write(tmp_path / "systemd" / "config.toml", "")
        env = {
            "HILLSYNC_CONFIG": str(tmp_path / "x.toml"),
            "CONFIGURATION_DIRECTORY": str(conf.parent),
        }
        assert find_config(None, env, system_path=NO_SYSTEM) == (tmp_path / "x.toml", True)

    def test_systemd_before_xdg(self, tmp_path: Path) -> None:
        """$CONFIGURATION_DIRECTORY/config.toml comes before the XDG config file."""
        sd = _write(tmp_path / "sd" / "config.toml", "")
        _write(tmp_path / "xdg" / "hillsync" / "config.toml", "")
        env = {
            "CONFIGURATION_DIRECTORY": f"{sd.parent}:/other",
            "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        }
        assert find_config(None, env, system_path=NO_SYSTEM) == (sd, False)

    def test_xdg_then_home_then_system(self, tmp_path: Path) -> None:
        """Without the earlier places, XDG_CONFIG_HOME, then ~/.config, then /etc is used."""
        xdg = _write(tmp_path / "xdg" / "hillsync" / "config.toml", "")
        system = _write(tmp_path / "etc" / "config.toml", "")
        home = tmp_path / "home"
        assert find_config(
            None, {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}, system_path=system
        ) == (xdg, False)
        assert find_config(None, {"HOME": str(home)}, system_path=system) == (system, False)
        dot = _write(home / ".config" / "hillsync" / "config.toml", "")
        assert find_config(None, {"HOME": str(home)}, system_path=system) == (dot, False)

    def test_none_found(self, tmp_path: Path) -> None:
        """With no file anywhere, defaults apply."""
        env = {"HOME": str(tmp_path)}
        assert find_config(None, env, system_path=NO_SYSTEM) == (None, False)
        settings = load_settings(None, env, system_path=NO_SYSTEM)
        assert settings == Settings()
        assert settings.database_url(env).endswith("/.local/share/hillsync/hillsync.db")

    def test_missing_explicit_is_error(self, tmp_path: Path) -> None:
        """A file named by --config or $HILLSYNC_CONFIG that does not exist is a ConfigError."""
        with pytest.raises(ConfigError, match="does not exist") as info:
            load_settings(tmp_path / "nope.toml", {})
        assert info.value.exit_code == 2
        with pytest.raises(ConfigError, match="does not exist"):
            load_settings(None, {"HILLSYNC_CONFIG": str(tmp_path / "nope.toml")})

    def test_init_path(self, tmp_path: Path) -> None:
        """init writes where the config is looked for first."""
        assert init_config_path(tmp_path / "a.toml", {}) == tmp_path / "a.toml"
        assert init_config_path(None, {"CONFIGURATION_DIRECTORY": "/etc/hs"}) == Path(
            "/etc/hs/config.toml"
        )
        assert init_config_path(None, {"XDG_CONFIG_HOME": "/x"}) == Path("/x/hillsync/config.toml")


class TestSyntaxAndUnknownKeys:
    """Broken TOML and unknown keys are reported with where they are."""

    def test_toml_syntax_error(self, tmp_path: Path) -> None:
        """A TOML syntax error is one ConfigError naming the file, line and column."""
        path = _write(tmp_path / "c.toml", "[goal]\nprofile = \n")
        with pytest.raises(ConfigError) as info:
            load_settings(path, {})
        assert str(path) in str(info.value)
        assert "line 2" in str(info.value)
        assert "column" in str(info.value)

    def test_unknown_key(self) -> None:
        """A misspelt key is reported with its key path."""
        assert _problems("[sync]\nbackfil_days = 3\n") == ("sync.backfil_days: unknown key",)

    def test_unknown_sections(self) -> None:
        """Unknown top-level tables and source kinds are errors too."""
        problems = _problems("[gaol]\n[sources.polar]\n")
        assert problems == ("gaol: unknown key", "sources.polar: unknown key")


class TestEveryProblemAtOnce:
    """One run reports every problem, each with its key path."""

    def test_all_reported(self) -> None:
        """Problems in several sections all appear in one ConfigError."""
        text = """
[goal]
hill_share = [0.4, 0.3]
window_days = 3
[classify]
grade_pct = "x"
hysteresis_m = -1
[sync]
sports = ["run", "skiing"]
[[sources.folder]]
path = "/a"
[[sources.folder]]
path = "/b"
poll_minutes = 0
[sources.strava]
client_id = 1
client_secret = 42
streams = "never"
[notify]
remind_days = 0
"""
        problems = _problems(text)
        assert "goal.hill_share: min 0.4 is above max 0.3" in problems
        assert "goal.window_days: must be at least 7, got 3" in problems
        assert "classify.grade_pct: expected a number, got 'x'" in problems
        assert "classify.hysteresis_m: must be a positive number" in problems
        assert any(p.startswith("sync.sports: unknown sport 'skiing'") for p in problems)
        assert "sources.folder[1].poll_minutes: must be a positive number" in problems
        assert any(
            p.startswith("sources.strava.client_secret: expected a string") for p in problems
        )
        assert 'sources.strava.streams: expected "auto" or "always", got \'never\'' in problems
        assert "notify.remind_days: must be at least 1, got 0" in problems
        assert len(problems) == 9

    def test_message_lists_count(self, tmp_path: Path) -> None:
        """The error message names the file and how many problems it has."""
        path = _write(tmp_path / "c.toml", "[sync]\nx = 1\ny = 2\n")
        with pytest.raises(ConfigError, match=r"2 problems: sync\.x: unknown key; sync\.y"):
            load_settings(path, {})


class TestTypes:
    """Values of the wrong type or range are rejected."""

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            (
                "[classify]\nhilly_m_per_km = true",
                "classify.hilly_m_per_km: expected a number, got True",
            ),
            ("[goal]\nwindow_days = 28.5", "goal.window_days: expected a whole number, got 28.5"),
            ("[goal]\nprofile = 'marathon'", "goal.profile: expected one of road-marathon"),
            ("[goal]\nhill_share = 0.2", "goal.hill_share: expected [min, max] with two numbers"),
            (
                "[goal]\nhill_share = [0.1, 1.5]",
                "goal.hill_share: must be fractions between 0 and 1",
            ),
            ("[goal]\ndownhill_share_max = 2", "goal.downhill_share_max: must be a fraction"),
            ("[goal]\nrace_date = '2027-04-25'", "goal.race_date: expected a date like 2027-04-25"),
            ("[goal]\nrace_date = 2027-04-25T10:00:00Z", "goal.race_date: expected a date"),
            ("[sync]\nsports = []", "sync.sports: must name at least one sport"),
            ("[sync]\nbackfill_days = -1", "sync.backfill_days: must be at least 0"),
            (
                "[sources.strava]\nclient_id = 'abc'\nclient_secret = 'x'",
                "sources.strava.client_id",
            ),
            ("[database]\nurl = 'mysql://x'", "database.url: expected sqlite:///PATH"),
            ("goal = 3", "goal: expected a table, got an integer"),
            ("[notify]\nurls = ['not a url']", "notify.urls[0]: not a URL"),
        ],
    )
    def test_bad_value(self, text: str, problem: str) -> None:
        """Each bad value gives a problem starting with its key path."""
        assert any(p.startswith(problem) for p in _problems(text)), _problems(text)

    def test_values_read(self) -> None:
        """Good values end up in the settings, as the agreed types."""
        text = """
[database]
url = "postgresql+psycopg://hs@db/hs"
[classify]
hilly_m_per_km = 20
grade_pct = 4.5
[sync]
sports = ["run", "trail_run", "hike"]
backfill_days = 30
[sources.strava]
client_id = 12345
client_secret = "plain-inline-secret"
poll_minutes = 7.5
streams = "always"
[sources.garmin]
poll_minutes = 60
"""
        s = parse_settings(text, {})
        assert s.database.url == "postgresql+psycopg://hs@db/hs"
        assert s.classify == ClassifyParams(hilly_m_per_km=20.0, grade_pct=4.5)
        assert s.sync.sports == ("run", "trail_run", "hike")
        assert s.sync.backfill_days == 30
        assert s.strava.client_id == 12345
        assert s.strava.client_secret == Secret("plain-inline-secret")
        assert (s.strava.poll_minutes, s.strava.streams) == (7.5, "always")
        assert s.garmin.poll_minutes == 60.0

    def test_strava_pair(self) -> None:
        """client_id without client_secret is an error."""
        assert _problems("[sources.strava]\nclient_id = 5\n") == (
            "sources.strava.client_secret: client_id and client_secret go together",
        )


class TestGoal:
    """Goal profiles, overrides, custom bands and the race date."""

    def test_profile_band(self) -> None:
        """A profile's band comes from GOAL_BANDS."""
        goal = parse_settings("[goal]\nprofile = 'trail'\n", {}).athletes["me"].goal.goal()
        assert (
            goal.profile,
            goal.hill_share_min,
            goal.hill_share_max,
            goal.downhill_share_max,
        ) == (
            GoalProfile.TRAIL,
            0.30,
            0.55,
            0.25,
        )

    def test_override(self) -> None:
        """Explicit keys override the profile's band; window_days is carried."""
        text = "[goal]\nprofile = '10k'\nhill_share = [0.2, 0.4]\nwindow_days = 21\n"
        goal = parse_settings(text, {}).athletes["me"].goal.goal()
        assert (goal.hill_share_min, goal.hill_share_max, goal.downhill_share_max) == (
            0.2,
            0.4,
            0.10,
        )
        assert goal.window_days == 21

    def test_custom_requires_band(self) -> None:
        """A custom profile without its keys reports both missing keys."""
        assert _problems("[goal]\nprofile = 'custom'\n") == (
            "goal.hill_share: required when profile is 'custom'",
            "goal.downhill_share_max: required when profile is 'custom'",
        )

    def test_custom_goal(self) -> None:
        """A complete custom profile gives exactly its keys."""
        text = "[goal]\nprofile = 'custom'\nhill_share = [0.05, 0.2]\ndownhill_share_max = 0.05\n"
        goal = parse_settings(text, {}).athletes["me"].goal.goal()
        assert (
            goal.profile,
            goal.hill_share_min,
            goal.hill_share_max,
            goal.downhill_share_max,
        ) == (
            GoalProfile.CUSTOM,
            0.05,
            0.2,
            0.05,
        )

    def test_custom_without_band_in_code(self) -> None:
        """GoalSettings built by hand as custom without a band raises ConfigError."""
        with pytest.raises(ConfigError):
            GoalSettings(profile=GoalProfile.CUSTOM).goal()

    def test_race_date(self) -> None:
        """A TOML date becomes the goal's race date."""
        goal = parse_settings("[goal]\nrace_date = 2027-04-25\n", {}).athletes["me"].goal.goal()
        assert goal.race_date == date(2027, 4, 25)


class TestSecrets:
    """Secret references resolve to Secret values and never leak into messages."""

    def test_env(self) -> None:
        """env:NAME reads the environment variable."""
        text = "[sources.strava]\nclient_id = 1\nclient_secret = 'env:STRAVA_SECRET'\n"
        s = parse_settings(text, {"STRAVA_SECRET": "from-env-123"})
        assert s.strava.client_secret is not None
        assert s.strava.client_secret.reveal() == "from-env-123"

    def test_missing_env_names_variable_only(self) -> None:
        """A missing variable is one problem naming the variable, with no secret in it."""
        Secret("other-known-secret")
        problems = _problems("[notify]\nurls = ['env:HS_NTFY', 'ntfy://other-known-secret@x']\n")
        assert problems == ("notify.urls[0]: environment variable HS_NTFY is not set",)

    def test_file_stripped(self, tmp_path: Path) -> None:
        """file:PATH reads the file, stripping surrounding whitespace."""
        secret = _write(tmp_path / "secret.txt", "  ntfy://file-secret-xyz@ntfy.sh/t\n")
        s = parse_settings(f"[notify]\nurls = ['file:{secret}']\n", {})
        assert s.athletes["me"].notify.urls == (Secret("ntfy://file-secret-xyz@ntfy.sh/t"),)

    def test_file_missing(self, tmp_path: Path) -> None:
        """A missing secret file is reported with its path."""
        problems = _problems(f"[notify]\nurls = ['file:{tmp_path}/none']\n")
        assert problems == (f"notify.urls[0]: secret file {tmp_path}/none does not exist",)

    def test_credential(self, tmp_path: Path) -> None:
        """credential:NAME reads $CREDENTIALS_DIRECTORY/NAME."""
        _write(tmp_path / "strava", "cred-secret-456\n")
        text = "[sources.strava]\nclient_id = 1\nclient_secret = 'credential:strava'\n"
        s = parse_settings(text, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
        assert s.strava.client_secret == Secret("cred-secret-456")

    def test_credential_without_directory(self) -> None:
        """credential: outside a systemd unit says CREDENTIALS_DIRECTORY is not set."""
        text = "[sources.strava]\nclient_id = 1\nclient_secret = 'credential:strava'\n"
        [problem] = _problems(text)
        assert problem.startswith("sources.strava.client_secret: credential strava:")
        assert "CREDENTIALS_DIRECTORY" in problem

    def test_value_never_in_messages(self) -> None:
        """A resolved secret that fails validation is not echoed in the problem."""
        problems = _problems("[notify]\nurls = ['env:U']\n", {"U": "no-scheme-secret-789"})
        assert problems == ("notify.urls[0]: not a URL (expected scheme://...)",)
        assert "no-scheme-secret-789" not in " ".join(problems)


class TestAthletes:
    """The default athlete and [athletes.NAME] tables."""

    def test_default_only(self) -> None:
        """Without athlete tables there is one athlete, me, with the top-level settings."""
        s = parse_settings("[goal]\nprofile = 'trail'\n", {})
        assert list(s.athletes) == [DEFAULT_ATHLETE]
        assert s.athletes["me"].goal.profile is GoalProfile.TRAIL

    def test_named_athletes(self) -> None:
        """Each [athletes.NAME] gets its own goal, notify and folders; me comes first."""
        text = """
[goal]
profile = "road-marathon"
[athletes.anna.goal]
profile = "mountain"
[athletes.anna.notify]
urls = ["ntfy://ntfy.sh/anna"]
[[athletes.anna.sources.folder]]
path = "/srv/anna"
[athletes.bo-2]
"""
        s = parse_settings(text, {})
        assert list(s.athletes) == ["me", "anna", "bo-2"]
        anna = s.athletes["anna"]
        assert anna.goal.profile is GoalProfile.MOUNTAIN
        assert anna.notify.urls == (Secret("ntfy://ntfy.sh/anna"),)
        assert [(f.name, f.path) for f in anna.folders] == [("folder", Path("/srv/anna"))]
        assert s.athletes["bo-2"].goal == GoalSettings()

    def test_bad_athlete_tables(self) -> None:
        """Bad names, unknown keys and a second 'me' are reported with their paths."""
        text = """
[goal]
profile = "trail"
[athletes.Anna]
[athletes.me.goal]
[athletes.bo]
strava = 1
[athletes.bo.sources.garmin]
"""
        assert _problems(text) == (
            "athletes.Anna: athlete names use only a-z, 0-9, _ and -",
            "athletes.me: athlete 'me' is already set by the top-level [goal], [notify] and"
            " [[sources.folder]]; use one or the other",
            "athletes.bo.strava: unknown key",
            "athletes.bo.sources.garmin: unknown key",
        )

    def test_me_table_alone(self) -> None:
        """[athletes.me] alone configures the default athlete."""
        s = parse_settings("[athletes.me.goal]\nprofile = 'ultra-trail'\n", {})
        assert list(s.athletes) == ["me"]
        assert s.athletes["me"].goal.profile is GoalProfile.ULTRA_TRAIL


class TestFolders:
    """Folder sources: paths, names, poll intervals."""

    def test_unnamed_folders_numbered(self, tmp_path: Path) -> None:
        """Several unnamed folders are folder, folder-2, ..., around explicit names."""
        text = """
[[sources.folder]]
path = "/a"
[[sources.folder]]
path = "/b"
name = "folder-2"
[[sources.folder]]
path = "/c"
poll_minutes = 0.1
"""
        folders = parse_settings(text, {}).athletes["me"].folders
        assert [(f.name, str(f.path)) for f in folders] == [
            ("folder", "/a"),
            ("folder-2", "/b"),
            ("folder-3", "/c"),
        ]
        assert folders[2].poll_minutes == 0.1

    def test_tilde_and_relative(self, tmp_path: Path) -> None:
        """~ is expanded and a relative path is relative to the config file."""
        path = _write(
            tmp_path / "c.toml",
            "[[sources.folder]]\npath = '~/runs'\n[[sources.folder]]\npath = 'rel'\n",
        )
        folders = load_settings(path, {}).athletes["me"].folders
        assert folders[0].path == Path("~/runs").expanduser()
        assert folders[1].path == tmp_path / "rel"

    def test_bad_names(self) -> None:
        """Reserved, duplicate and malformed names, and a missing path, are reported."""
        text = """
[[sources.folder]]
path = "/a"
name = "strava"
[[sources.folder]]
path = "/b"
name = "watch"
[[sources.folder]]
path = "/c"
name = "watch"
[[sources.folder]]
name = "a/b"
"""
        assert _problems(text) == (
            "sources.folder[0].name: 'strava' is the name of a source kind",
            "sources.folder[2].name: 'watch' is already the name of another folder",
            "sources.folder[3].path: required",
            "sources.folder[3].name: use only letters, digits, '.', '_' and '-', got 'a/b'",
        )


class TestPermissionWarning:
    """A config holding inline secrets that others can read is warned about."""

    @pytest.fixture
    def events(self) -> Iterator[io.StringIO]:
        buf = io.StringIO()
        root = logging.getLogger()
        handlers = list(root.handlers)
        configure_logging(stream=buf, environ={})
        yield buf
        root.handlers[:] = handlers
        structlog.reset_defaults()

    def _events(self, buf: io.StringIO) -> list[dict[str, object]]:
        return [json.loads(line) for line in buf.getvalue().splitlines()]

    def test_warns_when_readable(self, tmp_path: Path, events: io.StringIO) -> None:
        """An inline client secret in a 0644 file logs a warning naming the file and chmod 600."""
        path = _write(
            tmp_path / "c.toml",
            "[sources.strava]\nclient_id = 1\nclient_secret = 'inline-secret-abc'\n",
            mode=0o644,
        )
        load_settings(path, {})
        [event] = self._events(events)
        assert event["event"] == "config_readable_by_others"
        assert event["path"] == str(path)
        assert f"chmod 600 {path}" in str(event["hint"])
        assert event["inline_secrets"] == ["sources.strava.client_secret"]
        assert "inline-secret-abc" not in events.getvalue()

    def test_silent_when_private_or_referenced(self, tmp_path: Path, events: io.StringIO) -> None:
        """A 0600 file, or a 0644 file with only references, logs nothing."""
        private = _write(tmp_path / "a.toml", "[notify]\nurls = ['ntfy://ntfy.sh/t']\n", mode=0o600)
        refs = _write(tmp_path / "b.toml", "[notify]\nurls = ['env:U']\n", mode=0o644)
        load_settings(private, {})
        load_settings(refs, {"U": "ntfy://ntfy.sh/t"})
        assert events.getvalue() == ""


class TestExampleConfig:
    """The packaged example config is complete and valid."""

    def test_loads_as_shipped(self, tmp_path: Path) -> None:
        """The example, as shipped, loads to the defaults."""
        path = _write(tmp_path / "config.toml", example_config_text())
        s = load_settings(path, {})
        assert s == Settings(path=path)

    def test_every_key_valid_when_uncommented(self, tmp_path: Path) -> None:
        """Uncommenting every example key gives a valid config once its secrets exist."""
        text = _uncommented_example()
        _write(tmp_path / "web-password", "example-password\n")
        env = {
            "HILLSYNC_STRAVA_CLIENT_SECRET": "example-secret",
            "HILLSYNC_STRAVA_WEBHOOK_TOKEN": "example-verify-token",
            "HILLSYNC_PUSHOVER_URL": "pover://user@token",
            "HILLSYNC_ANNA_NTFY_URL": "ntfy://ntfy.sh/anna",
            "HILLSYNC_ANNA_STRAVA_CLIENT_SECRET": "anna-example-secret",
            "CREDENTIALS_DIRECTORY": str(tmp_path),
        }
        s = parse_settings(text, env)
        assert s.strava.client_id == 12345
        assert s.strava.api_base == "https://www.strava.com/api/v3"
        assert s.strava.webhook_verify_token == Secret("example-verify-token")
        me = s.athletes["me"]
        assert me.goal.race_date == date(2027, 4, 25)
        assert me.goal.course == Path("~/races/zermatt.gpx").expanduser()
        assert me.goal.downhill_share_min == 0.05
        assert [f.name for f in me.folders] == ["watch"]
        assert str(me.notify.digest) == "mon 07:00"
        assert (s.sync.untyped, s.sync.workers, s.sync.lease_seconds) == ("infer", 4, 120.0)
        assert (s.web.host, s.web.port) == ("127.0.0.1", 8722)
        assert s.web.public_url == "https://hills.example.org"
        assert s.web.password == Secret("example-password")
        assert list(s.athletes) == ["me", "anna"]
        assert s.strava_app("anna").client_id == 67890
        assert s.strava_app("me").client_id == 12345

    def test_documents_every_key(self) -> None:
        """Every key of DESIGN.md section 3 appears in the example."""
        text = example_config_text()
        for key in (
            "url",
            "profile",
            "hill_share",
            "downhill_share_max",
            "window_days",
            "race_date",
            "hilly_m_per_km",
            "downhill_ratio",
            "grade_pct",
            "hysteresis_m",
            "sports",
            "backfill_days",
            "client_id",
            "client_secret",
            "poll_minutes",
            "streams",
            "path",
            "name",
            "urls",
            "remind_days",
            "untyped",
            "workers",
            "lease_seconds",
            "api_base",
            "webhook_verify_token",
            "digest",
            "stale_days",
            "host",
            "port",
            "public_url",
            "password",
            "course",
            "downhill_share_min",
        ):
            assert re.search(rf"(?m)^#?{key} = ", text), key

    def test_documents_every_model_key(self) -> None:
        """Every key of the config schema (ConfigFile and its tables) appears in the example."""
        data = tomllib.loads(_uncommented_example())
        keys = _schema_keys(ConfigFile, "")
        assert len(keys) > 50

        def documented(key: str) -> bool:
            # An athlete's tables are the top-level ones: documented once, at the top.
            shared = key.removeprefix("athletes.NAME.")
            return _has_key(data, key.replace("NAME", "anna")) or _has_key(data, shared)

        assert [key for key in keys if not documented(key)] == []

    def test_config_symlink(self) -> None:
        """config/hillsync.example.toml is the packaged example."""
        link = Path(__file__).parent.parent / "config" / "hillsync.example.toml"
        assert link.read_text() == example_config_text()

    def test_write_example(self, tmp_path: Path) -> None:
        """init's writer creates a private file and refuses to overwrite it."""
        path = tmp_path / "new" / "config.toml"
        write_example_config(path)
        assert path.read_text() == example_config_text()
        assert path.stat().st_mode & 0o077 == 0
        with pytest.raises(ConfigError, match="already exists"):
            write_example_config(path)


class TestDesignKeys:
    """The keys of DESIGN.md section 3 added with the pydantic schema: defaults and checks."""

    def test_defaults(self) -> None:
        """With no file, each new key has the default DESIGN.md gives."""
        s = Settings()
        assert s.sync.untyped == "infer"
        assert 1 <= s.sync.workers <= 4
        assert s.strava.api_base == "https://www.strava.com/api/v3"
        assert s.strava.webhook_verify_token is None
        me = s.athletes["me"]
        assert (me.notify.digest, me.notify.stale_days) == (None, 10)
        assert (s.web.host, s.web.port, s.web.public_url, s.web.password) == (
            "127.0.0.1",
            8722,
            None,
            None,
        )
        assert (me.goal.course, me.goal.downhill_share_min) == (None, None)
        assert me.strava is None

    def test_workers_capped_at_four(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The default worker count is the machine's cores, at most 4."""
        monkeypatch.setattr("os.cpu_count", lambda: 64)
        assert parse_settings("", {}).sync.workers == 4
        monkeypatch.setattr("os.cpu_count", lambda: 2)
        assert parse_settings("", {}).sync.workers == 2
        monkeypatch.setattr("os.cpu_count", lambda: None)
        assert parse_settings("", {}).sync.workers == 1

    def test_values_read(self, tmp_path: Path) -> None:
        """Good values of the new keys end up in the settings."""
        text = """
[goal]
course = "races/zermatt.gpx"
downhill_share_min = 0.05
[sync]
untyped = "run"
workers = 3
[sources.strava]
api_base = "https://api.strava.example/v4/"
webhook_verify_token = "env:HS_VERIFY"
[notify]
digest = "Sunday 18:30"
stale_days = 14
[web]
host = "0.0.0.0"
port = 8080
public_url = "https://hills.example.org"
password = "env:HS_WEB"
"""
        path = _write(tmp_path / "c.toml", text)
        s = load_settings(path, {"HS_VERIFY": "verify-token-123", "HS_WEB": "web-pass-456"})
        me = s.athletes["me"]
        assert me.goal.course == tmp_path / "races" / "zermatt.gpx"
        assert me.goal.downhill_share_min == 0.05
        assert (s.sync.untyped, s.sync.workers) == ("run", 3)
        assert s.strava.api_base == "https://api.strava.example/v4"
        assert s.strava.webhook_verify_token == Secret("verify-token-123")
        assert me.notify.digest is not None
        assert (me.notify.digest.weekday, me.notify.digest.at) == (6, time(18, 30))
        assert str(me.notify.digest) == "sun 18:30"
        assert me.notify.stale_days == 14
        assert (s.web.host, s.web.port) == ("0.0.0.0", 8080)  # noqa: S104
        assert s.web.public_url == "https://hills.example.org"
        assert s.web.password == Secret("web-pass-456")

    def test_course_tilde(self) -> None:
        """A course path starting with ~ is in the home folder."""
        s = parse_settings("[goal]\ncourse = '~/races/zermatt.gpx'\n", {})
        assert s.athletes["me"].goal.course == Path("~/races/zermatt.gpx").expanduser()

    def test_all_reported(self) -> None:
        """Bad values of every new key are reported at once, each with its key path."""
        text = """
[goal]
course = 3
downhill_share_min = 1.5
[sync]
untyped = "guess"
workers = 0
lease_seconds = 0
[sources.strava]
api_base = "www.strava.com"
webhook_verify_token = 7
[notify]
digest = "someday 25:00"
stale_days = 0
[web]
host = ""
port = 70000
public_url = "hills.example.org"
password = "env:NOT_SET"
"""
        assert _problems(text) == (
            "goal.course: expected a file path, got 3",
            "goal.downhill_share_min: must be a fraction between 0 and 1, got 1.5",
            'sync.untyped: expected "infer" or "run", got \'guess\'',
            "sync.workers: must be at least 1, got 0",
            "sync.lease_seconds: must be a positive number",
            "sources.strava.api_base: expected an http:// or https:// URL, got 'www.strava.com'",
            "sources.strava.webhook_verify_token: expected a string (env:NAME, file:PATH,"
            " credential:NAME or the value), got an integer",
            'notify.digest: expected a weekday and a local time like "mon 07:00",'
            " got 'someday 25:00'",
            "notify.stale_days: must be at least 1, got 0",
            "web.host: expected a host name or address, got ''",
            "web.port: must be at most 65535, got 70000",
            "web.public_url: expected an http:// or https:// URL, got 'hills.example.org'",
            "web.password: environment variable NOT_SET is not set",
        )

    @pytest.mark.parametrize(
        "digest", ["mon", "07:00", "mon 7", "mon 24:00", "mon 07:60", "x 07:00"]
    )
    def test_bad_digest(self, digest: str) -> None:
        """A digest needs a weekday and an HH:MM time of day."""
        [problem] = _problems(f"[notify]\ndigest = '{digest}'\n")
        assert problem.startswith("notify.digest: expected a weekday and a local time")

    def test_downhill_min_above_max(self) -> None:
        """downhill_share_min above downhill_share_max is a problem of the minimum."""
        assert _problems("[goal]\ndownhill_share_min = 0.2\ndownhill_share_max = 0.1\n") == (
            "goal.downhill_share_min: 0.2 is above downhill_share_max 0.1",
        )

    def test_athlete_strava_application(self) -> None:
        """An athlete's own Strava application is theirs; the others use the top-level one."""
        text = """
[sources.strava]
client_id = 111
client_secret = "top-secret-app"
[athletes.anna.sources.strava]
client_id = 222
client_secret = "env:ANNA_SECRET"
[athletes.bo]
"""
        s = parse_settings(text, {"ANNA_SECRET": "anna-secret-app"})
        assert s.strava_app("anna").client_id == 222
        assert s.strava_app("anna").client_secret == Secret("anna-secret-app")
        assert s.strava_app("bo").client_id == 111
        assert s.strava_app("me").client_id == 111

    def test_athlete_strava_keys(self) -> None:
        """An athlete's Strava table takes only the application's keys, as a pair."""
        text = "[athletes.anna.sources.strava]\nclient_id = 5\npoll_minutes = 3\n"
        assert _problems(text) == (
            "athletes.anna.sources.strava.client_secret: client_id and client_secret go together",
            "athletes.anna.sources.strava.poll_minutes: unknown key",
        )

    def test_athlete_notify_keys(self) -> None:
        """An athlete's notify table takes digest and stale_days too."""
        text = "[athletes.anna.notify]\ndigest = 'fri 20:00'\nstale_days = 5\n"
        notify = parse_settings(text, {}).athletes["anna"].notify
        assert (str(notify.digest), notify.stale_days) == ("fri 20:00", 5)


class TestSettingsInCode:
    """Settings built in code (tests, the demo) work as the frozen dataclasses they were."""

    def test_positional_and_replace(self, tmp_path: Path) -> None:
        """AthleteSettings takes its name positionally, and dataclasses.replace works."""
        me = AthleteSettings("me")
        folder = FolderSettings(path=tmp_path, name="samples", poll_minutes=5.0)
        changed = dataclasses.replace(me, folders=(folder,))
        assert changed.folders == (folder,)
        assert me.folders == ()
        with pytest.raises(dataclasses.FrozenInstanceError):
            me.name = "x"  # type: ignore[misc]

    def test_checked_in_code_too(self) -> None:
        """A value built in code is validated as one read from a file."""
        with pytest.raises(ValidationError, match="must be a positive number"):
            FolderSettings(path=Path("/a"), poll_minutes=0)
