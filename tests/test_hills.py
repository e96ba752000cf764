"""Hill training (issue 16): terrain volume, hill sessions, incline treadmill, course targets."""

from __future__ import annotations

import base64
import importlib
import io
import json
import math
import os
import sqlite3
import struct
import textwrap
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import fitdecode
import numpy as np
import pytest
from sqlalchemy import select

from hillsync import alerts
from hillsync.balance import (
    digest_due,
    digest_message,
    downhill_week,
    evaluate,
    km_effort,
    next_digest,
    ramp_message,
    report_as_json,
    terrain_volume,
    warning_message,
)
from hillsync.classify import classify
from hillsync.cli import main
from hillsync.config import load_settings
from hillsync.course import targets as course_targets
from hillsync.coursefile import CourseReader, load_course
from hillsync.errors import ConfigError
from hillsync.hills import detect
from hillsync.model import (
    GOAL_BANDS,
    PROFILE_STEP_M,
    BalanceStatus,
    ClassifyParams,
    Goal,
    GoalProfile,
    HillRepeats,
    Profile,
    RunForBalance,
    Summary,
    Terrain,
)
from hillsync.store.db import Database, open_database
from hillsync.store.tables import Athlete, OutboxMessage
from hillsync.worker import Worker

AT = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
# garminconnect's FIT encoder (an untyped corner of a typed package): builds test FIT files.
_GARMIN_FIT: Any = importlib.import_module("garminconnect.fit")
FitBaseType: Any = _GARMIN_FIT.FitBaseType
FitEncoder: Any = _GARMIN_FIT.FitEncoder
#: Metres per degree of latitude (on the mean Earth sphere hillsync uses).
NOV20 = "2026-11-20T07:00:00+00:00"
M_PER_DEG = 6_371_008.8 * math.pi / 180


def marathon_goal() -> Goal:
    lo, hi, dmax = GOAL_BANDS[GoalProfile.ROAD_MARATHON]
    return Goal(GoalProfile.ROAD_MARATHON, lo, hi, dmax)


def route_gpx(
    length_m: float, ele: Callable[[float], float], *, step_m: float = 5.0, start: str = ""
) -> str:
    """A straight GPX route heading north, one point every `step_m`, altitude ele(distance).

    Points are 2 s apart (a 2.5 m/s jog); `start` is the ISO time of the first point.
    """
    t0 = datetime.fromisoformat(start) if start else datetime(2026, 11, 20, 7, 0, tzinfo=UTC)
    n = int(length_m / step_m) + 1
    pts = []
    for i in range(n):
        d = i * step_m
        t = t0 + timedelta(seconds=2 * i)
        pts.append(
            f'<trkpt lat="{46.0 + d / M_PER_DEG:.7f}" lon="7.0"><ele>{ele(d):.2f}</ele>'
            f"<time>{t:%Y-%m-%dT%H:%M:%SZ}</time></trkpt>"
        )
    return (
        '<?xml version="1.0"?><gpx version="1.1" creator="test" '
        'xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk><type>running</type><trkseg>{''.join(pts)}</trkseg></trk></gpx>"
    )


def _fit_message(f: Any, local: int, global_num: int, content: list[tuple[Any, ...]]) -> None:
    """Append a definition and one data message to garminconnect's FIT encoder `f`."""
    fields, values = f._build_content_block(content)
    fixed = struct.pack("BBHB", 0, 0, global_num, len(content))
    f.buf.write(f.record_header(definition=True, lmsg_type=local) + fixed + fields)
    f.buf.write(f.record_header(lmsg_type=local) + values)


def treadmill_fit(start: datetime, distance_m: float, seconds: int, ascent_m: int | None) -> bytes:
    """A FIT treadmill run (sport running, sub_sport treadmill, no position, no altitude).

    Its session reports `ascent_m` as total_ascent (None: the field is left invalid), as a
    watch on an inclined treadmill does from the belt's incline.
    """
    f: Any = FitEncoder()
    f.FILE_TYPE = 4  # an activity file
    f.write_file_info(serial_number=1, time_created=start, manufacturer=1, product=1, number=0)
    ts = int(f.timestamp(start))
    for i in range(0, seconds + 1, 10):
        _fit_message(f, 3, 20, [  # record: timestamp, distance (cm), speed (mm/s)
            (253, FitBaseType.uint32, ts + i, None),
            (5, FitBaseType.uint32, distance_m * i / seconds, 100),
            (6, FitBaseType.uint16, distance_m / seconds, 1000),
        ])  # fmt: skip
    _fit_message(f, 4, 18, [  # session
        (253, FitBaseType.uint32, ts + seconds, None),
        (2, FitBaseType.uint32, ts, None),
        (5, FitBaseType.enum, 1, None),  # running
        (6, FitBaseType.enum, 1, None),  # treadmill
        (7, FitBaseType.uint32, seconds, 1000),
        (8, FitBaseType.uint32, seconds, 1000),
        (9, FitBaseType.uint32, distance_m, 100),
        (22, FitBaseType.uint16, ascent_m, None),
        (23, FitBaseType.uint16, 0 if ascent_m is not None else None, None),
    ])  # fmt: skip
    f.finish()
    data: bytes = f.getvalue()
    return data


class Cli:
    """Runs `hillsync` in-process with its own folders and a config."""

    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp = tmp
        self.capsys = capsys
        self.config = tmp / "config.toml"
        self.folder = tmp / "runs"
        self.folder.mkdir()
        self.env = {
            "HOME": str(tmp / "home"),
            "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
            "XDG_STATE_HOME": str(tmp / "xdg-state"),
            "XDG_DATA_HOME": str(tmp / "xdg-data"),
        }

    def put(self, name: str, text: str) -> Path:
        """Write a file into the synced folder, dated 2026-11-01 (complete, not being written)."""
        path = self.folder / name
        path.write_text(text)
        old = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
        os.utime(path, (old, old))
        return path

    def put_bytes(self, name: str, data: bytes) -> Path:
        """Write a binary file into the synced folder, dated 2026-11-01."""
        path = self.folder / name
        path.write_bytes(data)
        old = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
        os.utime(path, (old, old))
        return path

    def configure(self, extra: str = "") -> None:
        db = self.tmp / "db" / "hillsync.db"
        self.config.write_text(
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

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = main(["--config", str(self.config), *args], environ=self.env)
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> Any:
        code, out, err = self(*args, "--json")
        assert code == 0, err
        return json.loads(out)


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


def repeats_route(
    n: int = 8, up_m: float = 150.0, grade: float = 0.06, warmup_m: float = 3_000.0
) -> tuple[float, Callable[[float], float]]:
    """A flat run with n hill repeats: warm-up, n x (up_m up, up_m back down, 50 m), cool-down.

    Returns the route's length and its altitude as a function of distance.
    """
    cycle = 2 * up_m + 50.0
    length = warmup_m + n * cycle + 3_000.0

    def ele(d: float) -> float:
        k = d - warmup_m
        if k < 0 or k >= n * cycle:
            return 250.0
        k %= cycle
        if k < up_m:
            return 250.0 + grade * k
        if k < 2 * up_m:
            return 250.0 + grade * (2 * up_m - k)
        return 250.0

    return length, ele


def profile_of(length: float, ele: Callable[[float], float]) -> Profile:
    d = np.arange(0.0, length + 1e-9, PROFILE_STEP_M)
    return Profile(np.array([ele(x) for x in d]), float(d[-1]))


def hilly_route(d: float) -> float:
    """10 km: 2 km flat, a 3 km climb at 6 %, the 3 km descent, 2 km flat."""
    if d < 2_000:
        return 300.0
    if d < 5_000:
        return 300.0 + 0.06 * (d - 2_000)
    if d < 8_000:
        return 480.0 - 0.06 * (d - 5_000)
    return 300.0


class TestHillSessionDetection:
    """Hill-repeat sessions found in built profiles of known geometry."""

    def test_eight_repeats_found(self) -> None:
        """8 repeats of 150 m at 6 % after a 3 km warm-up: 8 efforts of about 150 m at 6 %."""
        found = detect(profile_of(*repeats_route()))
        assert found is not None
        assert found.count == 8
        assert found.length_m == pytest.approx(150, abs=20)
        assert found.grade_pct == pytest.approx(6.0, abs=0.5)

    def test_long_climb_is_no_session(self) -> None:
        """One 3 km climb and its descent hold no repeat."""
        assert detect(profile_of(10_000, hilly_route)) is None

    def test_three_repeats_are_too_few(self) -> None:
        """Three repeats are not a session (4 or more are)."""
        assert detect(profile_of(*repeats_route(n=3))) is None
        assert detect(profile_of(*repeats_route(n=4))) is not None

    def test_gentle_or_long_efforts_are_no_repeats(self) -> None:
        """Efforts at 2 % or of 600 m are outside the 60-400 m, 4 % rule."""
        assert detect(profile_of(*repeats_route(grade=0.02))) is None
        assert detect(profile_of(*repeats_route(up_m=600.0))) is None

    def test_repeats_without_warm_up_do_not_count(self) -> None:
        """Repeats starting in the first kilometre are warm-up, not a session."""
        assert detect(profile_of(*repeats_route(n=5, warmup_m=0.0))) is None

    def test_rolling_road_is_no_session(self) -> None:
        """Irregular rolling hills on a 12 km road are no repeat session."""
        rolling = profile_of(12_000, lambda d: 300 + 10 * math.sin(d / 300) + 6 * math.sin(d / 137))
        assert detect(rolling) is None


class TestHillSessionsStored:
    """hill_repeats per run in activities --json, kept by reclassify."""

    def test_flat_run_with_repeats_and_hilly_run_without(self, cli: Cli) -> None:
        """The repeats run is still flat but holds 8 repeats; the hilly run holds none."""
        length, ele = repeats_route()
        cli.put("repeats.gpx", route_gpx(length, ele, start=NOV20))
        cli.put("hilly.gpx", route_gpx(10_000, hilly_route, start="2026-11-22T07:00:00+00:00"))
        cli.configure()
        assert cli("sync")[0] == 0
        runs = cli.json("activities")
        assert [r["label"] for r in runs] == ["flat", "uphill"]
        repeats = runs[0]["hill_repeats"]
        assert repeats["count"] == 8
        assert repeats["length_m"] == pytest.approx(150, abs=20)
        assert repeats["grade_pct"] == pytest.approx(6.0, abs=0.5)
        assert runs[1]["hill_repeats"] is None

        # reclassify recomputes it from the stored profile alone
        with sqlite3.connect(cli.tmp / "db" / "hillsync.db") as conn:
            conn.execute("UPDATE activities SET hill_repeats = NULL")
            conn.execute("UPDATE runs SET hill_repeats = NULL")
        assert cli("reclassify")[0] == 0
        assert cli.json("activities")[0]["hill_repeats"] == repeats


def flat_run(days_ago: float, km: float = 10.0, **kw: Any) -> RunForBalance:
    return RunForBalance(AT - timedelta(days=days_ago), km * 1000, Terrain.FLAT, 30.0, 30.0, **kw)


SESSION = HillRepeats(count=8, length_m=150.0, grade_pct=6.0)


class TestHillSessionsInBalance:
    """The window's hill sessions: counted, dated in the low advice, and the weekly rule."""

    def test_low_advice_says_when_the_last_session_was(self) -> None:
        """Flat runs only, one session 40 days ago: low, and the advice gives its date."""
        runs = [flat_run(d) for d in (1, 3, 5, 8, 12)] + [flat_run(40, hill_repeats=SESSION)]
        report = evaluate(runs, marathon_goal(), athlete="me", at=AT)
        assert report.status is BalanceStatus.LOW
        assert report.hill_sessions.count == 0
        assert "2026-10-21 (40 days ago)" in report.advice
        assert report_as_json(report)["hill_sessions"] == {"count": 0, "last": "2026-10-21"}

    def test_no_session_at_all_is_said(self) -> None:
        """Without any session the low advice says there was none in the looked-at days."""
        report = evaluate([flat_run(d) for d in (1, 3, 5, 8)], marathon_goal(), athlete="me", at=AT)
        assert report.status is BalanceStatus.LOW
        assert "No hill-repeat session in the last 56 days" in report.advice

    def test_weekly_sessions_are_not_low(self) -> None:
        """Four sessions in 28 days inside flat runs: ok, whatever the run labels say."""
        runs = [flat_run(d, hill_repeats=SESSION) for d in (2, 9, 16, 23)] + [flat_run(4)]
        report = evaluate(runs, marathon_goal(), athlete="me", at=AT)
        assert report.hill_share == 0.0
        assert report.hill_sessions.count == 4
        assert report.status is BalanceStatus.OK
        assert "hill-repeat sessions" in report.advice

    def test_fewer_than_weekly_sessions_stay_low(self) -> None:
        """Three sessions in 28 days are less than one a week: still low."""
        runs = [flat_run(d, hill_repeats=SESSION) for d in (2, 9, 16)] + [flat_run(4)]
        report = evaluate(runs, marathon_goal(), athlete="me", at=AT)
        assert report.status is BalanceStatus.LOW
        assert "2026-11-28 (2 days ago)" in report.advice


class TestInclineTreadmill:
    """An indoor run is uphill when its device reports enough ascent, else unknown."""

    def test_fit_reports_what_was_built(self) -> None:
        """fitdecode reads the built file back: a treadmill run of 8 km with 420 m of ascent."""
        data = treadmill_fit(datetime(2026, 11, 25, 18, tzinfo=UTC), 8_000.0, 2_880, 420)
        with fitdecode.FitReader(io.BytesIO(data), check_crc=fitdecode.CrcCheck.RAISE) as fit:
            sessions = [
                m for m in fit if isinstance(m, fitdecode.FitDataMessage) and m.name == "session"
            ]
        assert sessions[0].get_value("sub_sport") == "treadmill"
        assert sessions[0].get_value("total_ascent") == 420

    def test_inclined_treadmill_is_uphill(self, cli: Cli) -> None:
        """420 m up over 8 km is 52 m/km (>= 15): uphill; the flat treadmill run stays unknown."""
        start = datetime(2026, 11, 25, 18, tzinfo=UTC)
        cli.put_bytes("incline.fit", treadmill_fit(start, 8_000.0, 2_880, 420))
        cli.put_bytes("belt.fit", treadmill_fit(start + timedelta(days=1), 8_000.0, 2_880, None))
        cli.configure()
        rows = {Path(r["file"]).name: r for r in cli.json("classify", *sorted(
            str(p) for p in cli.folder.iterdir()))}  # fmt: skip
        assert rows["incline.fit"]["label"] == "uphill"
        assert rows["incline.fit"]["elevation_gain_m"] == 420
        assert rows["belt.fit"]["label"] == "unknown"
        assert cli("sync")[0] == 0
        runs = cli.json("activities")
        assert [(r["sport"], r["label"]) for r in runs] == [
            ("treadmill", "uphill"),
            ("treadmill", "unknown"),
        ]

    def test_little_ascent_stays_unknown(self) -> None:
        """A treadmill run reporting 40 m over 8 km (5 m/km) is not uphill, and never flat."""
        c = classify(
            Summary(sport="treadmill", distance_m=8_000.0, reported_gain_m=40.0, indoor=True),
            None,
            ClassifyParams(),
        )
        assert c.label is Terrain.UNKNOWN


def descending_course(d: float) -> float:
    """21 km: 8 km flat at 900 m, a 3 km descent at 8 % (240 m), 10 km flat at 660 m."""
    if d < 8_000:
        return 900.0
    if d < 11_000:
        return 900.0 - 0.08 * (d - 8_000)
    return 660.0


def mountain_course(d: float) -> float:
    """20 km: 4 km flat, a 6 km climb at 6 % (360 m), the 6 km descent, 4 km flat."""
    if d < 4_000:
        return 1_000.0
    if d < 10_000:
        return 1_000.0 + 0.06 * (d - 4_000)
    if d < 16_000:
        return 1_360.0 - 0.06 * (d - 10_000)
    return 1_000.0


def terrain_run(
    days_ago: float, label: Terrain, km: float = 10.0, down_km: float = 0.0
) -> RunForBalance:
    """A run whose 100 m segments are `down_km` downhill, the rest flat."""
    return RunForBalance(
        AT - timedelta(days=days_ago), km * 1000, label, 50.0, 50.0,
        downhill_m=down_km * 1000, flat_m=(km - down_km) * 1000,
    )  # fmt: skip


def in_band_history(down_km: float = 0.0) -> list[RunForBalance]:
    """Five runs, 50 km, 20 % of them uphill runs: inside the road-marathon band (10-25 %)."""
    return [
        terrain_run(1, Terrain.UPHILL, down_km=down_km),
        *(terrain_run(d, Terrain.FLAT) for d in (3, 6, 9, 12)),
    ]


class TestCourseTargets:
    """Targets from the race course: band, vertical per week, downhill minimum."""

    @pytest.fixture
    def course_file(self, tmp_path: Path) -> Callable[[Callable[[float], float], float], Path]:
        def make(ele: Callable[[float], float], length: float) -> Path:
            path = tmp_path / "race.gpx"
            path.write_text(route_gpx(length, ele))
            return path

        return make

    def test_descending_course_figures(self, course_file: Any) -> None:
        """The descending course measures as built: 21 km, 240 m down, 3 km of it descending."""
        figures = load_course(course_file(descending_course, 21_000), ClassifyParams())
        assert figures.distance_m == pytest.approx(21_000, abs=10)
        assert figures.loss_m == pytest.approx(240, abs=10)
        assert figures.gain_m == pytest.approx(0, abs=5)
        assert figures.downhill_m == pytest.approx(3_000, abs=200)
        assert figures.longest_descent_m == pytest.approx(240, abs=10)
        assert figures.longest_descent_length_m == pytest.approx(3_000, abs=200)

    def test_descending_course_sets_a_downhill_minimum(self, course_file: Any) -> None:
        """3 of 21 km descending (14 %): a minimum of half that; downhill_low on flat running."""
        figures = load_course(course_file(descending_course, 21_000), ClassifyParams())
        targets = course_targets(figures, marathon_goal(), AT.date())
        assert targets.descending
        assert targets.downhill_share_min == pytest.approx(0.5 * 3 / 21, abs=0.01)
        # the course climbs too little to move the profile's band
        assert (targets.hill_share_min, targets.hill_share_max) == (0.10, 0.25)
        assert "downhill_share_min" in targets.from_course
        assert "hill_share" not in targets.from_course

        flat = evaluate(in_band_history(), marathon_goal(), athlete="me", at=AT, course=targets)
        assert flat.status is BalanceStatus.DOWNHILL_LOW
        assert "repeated-bout" in flat.advice
        doc = report_as_json(flat)
        assert doc["status"] == "downhill_low"
        assert doc["course"]["descending"] is True
        assert doc["course"]["targets"]["downhill_share_min"] == pytest.approx(0.0714, abs=0.01)
        message = warning_message(flat, None)
        assert message is not None
        assert message.kind == "balance_downhill_low"
        assert "race.gpx" in message.body

        # 5 of 50 km on descents (10 %) is enough
        prepared = in_band_history(down_km=5.0)
        ok = evaluate(prepared, marathon_goal(), athlete="me", at=AT, course=targets)
        assert ok.status is BalanceStatus.OK

    def test_config_minimum_without_course(self) -> None:
        """`[goal] downhill_share_min` alone asks for downhill preparation too."""
        goal = replace(marathon_goal(), downhill_share_min=0.05)
        assert evaluate(in_band_history(), goal, athlete="me", at=AT).status is (
            BalanceStatus.DOWNHILL_LOW
        )

    def test_taper_silences_downhill_low(self) -> None:
        """Within 10 days of the race it is too late to prepare: no downhill_low."""
        goal = replace(
            marathon_goal(), downhill_share_min=0.05, race_date=(AT + timedelta(days=5)).date()
        )
        assert evaluate(in_band_history(), goal, athlete="me", at=AT).status is BalanceStatus.OK

    def test_course_derived_band(self, course_file: Any) -> None:
        """6 of 20 km climbing: a band centred on 30 % as wide as the profile's (15 points)."""
        figures = load_course(course_file(mountain_course, 20_000), ClassifyParams())
        assert figures.uphill_m == pytest.approx(6_000, abs=200)
        assert figures.longest_climb_m == pytest.approx(360, abs=10)
        targets = course_targets(figures, marathon_goal(), AT.date())
        centre = figures.uphill_m / figures.distance_m
        assert targets.hill_share_min == pytest.approx(centre - 0.075)
        assert targets.hill_share_max == pytest.approx(centre + 0.075)
        assert targets.hill_share_min == pytest.approx(0.225, abs=0.01)
        assert "hill_share" in targets.from_course
        # 20 % uphill runs: inside the marathon band, below the course's
        report = evaluate(in_band_history(), marathon_goal(), athlete="me", at=AT, course=targets)
        assert report.status is BalanceStatus.LOW
        assert report.goal.hill_share_min == pytest.approx(0.225, abs=0.01)

    def test_vertical_target_rises_towards_race_day(self, course_file: Any) -> None:
        """Half the course's D+ a week 12 weeks out, all of it from 3 weeks out."""
        figures = load_course(course_file(mountain_course, 20_000), ClassifyParams())
        race = date(2027, 4, 25)

        def target(weeks_out: float) -> float:
            goal = replace(marathon_goal(), race_date=race)
            today = race - timedelta(days=round(weeks_out * 7))
            return course_targets(figures, goal, today).vertical_week_target_m

        assert target(20) == pytest.approx(0.5 * figures.gain_m)
        assert target(12) == pytest.approx(0.5 * figures.gain_m)
        assert target(7.5) == pytest.approx(0.75 * figures.gain_m, rel=0.02)
        assert target(3) == pytest.approx(figures.gain_m)
        assert target(1) == pytest.approx(figures.gain_m)

    def test_unreadable_course_is_one_clear_error(self, tmp_path: Path) -> None:
        """A course file that is not an activity is a ConfigError naming goal.course."""
        bad = tmp_path / "race.gpx"
        bad.write_text("not a route")
        with pytest.raises(ConfigError, match=r"^goal\.course: race\.gpx: "):
            load_course(bad, ClassifyParams())
        assert CourseReader(ClassifyParams()).targets(bad, marathon_goal(), AT.date()) is None

    def test_balance_json_names_the_course(self, cli: Cli, tmp_path: Path) -> None:
        """With [goal] course and race_date, balance --json has the course's figures."""
        course = tmp_path / "race.gpx"
        course.write_text(route_gpx(21_000, descending_course))
        cli.put("flat.gpx", route_gpx(6_000, lambda d: 300.0, start=NOV20))
        cli.configure(f'\n[goal]\ncourse = "{course}"\nrace_date = 2027-03-01\n')
        assert cli("sync")[0] == 0
        doc = cli.json("balance", "--at", "2026-11-22")["course"]
        assert doc["name"] == "race.gpx"
        assert doc["loss_m"] == pytest.approx(240, abs=10)
        assert doc["loss_m_per_km"] == pytest.approx(240 / 21, abs=0.5)
        assert doc["descending"] is True
        assert "downhill_share_min" in doc["from_course"]
        code, out, _ = cli("balance", "--at", "2026-11-22")
        assert code == 0
        assert "Your race course race.gpx: 21.0 km" in out

    def test_missing_course_file_leaves_the_profile_band(self, cli: Cli, tmp_path: Path) -> None:
        """A course file that is gone: balance still works, on the profile's band, course null."""
        cli.put("flat.gpx", route_gpx(6_000, lambda d: 300.0, start=NOV20))
        cli.configure(f'\n[goal]\ncourse = "{tmp_path / "gone.gpx"}"\n')
        assert cli("sync")[0] == 0
        report = cli.json("balance", "--at", "2026-11-22")
        assert report["course"] is None
        assert report["goal"]["hill_share_min"] == 0.10


# Monday 2026-11-30 is the start of ISO week 2026-W49.
WEEK49 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def descent_history(this_week_m: float, per_week_m: float = 200.0) -> list[RunForBalance]:
    """Four weeks of `per_week_m` descent each (one run a week), then `this_week_m` this week."""
    runs = [
        RunForBalance(WEEK49 - timedelta(weeks=w, days=-2), 10_000.0, Terrain.UPHILL, per_week_m,
                      per_week_m)
        for w in range(1, 5)
    ]  # fmt: skip
    runs.append(
        RunForBalance(WEEK49 + timedelta(days=1), 12_000.0, Terrain.UPHILL, this_week_m,
                      this_week_m)
    )  # fmt: skip
    return runs


class TestDownhillRamp:
    """A week whose descent rises more than 30 % over the previous 4-week average is a ramp."""

    def test_doubling_is_a_ramp(self) -> None:
        """400 m after four weeks of 200 m: +100 %, a ramp, and its message says so."""
        week = downhill_week(descent_history(400.0), WEEK49 + timedelta(days=2))
        assert (week.loss_m, week.average_m, week.ramp) == (400.0, 200.0, True)
        report = evaluate(descent_history(400.0), marathon_goal(), athlete="me",
                          at=WEEK49 + timedelta(days=2))  # fmt: skip
        message = ramp_message(report)
        assert message is not None
        assert "100 % more than your average of 200 m" in message.body
        assert "gradually" in message.body
        assert report_as_json(report)["downhill_week"]["ramp"] is True

    def test_thirty_percent_is_no_ramp(self) -> None:
        """260 m after 200 m a week is +30 %: not more than 30 %, no ramp."""
        week = downhill_week(descent_history(260.0), WEEK49 + timedelta(days=2))
        assert not week.ramp

    def test_small_rise_on_a_tiny_base_is_no_ramp(self) -> None:
        """From 20 m a week to 100 m is +400 % but only 80 m more: below the 150 m floor."""
        assert not downhill_week(descent_history(100.0, 20.0), WEEK49 + timedelta(days=2)).ramp

    def test_no_history_is_no_ramp(self) -> None:
        """A first hilly week with no run in the four weeks before: the base is unknown."""
        (first,) = descent_history(400.0)[-1:]
        assert not downhill_week([first], WEEK49 + timedelta(days=2)).ramp

    def test_warned_once_per_week(self, db: Database) -> None:
        """Evaluated every hour of a ramping week, then again: one message; next week again."""
        with db.session() as s:
            athlete = Athlete(name="me", created_at=WEEK49)
            s.add(athlete)
            s.flush()
            aid = athlete.id

        def run_alerts(at: datetime, runs: list[RunForBalance]) -> None:
            with db.session() as s:
                alerts.evaluate_athlete(s, aid, "me", marathon_goal(), remind_days=7,
                                        url_keys=["k"], now=at, runs=runs)  # fmt: skip

        for hour in range(30, 40):
            run_alerts(WEEK49 + timedelta(hours=hour), descent_history(400.0))
        next_week = [*descent_history(400.0),
                     RunForBalance(WEEK49 + timedelta(days=8), 12_000.0, Terrain.UPHILL, 900.0,
                                   900.0)]  # fmt: skip
        run_alerts(WEEK49 + timedelta(days=9), next_week)
        run_alerts(WEEK49 + timedelta(days=10), next_week)
        with db.session(readonly=True) as s:
            ramps = list(
                s.scalars(select(OutboxMessage.title).where(OutboxMessage.kind == "downhill_ramp"))
            )
        assert ramps == [
            "Downhill ramp: 400 m of descent this week",
            "Downhill ramp: 900 m of descent this week",
        ]


class TestWeeklyDigest:
    """The weekly digest: due at its local time, sent once a week, with the chart attached."""

    def test_due_from_its_moment_to_the_end_of_the_week(self) -> None:
        """ "mon 07:00": not due at 06:59 on Monday, due at 07:00 and later that week."""
        monday = datetime(2026, 11, 30, 6, 59, tzinfo=UTC)
        assert digest_due(monday, 0, time(7, 0), UTC) is None
        assert digest_due(monday + timedelta(minutes=1), 0, time(7, 0), UTC) == "2026-W49"
        assert digest_due(monday + timedelta(days=6, hours=17), 0, time(7, 0), UTC) == "2026-W49"
        assert next_digest(monday, 0, time(7, 0), UTC) == monday + timedelta(minutes=1)

    def test_local_time_decides(self) -> None:
        """07:00 in Berlin (UTC+1 in winter) is 06:00 UTC."""
        berlin = ZoneInfo("Europe/Berlin")
        at = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
        assert digest_due(at, 0, time(7, 0), berlin) == "2026-W49"
        assert digest_due(at - timedelta(seconds=1), 0, time(7, 0), berlin) is None

    def test_digest_figures(self) -> None:
        """Last week's runs only: 3 runs, 30 km, 10 km uphill runs, 1 session, 350 m up."""
        runs = [
            RunForBalance(datetime(2026, 11, 24, 7, tzinfo=UTC), 10_000.0, Terrain.UPHILL, 300.0),
            RunForBalance(datetime(2026, 11, 26, 7, tzinfo=UTC), 12_000.0, Terrain.FLAT, 50.0,
                          hill_repeats=SESSION),
            RunForBalance(datetime(2026, 11, 28, 7, tzinfo=UTC), 8_000.0, Terrain.UNKNOWN),
            RunForBalance(datetime(2026, 11, 18, 7, tzinfo=UTC), 20_000.0, Terrain.FLAT, 10.0),
        ]  # fmt: skip
        now = datetime(2026, 11, 30, 7, 5, tzinfo=UTC)
        report = evaluate(runs, marathon_goal(), athlete="me", at=now)
        message = digest_message(runs, report, now=now, tz=UTC, chart=b"\x89PNG")
        assert message.title == "hillsync weekly: 2026-W48, 30.0 km, hill share 45%"
        assert "3 runs, 30.0 km, hill share 45%, 1 hill-repeat session, 350 m up" in message.body
        assert "Last 28 days: " in message.body
        assert message.attachment == b"\x89PNG"

    def test_sent_once_per_week_across_restarts(
        self, cli: Cli, loopback: tuple[str, list[dict[str, Any]]]
    ) -> None:
        """Two restarts in one week send one digest with its PNG chart; the next week another."""
        url, received = loopback
        length, ele = repeats_route()
        cli.put("repeats.gpx", route_gpx(length, ele, start="2026-11-25T07:00:00+00:00"))
        cli.put("flat.gpx", route_gpx(6_000, lambda d: 300.0, start="2026-11-27T07:00:00+00:00"))
        cli.configure(f'\n[notify]\nurls = ["{url}"]\ndigest = "mon 07:00"\n')
        settings = load_settings(cli.config, cli.env)

        def restart(now: datetime) -> None:
            db = open_database(settings.database.url or "")
            try:
                worker = Worker(settings, db, environ=cli.env, clock=lambda: now, tz=UTC)
                worker.sync_cycle()
            finally:
                db.close()

        def digests() -> list[dict[str, Any]]:
            return [r for r in received if r["title"].startswith("hillsync weekly")]

        monday = datetime(2026, 11, 30, 6, 30, tzinfo=UTC)
        restart(monday)
        assert digests() == []
        restart(monday + timedelta(hours=1))
        restart(monday + timedelta(hours=2))
        restart(monday + timedelta(days=3))
        assert len(digests()) == 1
        digest = digests()[0]
        assert digest["title"] == "hillsync weekly: 2026-W48, 14.8 km, hill share 0%"
        assert "1 hill-repeat session" in digest["message"]
        (attachment,) = digest["attachments"]
        assert attachment["filename"] == "hillsync-2026-W48.png"
        png = base64.b64decode(attachment["base64"])
        assert png.startswith(b"\x89PNG\r\n\x1a\n")

        restart(monday + timedelta(days=7, hours=1))
        titles = [d["title"][:28] for d in digests()]
        assert titles == ["hillsync weekly: 2026-W48, 1", "hillsync weekly: 2026-W49, 0"]


class TestElevationTrust:
    """The share of distance with GPS-only elevation, and the message when it dominates."""

    def test_share_and_message(self) -> None:
        """30 of 40 km on GPS-only profiles: 75 %, and the warning says so."""
        runs = [
            RunForBalance(AT - timedelta(days=d), 10_000.0, Terrain.FLAT, 20.0,
                          elevation_source=src)
            for d, src in ((1, "profile"), (2, "profile"), (3, "profile"), (4, "device"))
        ] + [RunForBalance(AT - timedelta(days=5), 10_000.0, Terrain.UNKNOWN,
                           elevation_source="profile")]  # fmt: skip
        report = evaluate(runs, marathon_goal(), athlete="me", at=AT)
        assert report.gps_only_share == pytest.approx(0.75)
        assert report_as_json(report)["gps_only_share"] == 0.75
        message = warning_message(report, None)
        assert message is not None
        assert "75% of this distance has GPS-only elevation" in message.body

    def test_device_figures_are_not_flagged(self) -> None:
        """Runs with device totals: share 0, no warning."""
        runs = [
            RunForBalance(AT - timedelta(days=d), 10_000.0, Terrain.FLAT, 20.0,
                          elevation_source="device")
            for d in (1, 2, 3, 4)
        ]  # fmt: skip
        report = evaluate(runs, marathon_goal(), athlete="me", at=AT)
        assert report.gps_only_share == 0.0
        message = warning_message(report, None)
        assert message is not None
        assert "GPS-only" not in message.body

    def test_per_run_source_from_real_and_built_files(self, cli: Cli, data_dir: Path) -> None:
        """A FIT file with the device's totals is `device`; a GPX track is `profile`."""
        fit = data_dir / "fit" / "2013-02-06-12-11-14.fit"
        cli.put_bytes("watch.fit", fit.read_bytes())
        cli.put("phone.gpx", route_gpx(6_000, lambda d: 300.0, start="2013-02-07T07:00:00+00:00"))
        cli.configure()
        assert cli("sync")[0] == 0
        runs = cli.json("activities")
        assert [(r["sport"], r["elevation_source"]) for r in runs] == [
            ("run", "device"),
            ("run", "profile"),
        ]
        report = cli.json("balance", "--at", "2013-02-08")
        # the FIT file's own distance (4835.38 m) against the built 6 km track
        assert report["gps_only_share"] == pytest.approx(6_000 / (6_000 + 4_835.38), abs=0.01)
