"""DESIGN.md's tables and thresholds (tests/design.py), checked against what the code does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import design
from hillsync.balance import evaluate
from hillsync.classify import build_profile, classify, gain_loss
from hillsync.config import Settings, parse_settings
from hillsync.model import (
    BalanceStatus,
    ClassifyParams,
    Goal,
    GoalProfile,
    Profile,
    RunForBalance,
    Summary,
    Terrain,
    Track,
)

AT = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
PROFILES = sorted(design.GOAL_BANDS)


def profile_goal(profile: str, **keys: object) -> Goal:
    """The goal hillsync builds from `[goal] profile = ...` (the code's band, not ours)."""
    lines = [f'profile = "{profile}"'] + [f"{k} = {v}" for k, v in keys.items()]
    return parse_settings("[goal]\n" + "\n".join(lines) + "\n", {}).athletes["me"].goal.goal()


def history(hill: float, down: float, *, total_km: float = 100.0) -> list[RunForBalance]:
    """Eight runs over the last 8 days whose distance splits into the given shares."""
    total = total_km * 1000
    parts = [
        (Terrain.UPHILL, hill, 2),
        (Terrain.DOWNHILL, down, 2),
        (Terrain.FLAT, 1 - hill - down, 4),
    ]
    runs: list[RunForBalance] = []
    for label, share, pieces in parts:
        for _ in range(pieces):
            start = AT - timedelta(days=len(runs) + 1)
            runs.append(RunForBalance(start, share * total / pieces, label, 10.0))
    return runs


def status(
    runs: list[RunForBalance], goal: Goal, previous: BalanceStatus | None = None
) -> BalanceStatus:
    """The balance status hillsync gives."""
    return evaluate(runs, goal, athlete="me", at=AT, previous=previous).status


class TestGoalBands:
    """Every profile's band is the one of DESIGN.md section 5."""

    def test_profiles_are_design_s(self) -> None:
        """The goal profiles are exactly DESIGN's seven and custom."""
        assert sorted(p.value for p in GoalProfile) == sorted([*PROFILES, design.CUSTOM_PROFILE])

    @pytest.mark.parametrize("profile", PROFILES)
    def test_band(self, profile: str) -> None:
        """The profile's goal has DESIGN's hill share band and downhill maximum."""
        goal = profile_goal(profile)
        band = (goal.hill_share_min, goal.hill_share_max, goal.downhill_share_max)
        assert band == pytest.approx(design.GOAL_BANDS[profile])
        assert goal.window_days == design.WINDOW_DAYS

    @pytest.mark.parametrize("profile", PROFILES)
    def test_band_edges_judged(self, profile: str) -> None:
        """A share 1 point outside DESIGN's band is low/high/downhill_high; 1 inside is ok."""
        lo, hi, dmax = design.GOAL_BANDS[profile]
        goal = profile_goal(profile)
        assert status(history(lo - 0.01, 0.0), goal) is BalanceStatus.LOW
        assert status(history(lo + 0.01, 0.0), goal) is BalanceStatus.OK
        assert status(history(hi + 0.01, 0.0), goal) is BalanceStatus.HIGH
        assert status(history(hi - 0.01, 0.0), goal) is BalanceStatus.OK
        mid = (lo + hi) / 2
        assert status(history(mid, dmax + 0.01), goal) is BalanceStatus.DOWNHILL_HIGH
        assert status(history(mid, dmax - 0.01), goal) is BalanceStatus.OK

    def test_custom_band_from_keys(self) -> None:
        """A custom profile's band is exactly its keys."""
        goal = profile_goal("custom", hill_share="[0.05, 0.2]", downhill_share_max=0.05)
        assert (goal.hill_share_min, goal.hill_share_max, goal.downhill_share_max) == (
            0.05,
            0.2,
            0.05,
        )


class TestBalanceRules:
    """Hysteresis, the data minimum and the taper of DESIGN.md section 5."""

    goal = Goal(GoalProfile.CUSTOM, 0.20, 0.40, 0.20)
    inside = design.BALANCE_HYSTERESIS

    def test_high_left_only_2_points_inside(self) -> None:
        """After high, 1.8 points inside the band holds high; 2.2 points inside is ok."""
        hi = self.goal.hill_share_max
        held = history(hi - (self.inside - 0.002), 0.0)
        left = history(hi - (self.inside + 0.002), 0.0)
        assert status(held, self.goal, BalanceStatus.HIGH) is BalanceStatus.HIGH
        assert status(left, self.goal, BalanceStatus.HIGH) is BalanceStatus.OK

    def test_low_left_only_2_points_inside(self) -> None:
        """After low, 1.8 points inside the band holds low; 2.2 points inside is ok."""
        lo = self.goal.hill_share_min
        held = history(lo + (self.inside - 0.002), 0.0)
        left = history(lo + (self.inside + 0.002), 0.0)
        assert status(held, self.goal, BalanceStatus.LOW) is BalanceStatus.LOW
        assert status(left, self.goal, BalanceStatus.LOW) is BalanceStatus.OK

    def test_downhill_high_left_only_2_points_below(self) -> None:
        """After downhill_high, 1.8 points below the maximum holds it; 2.2 below is ok."""
        dmax = self.goal.downhill_share_max
        held = history(0.3, dmax - (self.inside - 0.002))
        left = history(0.3, dmax - (self.inside + 0.002))
        assert status(held, self.goal, BalanceStatus.DOWNHILL_HIGH) is BalanceStatus.DOWNHILL_HIGH
        assert status(left, self.goal, BalanceStatus.DOWNHILL_HIGH) is BalanceStatus.OK

    def _runs(self, count: int, km: float) -> list[RunForBalance]:
        each = km * 1000 / count
        return [
            RunForBalance(AT - timedelta(days=d + 1), each, Terrain.FLAT if d else Terrain.UPHILL)
            for d in range(count)
        ]

    def test_minimum_runs_and_km(self) -> None:
        """4 runs and 20 km are judged; 3 runs, or 19.9 km, are insufficient_data."""
        judged = status(self._runs(design.MIN_RUNS, design.MIN_KM), self.goal)
        assert judged is not BalanceStatus.INSUFFICIENT_DATA
        few = status(self._runs(design.MIN_RUNS - 1, 3 * design.MIN_KM), self.goal)
        short = status(self._runs(design.MIN_RUNS, design.MIN_KM - 0.1), self.goal)
        assert few is BalanceStatus.INSUFFICIENT_DATA
        assert short is BalanceStatus.INSUFFICIENT_DATA

    def test_taper_days(self) -> None:
        """A low share 10 days before the race is not warned about; 11 days before it is."""
        runs = history(0.05, 0.0)
        for days, expected in (
            (design.TAPER_DAYS, BalanceStatus.OK),
            (design.TAPER_DAYS + 1, BalanceStatus.LOW),
        ):
            goal = Goal(
                GoalProfile.CUSTOM, 0.20, 0.40, 0.20, race_date=AT.date() + timedelta(days=days)
            )
            assert status(runs, goal) is expected, days


def summary(
    gain: float,
    loss: float | None = None,
    *,
    start: tuple[float, float] | None = None,
    end: tuple[float, float] | None = None,
) -> Summary:
    """A 10 km run's summary with reported totals (and its ends, if given)."""
    return Summary(
        sport="run",
        distance_m=10_000.0,
        reported_gain_m=gain,
        reported_loss_m=loss,
        start_latlng=start,
        end_latlng=end,
    )


def ramp(grade_pct: float, length_m: float = 1000.0, start_m: float = 300.0) -> Profile:
    """A 10 m profile climbing at a constant grade."""
    steps = np.arange(round(length_m / 10) + 1, dtype=np.float64)
    return Profile(altitude_m=start_m + steps * grade_pct / 10.0, distance_m=float(length_m))


class TestClassifyThresholds:
    """The classifier's thresholds are DESIGN.md section 4's."""

    def test_defaults(self) -> None:
        """The defaults, in code and with no config, are DESIGN's."""
        expected = (
            design.HILLY_M_PER_KM,
            design.DOWNHILL_RATIO,
            design.GRADE_PCT,
            design.HYSTERESIS_M,
        )
        for params in (ClassifyParams(), Settings().classify, parse_settings("", {}).classify):
            assert (
                params.hilly_m_per_km,
                params.downhill_ratio,
                params.grade_pct,
                params.hysteresis_m,
            ) == expected

    def test_hilly_per_km(self) -> None:
        """A loop gaining 15 m/km is uphill; 14.5 m/km is flat."""
        per_km = design.HILLY_M_PER_KM
        assert (
            classify(summary(10 * per_km, 10 * per_km), None, ClassifyParams()).label
            is Terrain.UPHILL
        )
        low = 10 * (per_km - 0.5)
        assert classify(summary(low, low), None, ClassifyParams()).label is Terrain.FLAT

    def test_downhill_ratio(self) -> None:
        """Loss 1.5x the gain (and hilly) is downhill; 1.45x is uphill."""
        gain = 200.0
        down = classify(summary(gain, gain * design.DOWNHILL_RATIO), None, ClassifyParams())
        up = classify(summary(gain, gain * (design.DOWNHILL_RATIO - 0.05)), None, ClassifyParams())
        assert (down.label, up.label) == (Terrain.DOWNHILL, Terrain.UPHILL)

    def test_segment_grade(self) -> None:
        """A 3.5 % climb is uphill segment by segment; a 2.5 % one is flat."""
        steep = classify(Summary("run", None), ramp(design.GRADE_PCT + 0.5), ClassifyParams())
        gentle = classify(Summary("run", None), ramp(design.GRADE_PCT - 0.5), ClassifyParams())
        assert steep.uphill_m == pytest.approx(1000.0)
        assert gentle.flat_m == pytest.approx(1000.0)

    def test_hysteresis(self) -> None:
        """With the default hysteresis, 2.5 m wiggles are noise and 3.5 m ones are climbing."""
        h = ClassifyParams().hysteresis_m
        small = np.tile([0.0, design.HYSTERESIS_M - 0.5], 10)
        large = np.tile([0.0, design.HYSTERESIS_M + 0.5], 10)
        assert gain_loss(small, h) == (0.0, 0.0)
        assert gain_loss(large, h)[0] > 0


class TestSummaryLoop:
    """A summary-only run is a loop when it ends within 200 m of its start (section 4)."""

    def _classify(self, gap_m: float) -> dict[str, object]:
        start = (46.0, 7.7)
        end = (46.0 + gap_m / design.M_PER_DEGREE_LAT, 7.7)
        c = classify(summary(200.0, None, start=start, end=end), None, ClassifyParams())
        return dict(c.inputs)

    def test_within_tolerance_is_loop(self) -> None:
        """Ends 190 m apart: a loop, its loss is its gain."""
        assert self._classify(design.LOOP_TOLERANCE_M - 10).get("loss_from") == "loop"

    def test_beyond_tolerance_is_not(self) -> None:
        """Ends 210 m apart: a point-to-point run, not a loop."""
        assert self._classify(design.LOOP_TOLERANCE_M + 10).get("loss_from") != "loop"


class TestAltitudeRange:
    """Altitude samples outside -500..9000 m are dropped (section 4)."""

    def _profile_range(self, *altitudes: float) -> tuple[float, float]:
        track = Track(
            altitude_m=np.array(altitudes, dtype=np.float64),
            distance_m=np.arange(len(altitudes), dtype=np.float64) * 10.0,
        )
        profile = build_profile(track)
        assert profile is not None
        return float(np.min(profile.altitude_m)), float(np.max(profile.altitude_m))

    def test_ceiling(self) -> None:
        """8990 m is kept (Everest-high runs exist); 9010 m is dropped."""
        top = design.ALTITUDE_MAX_M
        assert self._profile_range(top - 10, top - 10, top - 10)[1] == top - 10
        assert self._profile_range(top - 10, top + 10, top - 10) == (top - 10, top - 10)

    def test_floor(self) -> None:
        """-490 m is kept (the Dead Sea shore is -430 m); -510 m is dropped."""
        floor = design.ALTITUDE_MIN_M
        assert self._profile_range(floor + 10, floor + 10)[0] == floor + 10
        assert self._profile_range(floor + 10, floor - 10, floor + 10) == (floor + 10, floor + 10)
