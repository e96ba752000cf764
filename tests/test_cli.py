"""The command line end to end: real files, a real SQLite store, JSON shapes and exit codes."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from helpers import Cli, gpx_track

FIT = Path(__file__).parent / "data" / "fit"


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path, capsys)


def gpx(points: list[tuple[float, float, float]], sport: str | None = None) -> str:
    """A one-track GPX of (lat, lon, ele) points, one second apart from 2026-11-01 08:00."""
    return gpx_track(points, start=datetime(2026, 11, 1, 8, 0, tzinfo=UTC), sport=sport)


def straight(n: int, ele: Any) -> list[tuple[float, float, float]]:
    """n points heading north about 3 m apart, with altitude ele(i)."""
    return [(46.0 + i * 0.000027, 7.0, float(ele(i))) for i in range(n)]


@pytest.fixture
def tracks(tmp_path: Path) -> dict[str, Path]:
    """Hand-made GPX tracks of each kind, plus broken files."""
    folder = tmp_path / "tracks"
    folder.mkdir()
    made = {
        "climb.gpx": gpx(straight(2000, lambda i: 1000 + i * 0.25)),  # 6 km, +500 m
        "descent.gpx": gpx(straight(2000, lambda i: 1500 - i * 0.25)),
        "flat.gpx": gpx(straight(2000, lambda i: 400 + (i % 7) * 0.1)),
        "zeros.gpx": gpx(straight(2000, lambda i: 0.0)),
        "empty.gpx": "",
        "notes.gpx": "these are my running notes, not a track",
    }
    out = {}
    for name, text in made.items():
        (folder / name).write_text(text)
        out[name] = folder / name
    return out


class TestClassifyCommand:
    """`hillsync classify` on real device files and hand-made tracks."""

    def test_labels_and_errors_in_argument_order(self, cli: Cli, tracks: dict[str, Path]) -> None:
        """Each file gets the right label or a one-line error, in argument order, exit 3."""
        files = [
            FIT / "2013-02-06-12-11-14.fit",
            FIT / "activity-small-fenix2-run.fit",
            FIT / "compressed-speed-distance.fit",
            tracks["climb.gpx"],
            tracks["descent.gpx"],
            tracks["flat.gpx"],
            tracks["zeros.gpx"],
            tracks["empty.gpx"],
            tracks["notes.gpx"],
            cli.tmp / "missing.fit",
        ]
        code, out, err = cli("classify", *map(str, files), "--json")
        assert code == 3, err
        rows = json.loads(out)
        assert [r["file"] for r in rows] == [str(f) for f in files]
        labels = [r["label"] for r in rows]
        assert labels[:7] == ["uphill", "flat", "unknown", "uphill", "downhill", "flat", "unknown"]
        assert labels[7:] == [None, None, None]
        for row in rows[7:]:
            assert row["error"]
            assert "\n" not in row["error"]
        for row in rows[:7]:
            assert row["error"] is None
            assert set(row) >= {
                "sport",
                "distance_m",
                "elevation_gain_m",
                "elevation_loss_m",
                "uphill_m",
                "downhill_m",
                "flat_m",
            }
        assert "Traceback" not in err

    def test_device_totals_used(self, cli: Cli) -> None:
        """The hilly FIT run reports the device's own ascent (168 m) and its distance."""
        rows = cli.json("classify", str(FIT / "2013-02-06-12-11-14.fit"))
        assert rows[0]["elevation_gain_m"] == pytest.approx(168, abs=1)
        assert rows[0]["distance_m"] == pytest.approx(4835, rel=0.02)
        assert rows[0]["sport"] == "run"

    def test_multisport_is_its_run_leg(self, cli: Cli) -> None:
        """A triathlon file is described by its flat run leg."""
        rows = cli.json("classify", str(FIT / "sample_mulitple_header.fit"))
        assert rows[0]["label"] == "flat"
        assert rows[0]["distance_m"] == pytest.approx(9806, rel=0.05)

    def test_truncated_fit_is_salvaged_or_rejected_cleanly(self, cli: Cli) -> None:
        """A truncated FIT file never produces a traceback."""
        code, out, err = cli("classify", str(FIT / "activity-unexpected-eof.fit"), "--json")
        assert code in (0, 3)
        assert "Traceback" not in err
        [row] = json.loads(out)
        assert row["file"].endswith("activity-unexpected-eof.fit")
        if row["label"] is not None:
            assert row["label"] == "unknown"  # 5.7 m: too short to be flat
            assert "truncated" in row["warning"]

    def test_human_table(self, cli: Cli) -> None:
        """Without --json a table names each file and its label."""
        code, out, _ = cli("classify", str(FIT / "2013-02-06-12-11-14.fit"))
        assert code == 0
        assert "uphill" in out
        assert "2013-02-06-12-11-14.fit" in out


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    """A folder with the real runs, a ride and an indoor ride."""
    folder = tmp_path / "runs"
    folder.mkdir()
    for name in [
        "2013-02-06-12-11-14.fit",
        "activity-small-fenix2-run.fit",
        "compressed-speed-distance.fit",
        "garmin-edge-500-activity.fit",
        "sample-activity-indoor-trainer.fit",
    ]:
        shutil.copy2(FIT / name, folder / name)
    return folder


def folder_config(cli: Cli, folder: Path, extra: str = "") -> None:
    db = cli.tmp / "db" / "hillsync.db"
    cli.write_config(
        f"""
        [database]
        url = "sqlite:///{db}"

        [[sources.folder]]
        path = "{folder}"
        {extra}
        """
    )


class TestFolderSync:
    """`hillsync sync` of a folder, then `activities`, `status` and `reclassify`."""

    def test_lists_exactly_its_runs_once(self, cli: Cli, run_folder: Path) -> None:
        """Three runs are stored; the two rides are not runs; a re-sync adds nothing."""
        folder_config(cli, run_folder)
        code, out, err = cli("sync")
        assert code == 0, err + out
        runs = cli.json("activities")
        assert len(runs) == 3
        assert {r["label"] for r in runs} == {"uphill", "flat", "unknown"}
        assert all(r["sources"][0]["source"] == "folder" for r in runs)
        assert [r["start_time"] for r in runs] == sorted(r["start_time"] for r in runs)
        assert all(r["start_time"].endswith("Z") for r in runs)
        code, out, _ = cli("sync")
        assert code == 0
        assert cli.json("activities") == runs

    def test_touching_files_changes_nothing(self, cli: Cli, run_folder: Path) -> None:
        """A new mtime re-reads a file but stores no second copy."""
        folder_config(cli, run_folder)
        assert cli("sync")[0] == 0
        before = cli.json("activities")
        for f in run_folder.iterdir():
            os.utime(f, (f.stat().st_atime + 100, f.stat().st_mtime + 100))
        assert cli("sync")[0] == 0
        assert cli.json("activities") == before

    def test_damaged_file_beside_good_ones(self, cli: Cli, run_folder: Path) -> None:
        """A corrupt file is rejected once (exit 3), the others stored; the next sync is clean."""
        broken = run_folder / "broken.fit"
        broken.write_bytes(b"\x0e\x10garbage" * 10)
        os.utime(broken, (1_700_000_000, 1_700_000_000))  # not a file still being written
        folder_config(cli, run_folder)
        code, _out, err = cli("sync")
        assert code == 3
        assert "Traceback" not in err
        assert len(cli.json("activities")) == 3
        status = cli.json("status")
        assert status["activities"] == 5
        [source] = status["sources"]
        assert (source["name"], source["kind"]) == ("folder", "folder")
        assert source["athlete"] == "me"
        assert source["state"] == "ok"
        assert any(r["file"] == "broken.fit" for r in source["rejected"])
        code, _, _ = cli("sync")
        assert code == 0

    def test_reclassify_uses_stored_data(self, cli: Cli, run_folder: Path) -> None:
        """Raising the threshold relabels the hilly run without reading the files again."""
        folder_config(cli, run_folder)
        assert cli("sync")[0] == 0
        shutil.rmtree(run_folder)
        run_folder.mkdir()
        folder_config(cli, run_folder, "\n[classify]\nhilly_m_per_km = 80.0\n")
        code, _out, err = cli("reclassify")
        assert code == 0, err
        labels = sorted(r["label"] for r in cli.json("activities"))
        assert labels == ["flat", "flat", "unknown"]

    def test_status_json_shape(self, cli: Cli, run_folder: Path) -> None:
        """status --json has the documented keys before and after a sync."""
        folder_config(cli, run_folder)
        status = cli.json("status")
        assert status["sources"][0]["state"] == "never_synced"
        cli("sync")
        status = cli.json("status")
        assert set(status) >= {"sources", "activities", "pending_notifications"}
        assert set(status["sources"][0]) >= {
            "name",
            "kind",
            "athlete",
            "state",
            "last_sync",
            "next_sync",
            "last_error",
            "worker",
            "lease_expires",
        }

    def test_unknown_stored_balance_state(self, cli: Cli, run_folder: Path) -> None:
        """A balance state this version does not know (another version wrote it) is read as
        none: `balance` still answers, exit 0, instead of failing on it."""
        import sqlite3

        folder_config(cli, run_folder)
        assert cli("sync")[0] == 0
        with sqlite3.connect(cli.tmp / "db" / "hillsync.db") as conn:
            changed = conn.execute("UPDATE balance_state SET status = 'wobbly'").rowcount
        assert changed == 1
        code, out, err = cli("balance")
        assert code == 0, err
        assert "status: insufficient_data" in out
        assert cli.json("balance")["status"] == "insufficient_data"

    def test_balance_json_shape(self, cli: Cli, run_folder: Path) -> None:
        """balance --json has the documented keys; three runs are insufficient data."""
        folder_config(cli, run_folder)
        cli("sync")
        report = cli.json("balance", "--at", "2013-02-28")
        assert report["status"] == "insufficient_data"
        assert set(report["by_label"]) == {"uphill", "downhill", "flat", "unknown"}
        assert report["goal"]["profile"] == "road-marathon"
        assert set(report) >= {
            "athlete",
            "window_start",
            "window_end",
            "runs",
            "distance_m",
            "hill_share",
            "downhill_share",
            "vertical_m",
            "goal",
            "status",
            "advice",
        }


class TestErrors:
    """Expected failures: one clear line, the right exit code, no traceback."""

    def test_bad_config_reports_every_problem(self, cli: Cli) -> None:
        """Two bad keys give two lines with their key paths and exit 2."""
        cli.write_config(
            """
            [goal]
            hill_share = [0.4, 0.3]
            [classify]
            grade_pct = "steep"
            """
        )
        code, _out, err = cli("status")
        assert code == 2
        assert "goal.hill_share" in err
        assert "classify.grade_pct" in err
        assert "Traceback" not in err

    def test_missing_explicit_config(self, cli: Cli) -> None:
        """A --config that does not exist is a config error."""
        code, _, err = cli("--config", str(cli.tmp / "nope.toml"), "status")
        assert code == 2
        assert "nope.toml" in err

    def test_unknown_source(self, cli: Cli, run_folder: Path) -> None:
        """--source naming nothing configured is a usage error."""
        folder_config(cli, run_folder)
        code, _, err = cli("sync", "--source", "garmin")
        assert code == 2
        assert "garmin" in err

    def test_secret_never_printed(self, cli: Cli, run_folder: Path) -> None:
        """A notification URL's secret does not reach the output of sync or status."""
        secret = "tk_ultrasecret_value_42"
        cli.env["HILLSYNC_NOTIFY_URL"] = f"json://127.0.0.1:9/{secret}"
        folder_config(cli, run_folder, '\n[notify]\nurls = ["env:HILLSYNC_NOTIFY_URL"]\n')
        _code, out, err = cli("-v", "sync")
        _code2, out2, err2 = cli("status", "--json")
        assert secret not in out + err + out2 + err2


class TestInit:
    """`hillsync init` writes the example config and creates the database."""

    def test_writes_config_where_it_is_looked_for(self, cli: Cli) -> None:
        """With no config, init writes one under XDG_CONFIG_HOME and it loads."""
        code, _out, err = cli("init")
        assert code == 0, err
        written = Path(cli.env["XDG_CONFIG_HOME"]) / "hillsync" / "config.toml"
        assert written.exists()
        assert "[goal]" in written.read_text()
        assert cli("status")[0] == 0


class TestDemo:
    """`hillsync demo` is the main job on bundled data."""

    def test_demo_warns(self, cli: Cli) -> None:
        """The demo stores its runs, shows the hill share and a warning, exit 0."""
        code, out, err = cli("demo")
        assert code == 0, err
        assert "runs stored" in out
        assert "hill share" in out
        assert "notification:" in out
