"""Hill training (issue 16): terrain volume, hill sessions, incline treadmill, course targets."""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import design
import helpers
from helpers import TRACK_START, gpx_track, straight_route
from hillsync.balance import evaluate, km_effort, terrain_volume
from hillsync.model import Goal, GoalProfile, RunForBalance, Terrain

AT = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
#: Metres per degree of latitude (on the mean Earth sphere hillsync uses).
NOV20 = "2026-11-20T07:00:00+00:00"
M_PER_DEG = 6_371_008.8 * math.pi / 180


def marathon_goal() -> Goal:
    lo, hi, dmax = design.GOAL_BANDS["road-marathon"]
    return Goal(GoalProfile.ROAD_MARATHON, lo, hi, dmax)


def route_gpx(
    length_m: float, ele: Callable[[float], float], *, step_m: float = 5.0, start: str = ""
) -> str:
    """A straight GPX route heading north, one point every `step_m`, altitude ele(distance).

    Points are 2 s apart (a 2.5 m/s jog); `start` is the ISO time of the first point.
    """
    t0 = datetime.fromisoformat(start) if start else TRACK_START
    return gpx_track(
        straight_route(length_m, ele, step_m=step_m), start=t0, step_s=2.0, sport="running"
    )


class Cli(helpers.Cli):
    """The CLI harness with a synced folder of runs and a config naming it."""

    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
        super().__init__(tmp, capsys)
        self.folder = tmp / "runs"
        self.folder.mkdir()

    def put(self, name: str, text: str) -> Path:
        """Write a file into the synced folder, dated a day before the track start."""
        path = self.folder / name
        path.write_text(text)
        old = (TRACK_START - timedelta(days=1)).timestamp()
        os.utime(path, (old, old))
        return path

    def configure(self, extra: str = "") -> None:
        db = self.tmp / "db" / "hillsync.db"
        self.write_config(
            textwrap.dedent(
                f"""
                [database]
                url = "sqlite:///{db}"

                [[sources.folder]]
                path = "{self.folder}"
                """
            )
            + textwrap.dedent(extra)
        )


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path, capsys)


class TestTerrainVolume:
    """Terrain volume: 100 m segment metres, vertical gain and loss, ITRA km-effort."""

    def test_km_effort_is_itra_formula(self) -> None:
        """ITRA km-effort of 42.195 km with 2,000 m D+ is 42.195 + 20 = 62.195."""
        assert km_effort(42_195.0, 2_000.0) == pytest.approx(62.195)

    def test_window_sums_segments_and_totals(self) -> None:
        """The window adds the runs' segment splits, gain and loss; km-effort uses all runs."""
        runs = [
            RunForBalance(AT - timedelta(days=1), 10_000.0, Terrain.UPHILL, 300.0, 280.0,
                          uphill_m=3_000.0, downhill_m=2_500.0, flat_m=4_500.0),
            RunForBalance(AT - timedelta(days=2), 12_000.0, Terrain.FLAT, 40.0, 40.0,
                          flat_m=12_000.0),
            RunForBalance(AT - timedelta(days=3), 8_000.0, Terrain.UNKNOWN, 400.0, None),
        ]  # fmt: skip
        t = terrain_volume(runs)
        assert (t.uphill_m, t.downhill_m, t.flat_m) == (3_000.0, 2_500.0, 16_500.0)
        assert (t.gain_m, t.loss_m) == (740.0, 320.0)
        assert t.km_effort == pytest.approx(30.0 + 7.4)

    def test_report_counts_only_the_window(self) -> None:
        """A run before the window adds nothing to the terrain volume."""
        runs = [
            RunForBalance(AT - timedelta(days=1), 10_000.0, Terrain.FLAT, 20.0, 20.0,
                          flat_m=10_000.0),
            RunForBalance(AT - timedelta(days=40), 10_000.0, Terrain.UPHILL, 500.0, 500.0,
                          uphill_m=5_000.0),
        ]  # fmt: skip
        report = evaluate(runs, marathon_goal(), athlete="me", at=AT)
        assert report.terrain.uphill_m == 0.0
        assert report.terrain.km_effort == pytest.approx(10.0 + 0.2)

    def test_balance_json_and_text_from_built_routes(self, cli: Cli) -> None:
        """A 6 km climb at 8 % and a flat 6 km: every segment of each on its side, 17 km-effort."""
        cli.put("climb.gpx", route_gpx(6_000, lambda d: 500 + 0.08 * d, start=NOV20))
        cli.put("flat.gpx", route_gpx(6_000, lambda d: 300.0, start="2026-11-21T07:00:00+00:00"))
        cli.configure()
        assert cli("sync")[0] == 0
        report = cli.json("balance", "--at", "2026-11-22")
        terrain = report["terrain_m"]
        # 100 m segments inside the smoothing's reach of the climb's ends may fall below 3 %.
        assert terrain["uphill"] == pytest.approx(6_000, abs=150)
        assert terrain["downhill"] == 0
        assert terrain["flat"] == pytest.approx(6_000, abs=150)
        assert report["loss_m"] == pytest.approx(0, abs=5)
        # ITRA: 12 km + 480 m / 100
        assert report["km_effort"] == pytest.approx(12.0 + 4.8, abs=0.2)
        code, out, _ = cli("balance", "--at", "2026-11-22")
        assert code == 0
        assert "km-effort 16.8" in out
