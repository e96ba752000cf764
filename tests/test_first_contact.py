"""A new user's first commands: a missing optional driver, no terminal for a password."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hillsync.cli import main


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }


class TestFirstContact:
    """What a first command says when something is missing, in one line, exit 2."""

    def test_postgres_without_psycopg(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A PostgreSQL URL without psycopg installed names the extra to install."""
        monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg fails
        config = tmp_path / "config.toml"
        config.write_text('[database]\nurl = "postgresql+psycopg://me@127.0.0.1:5999/runs"\n')
        code = main(["--config", str(config), "status"], environ=_env(tmp_path))
        err = capsys.readouterr().err
        assert code == 2
        assert "hillsync[postgres]" in err
        assert len(err.strip().splitlines()) == 1
        assert "Traceback" not in err

    def test_garmin_password_without_terminal(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`connect garmin --email X` with no terminal points to the variable and --tokens."""
        assert not sys.stdin.isatty()
        code = main(["connect", "garmin", "--email", "me@example.org"], environ=_env(tmp_path))
        err = capsys.readouterr().err
        assert code == 2
        assert "HILLSYNC_GARMIN_PASSWORD" in err
        assert "--tokens" in err
        assert "EOFError" not in err
