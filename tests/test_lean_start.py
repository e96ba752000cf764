"""Lean start: commands import only what they use (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import child_env

#: Run in a child: the command, then the heavy modules it left in sys.modules.
PROBE = """
import json, sys
from hillsync.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = ("numpy", "sqlalchemy.orm", "matplotlib", "lxml", "fitdecode", "apprise", "rich",
         "pygments", "pydantic", "alembic", "stravalib", "garminconnect")
print(json.dumps([m for m in heavy if m in sys.modules]), file=sys.stderr)
"""


def imported(tmp: Path, *args: str) -> list[str]:
    """The heavy modules a fresh `hillsync ARGS` process imported."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=child_env(tmp),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    last = proc.stderr.strip().splitlines()[-1]
    found: list[str] = json.loads(last)
    return found


class TestLeanStart:
    """`--help`, `status` and `balance` never load the libraries they do not use."""

    def test_help_imports_no_heavy_library(self, tmp_path: Path) -> None:
        """`--help` loads neither numpy, the ORM, matplotlib, nor any reader or client."""
        found = set(imported(tmp_path, "--help"))
        assert not found & {"numpy", "sqlalchemy.orm", "matplotlib", "lxml", "fitdecode"}, found
        assert not found & {"apprise", "rich", "pygments", "stravalib", "garminconnect"}, found

    def _config(self, tmp_path: Path) -> Path:
        config = tmp_path / "config.toml"
        config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "h.db"}"\n')
        imported(tmp_path, "--config", str(config), "db", "upgrade")  # as after `init`
        return config

    def test_balance_skips_numpy_and_the_readers(self, tmp_path: Path) -> None:
        """`balance` loads the store, never numpy, a reader or a client."""
        config = self._config(tmp_path)
        for command in (["balance"], ["balance", "--json"]):
            found = set(imported(tmp_path, "--config", str(config), *command))
            assert found <= {"sqlalchemy.orm", "pydantic"}, (command, found)

    def test_status_skips_numpy_and_the_readers(self, tmp_path: Path) -> None:
        """`status` loads the store, never numpy, a reader or a client."""
        config = self._config(tmp_path)
        found = set(imported(tmp_path, "--config", str(config), "status"))
        assert found <= {"sqlalchemy.orm", "pydantic"}, found


#: Run in a child: one quiet daemon cycle over a folder whose files are all known.
IDLE_PROBE = """
import json, os, sys
from hillsync.config import load_settings
from hillsync.daemon import Daemon
from pathlib import Path
daemon = Daemon(lambda: load_settings(Path(sys.argv[1]), os.environ), environ=os.environ)
settings = daemon.load_settings()
db = daemon._open(settings)
daemon.cycle(settings, db)
db.close()
heavy = ("numpy", "matplotlib", "lxml", "fitdecode", "apprise", "rich", "pygments",
         "stravalib", "garminconnect", "sqlalchemy.dialects.postgresql")
print(json.dumps([m for m in heavy if m in sys.modules]), file=sys.stderr)
"""


class TestIdleDaemon:
    """An idle daemon's cycle (nothing new in its folder) loads no reader, numpy or client."""

    def test_quiet_cycle_stays_lean(self, tmp_path: Path) -> None:
        """After a cycle that finds every file known, no heavy library is in memory."""
        runs = tmp_path / "runs"
        runs.mkdir()
        config = tmp_path / "config.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "h.db"}"\n\n'
            f'[[sources.folder]]\nname = "runs"\npath = "{runs}"\n'
        )
        imported(tmp_path, "--config", str(config), "sync")  # the folder is known now
        proc = subprocess.run(
            [sys.executable, "-c", IDLE_PROBE, str(config)],
            env=child_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        found = json.loads(proc.stderr.strip().splitlines()[-1])
        assert found == [], found


class TestModelImportsNumpyLazily:
    """hillsync.model imports numpy inside the functions that use it, never at the top."""

    def test_every_numpy_use_has_its_local_import(self) -> None:
        """A function naming `np` imports it itself (mypy cannot see a missing one)."""
        import ast

        import hillsync.model

        tree = ast.parse(Path(hillsync.model.__file__).read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            uses = any(isinstance(n, ast.Name) and n.id == "np" for n in ast.walk(node))
            imports = any(
                isinstance(n, ast.Import) and any(a.asname == "np" for a in n.names)
                for n in ast.walk(node)
            )
            assert imports or not uses, f"model.{node.name} uses np without importing it"
