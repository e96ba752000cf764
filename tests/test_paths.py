"""Tests of where hillsync keeps its config, state and data."""

from __future__ import annotations

import stat
from pathlib import Path

from hillsync.paths import (
    config_dir,
    credentials_dir,
    data_dir,
    default_database_url,
    sqlite_url,
    state_dir,
    token_dir,
    token_path,
    write_private_file,
)

HOME = {"HOME": "/home/ann"}


class TestXdgDefaults:
    """Without systemd variables, the XDG base directories apply."""

    def test_home_fallbacks(self) -> None:
        """With no XDG variables, the usual dot-folders under $HOME are used."""
        assert state_dir(HOME) == Path("/home/ann/.local/state/hillsync")
        assert data_dir(HOME) == Path("/home/ann/.local/share/hillsync")
        assert config_dir(HOME) == Path("/home/ann/.config/hillsync")
        assert credentials_dir(HOME) is None

    def test_xdg_variables(self) -> None:
        """XDG_*_HOME variables move each folder."""
        env = {**HOME, "XDG_STATE_HOME": "/s", "XDG_DATA_HOME": "/d", "XDG_CONFIG_HOME": "/c"}
        assert state_dir(env) == Path("/s/hillsync")
        assert data_dir(env) == Path("/d/hillsync")
        assert config_dir(env) == Path("/c/hillsync")

    def test_relative_xdg_ignored(self) -> None:
        """A relative XDG value is invalid by the spec and falls back to the default."""
        assert data_dir({**HOME, "XDG_DATA_HOME": "rel/data"}) == Path(
            "/home/ann/.local/share/hillsync"
        )


class TestSystemd:
    """systemd's *_DIRECTORY variables win over XDG."""

    def test_systemd_directories(self) -> None:
        """STATE_DIRECTORY holds state and data; CONFIGURATION_DIRECTORY the config."""
        env = {
            **HOME,
            "XDG_STATE_HOME": "/s",
            "STATE_DIRECTORY": "/var/lib/hillsync",
            "CONFIGURATION_DIRECTORY": "/etc/hillsync",
            "CREDENTIALS_DIRECTORY": "/run/credentials/hillsync.service",
        }
        assert state_dir(env) == Path("/var/lib/hillsync")
        assert data_dir(env) == Path("/var/lib/hillsync")
        assert config_dir(env) == Path("/etc/hillsync")
        assert credentials_dir(env) == Path("/run/credentials/hillsync.service")

    def test_colon_list_takes_first(self) -> None:
        """With several directories in a colon list, the first one is the unit's own."""
        assert state_dir({"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}) == Path("/var/lib/a")


class TestDerived:
    """The database URL and token locations follow the directories."""

    def test_default_database_url(self) -> None:
        """The default database is SQLite in the data directory."""
        assert default_database_url(HOME) == "sqlite:////home/ann/.local/share/hillsync/hillsync.db"

    def test_sqlite_url_survives_any_path(self) -> None:
        """Spaces, %, ? and # in a folder name come back unchanged from SQLAlchemy's parser."""
        from sqlalchemy.engine import make_url

        for name in ("my runs", "50%", "what?", "#1", "a+b@c"):
            path = Path("/home/ann") / name / "hillsync.db"
            assert make_url(sqlite_url(path)).database == str(path)

    def test_token_locations(self) -> None:
        """Tokens live per athlete and kind under the state directory."""
        env = {"STATE_DIRECTORY": "/var/lib/hillsync"}
        assert token_path(env, "me", "strava") == Path("/var/lib/hillsync/tokens/me/strava.json")
        assert token_dir(env, "anna", "garmin") == Path("/var/lib/hillsync/tokens/anna/garmin")


class TestWritePrivateFile:
    """write_private_file writes atomically with private permissions."""

    def test_modes(self, tmp_path: Path) -> None:
        """The file is 0600 and its new folder 0700, with the content written."""
        target = tmp_path / "tokens" / "me" / "strava.json"
        write_private_file(target, b"{}")
        assert target.read_bytes() == b"{}"
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
        assert [p.name for p in target.parent.iterdir()] == ["strava.json"]
