"""Tests of the classifier: profile building, smoothing, hysteresis, split, labels."""

from __future__ import annotations

import math
from pathlib import Path

import fitdecode
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hillsync.classify import (
    CLASSIFIER_VERSION,
    build_profile,
    classify,
    gain_loss,
    smooth,
    split,
)
from hillsync.model import ClassifyParams, Profile, Summary, Terrain, Track

PARAMS = ClassifyParams()
NAN = math.nan


def arr(*values: float) -> np.ndarray:
    """A float64 array of the given values."""
    return np.array(values, dtype=np.float64)


def ramp_profile(*legs: tuple[float, float], start: float = 100.0) -> Profile:
    """A 10 m profile made of legs (length m, grade %), starting at `start` metres."""
    z = [start]
    for length, grade in legs:
        for _ in range(round(length / 10)):
            z.append(z[-1] + grade / 100.0 * 10.0)
    alt = np.array(z, dtype=np.float64)
    return Profile(altitude_m=alt, distance_m=10.0 * (alt.size - 1))


def run(distance: float | None = None, **kw: object) -> Summary:
    """A run summary with the given fields."""
    return Summary(sport="run", distance_m=distance, **kw)  # type: ignore[arg-type]


class TestBuildProfileCleaning:
    """Altitude samples are cleaned before resampling."""

    def test_nan_and_absurd_altitudes_are_dropped(self) -> None:
        """NaN, -9999 and 30000 m samples do not reach the profile."""
        track = Track(
            altitude_m=arr(100, NAN, -9999, 30000, 100),
            distance_m=arr(0, 10, 20, 30, 40),
        )
        profile = build_profile(track)
        assert profile is not None
        assert np.allclose(profile.altitude_m, 100.0)

    def test_leading_zeros_before_lock_are_dropped(self) -> None:
        """Zeros before the altitude locks do not make a climb from sea level."""
        track = Track(altitude_m=arr(0, 0, 0, 250, 251, 252), distance_m=arr(0, 10, 20, 30, 40, 50))
        profile = build_profile(track)
        assert profile is not None
        assert profile.altitude_m.min() >= 250.0

    def test_zero_after_lock_is_kept(self) -> None:
        """A real 0 m altitude after the lock (at the sea) stays in the profile."""
        track = Track(altitude_m=arr(5, 0, 5), distance_m=arr(0, 10, 20))
        profile = build_profile(track)
        assert profile is not None
        assert profile.altitude_m[1] == 0.0

    def test_all_zero_altitudes_give_none(self) -> None:
        """A file whose altitudes are all exactly 0 has no usable elevation."""
        track = Track(altitude_m=np.zeros(50), distance_m=np.arange(50.0) * 5)
        assert build_profile(track) is None

    def test_no_altitude_gives_none(self) -> None:
        """A file with only NaN altitudes gives no profile."""
        track = Track(altitude_m=np.full(20, NAN), distance_m=np.arange(20.0))
        assert build_profile(track) is None

    def test_empty_track_gives_none(self) -> None:
        """A track without samples gives no profile."""
        assert build_profile(Track(altitude_m=np.empty(0))) is None

    def test_no_distance_source_gives_none(self) -> None:
        """Altitudes without distance, positions or speed cannot be resampled."""
        assert build_profile(Track(altitude_m=arr(1, 2, 3))) is None


class TestBuildProfileDistance:
    """Distance is taken from the device, positions, or speed x time."""

    def test_resamples_every_10_m_with_last_at_total(self) -> None:
        """A 95 m track gives samples at 0..90 m plus one at 95 m, linearly interpolated."""
        track = Track(altitude_m=arr(100, 119), distance_m=arr(0, 95))
        profile = build_profile(track)
        assert profile is not None
        assert profile.step_m == 10.0
        assert profile.distance_m == 95.0
        assert profile.altitude_m.size == 11
        assert profile.distances()[-1] == 95.0
        assert profile.altitude_m[5] == pytest.approx(100 + 19 * 50 / 95)
        assert profile.altitude_m[-1] == pytest.approx(119.0)

    def test_device_distance_nan_and_backwards_are_repaired(self) -> None:
        """NaN and backward distance steps neither shorten nor reverse the route."""
        track = Track(
            altitude_m=arr(100, 101, 102, 103, 104),
            distance_m=arr(NAN, 10, NAN, 5, 40),
        )
        profile = build_profile(track)
        assert profile is not None
        assert profile.distance_m == pytest.approx(30.0)

    def test_distance_from_positions(self) -> None:
        """Without device distance, 0.01 degree of latitude gives about 1112 m."""
        lat = np.linspace(45.0, 45.01, 11)
        track = Track(altitude_m=np.full(11, 300.0), lat=lat, lon=np.full(11, 7.0))
        profile = build_profile(track)
        assert profile is not None
        assert profile.distance_m == pytest.approx(1111.95, rel=1e-3)

    def test_missing_fix_carries_the_route_on(self) -> None:
        """A sample without position still lets the next fix add the distance covered."""
        lat = arr(45.0, NAN, 45.01)
        track = Track(altitude_m=arr(300, 301, 302), lat=lat, lon=arr(7, NAN, 7))
        profile = build_profile(track)
        assert profile is not None
        assert profile.distance_m == pytest.approx(1111.95, rel=1e-3)

    def test_segment_gap_is_not_distance(self) -> None:
        """The jump between two GPX segments adds nothing to the distance."""
        lat = arr(45.0, 45.001, 46.0, 46.001)
        track = Track(
            altitude_m=arr(300, 300, 300, 300),
            lat=lat,
            lon=np.full(4, 7.0),
            segment=np.array([0, 0, 1, 1], dtype=np.int64),
        )
        profile = build_profile(track)
        assert profile is not None
        assert profile.distance_m == pytest.approx(2 * 111.195, rel=1e-3)

    def test_distance_from_speed_and_time(self) -> None:
        """Without distance or positions, 3 m/s for 100 s gives 300 m."""
        track = Track(
            altitude_m=np.full(11, 50.0),
            time_s=np.arange(11.0) * 10,
            speed_mps=np.full(11, 3.0),
        )
        profile = build_profile(track)
        assert profile is not None
        assert profile.distance_m == pytest.approx(300.0)

    def test_fifty_thousand_points_are_resampled(self) -> None:
        """A long track of 50,000 samples gives one sample every 10 m."""
        n = 50_000
        d = np.arange(n, dtype=np.float64) * 3.0
        track = Track(altitude_m=200 + 50 * np.sin(d / 2000), distance_m=d)
        profile = build_profile(track)
        assert profile is not None
        assert profile.altitude_m.size == math.ceil(d[-1] / 10) + 1


class TestSmoothing:
    """Smoothing removes spikes and noise but keeps the terrain."""

    def test_single_spike_is_removed(self) -> None:
        """A one-sample 80 m spike (a barometer's first reading) leaves no bump."""
        alt = np.full(30, 50.0)
        alt[10] = 130.0
        z = smooth(Profile(altitude_m=alt, distance_m=290.0))
        assert z.max() - z.min() < 1e-9

    def test_steady_climb_is_kept(self) -> None:
        """A steady 5% climb keeps its full rise after smoothing."""
        alt = 100 + 0.5 * np.arange(101.0)
        z = smooth(Profile(altitude_m=alt, distance_m=1000.0))
        assert z[-1] - z[0] == pytest.approx(50.0, abs=1.0)

    def test_noise_below_hysteresis_adds_no_gain(self) -> None:
        """Alternating +-1 m noise on a flat road gives no gain at all."""
        alt = 100 + np.where(np.arange(200) % 2 == 0, 1.0, -1.0)
        profile = Profile(altitude_m=alt, distance_m=1990.0)
        assert gain_loss(smooth(profile), 3.0) == (0.0, 0.0)


class TestHysteresis:
    """Gain and loss count only moves beyond the threshold."""

    def test_small_moves_are_ignored(self) -> None:
        """Moves of 2 m under a 3 m hysteresis count nothing."""
        assert gain_loss(arr(0, 2, 0, 2, 0, 2), 3.0) == (0.0, 0.0)

    def test_move_beyond_threshold_counts_fully(self) -> None:
        """A 10 m climb then a 4 m descent count 10 and 4."""
        assert gain_loss(arr(0, 5, 10, 6), 3.0) == (10.0, 4.0)

    def test_trailing_move_below_threshold_is_dropped(self) -> None:
        """A final 2 m dip after a climb is not a descent."""
        assert gain_loss(arr(0, 10, 8), 3.0) == (10.0, 0.0)

    def test_zero_hysteresis_is_total_variation(self) -> None:
        """Without hysteresis every rise and fall counts."""
        assert gain_loss(arr(0, 2, 1, 3), 0.0) == (4.0, 1.0)

    def test_short_series(self) -> None:
        """One sample has neither gain nor loss."""
        assert gain_loss(arr(5), 3.0) == (0.0, 0.0)


class TestSplit:
    """100 m segments go to uphill, downhill or flat by grade."""

    def test_split_by_grade(self) -> None:
        """300 m climbing at 6%, 200 m flat, 200 m descending at 6% split so."""
        profile = ramp_profile((300, 6), (200, 0), (200, -6))
        z = np.asarray(profile.altitude_m)
        assert split(profile, z, 3.0) == (300.0, 200.0, 200.0)

    def test_last_short_segment_is_included(self) -> None:
        """A 250 m climb has its last 50 m segment counted as uphill."""
        profile = ramp_profile((250, 10))
        up, down, flat = split(profile, np.asarray(profile.altitude_m), 3.0)
        assert (up, down, flat) == (250.0, 0.0, 0.0)

    def test_sum_is_distance_in_classification(self) -> None:
        """The three lengths add up exactly to the run's distance."""
        profile = ramp_profile((330, 5), (470, -1), (123, -8))
        c = classify(run(), profile, PARAMS)
        assert c.uphill_m + c.downhill_m + c.flat_m == c.distance_m
        assert c.uphill_m > 0
        assert c.downhill_m > 0

    def test_split_scaled_to_reported_distance(self) -> None:
        """With a reported distance twice the profile's, each part doubles."""
        profile = ramp_profile((500, 6), (500, 0))
        c = classify(run(2000.0), profile, PARAMS)
        assert c.distance_m == 2000.0
        assert c.uphill_m == pytest.approx(1000.0, abs=200.0)
        assert c.uphill_m + c.downhill_m + c.flat_m == 2000.0


class TestLabels:
    """Each label from a profile."""

    def test_uphill(self) -> None:
        """A 5 km loop with 150 m up and down (30 m/km) is uphill."""
        profile = ramp_profile((1500, 10), (1000, 0), (1500, -10), (1000, 0))
        c = classify(run(), profile, PARAMS)
        assert c.label is Terrain.UPHILL
        assert c.elevation_gain_m == pytest.approx(150.0, abs=3.0)
        assert c.inputs["method"] == "profile"
        assert c.version == CLASSIFIER_VERSION

    def test_downhill(self) -> None:
        """A 4 km descent of 200 m is downhill."""
        profile = ramp_profile((4000, -5))
        c = classify(run(), profile, PARAMS)
        assert c.label is Terrain.DOWNHILL
        assert c.elevation_loss_m == pytest.approx(200.0, abs=3.0)
        assert c.downhill_m > 3500

    def test_too_short_is_unknown(self) -> None:
        """A few metres of a file cut short are unknown, not flat."""
        profile = ramp_profile((60, 0))
        c = classify(run(), profile, PARAMS)
        assert c.label is Terrain.UNKNOWN
        assert c.inputs["reason"] == "too short"

    def test_flat(self) -> None:
        """A 10 km run with a 20 m bump is flat."""
        profile = ramp_profile((4800, 0), (200, 10), (200, -10), (4800, 0))
        c = classify(run(), profile, PARAMS)
        assert c.label is Terrain.FLAT

    def test_hilly_descent_with_climbs_not_downhill_when_ratio_low(self) -> None:
        """Loss of 200 m with gain of 150 m (ratio below 1.5) is uphill, not downhill."""
        profile = ramp_profile((1500, 10), (2000, -10))
        c = classify(run(), profile, PARAMS)
        assert c.label is Terrain.UPHILL

    def test_indoor_is_unknown(self) -> None:
        """A treadmill run is unknown, never flat, even with a profile."""
        profile = ramp_profile((4000, 5))
        for summary in (Summary("treadmill", 4000.0), Summary("run", 4000.0, indoor=True)):
            c = classify(summary, profile, PARAMS)
            assert c.label is Terrain.UNKNOWN
            assert not c.needs_profile

    def test_all_zero_profile_without_reported_gain_is_unknown(self) -> None:
        """A stored profile of zeros with no reported gain is unknown."""
        profile = Profile(altitude_m=np.zeros(101), distance_m=1000.0)
        c = classify(run(1000.0), profile, PARAMS)
        assert c.label is Terrain.UNKNOWN

    def test_zero_distance_is_unknown(self) -> None:
        """A run of zero distance cannot be classified."""
        c = classify(run(0.0, reported_gain_m=10.0, reported_loss_m=10.0), None, PARAMS)
        assert c.label is Terrain.UNKNOWN

    def test_no_profile_no_gain_is_unknown(self) -> None:
        """A summary without any elevation figure is unknown and asks for the profile."""
        c = classify(run(5000.0), None, PARAMS)
        assert c.label is Terrain.UNKNOWN
        assert c.needs_profile

    def test_nan_figures_never_leak(self) -> None:
        """NaN or negative reported totals are treated as missing."""
        c = classify(run(NAN, reported_gain_m=NAN, reported_loss_m=-5.0), None, PARAMS)
        assert c.label is Terrain.UNKNOWN
        assert c.distance_m == 0.0
        assert c.elevation_gain_m is None
        assert c.elevation_loss_m is None


class TestReportedTotals:
    """Reported totals are preferred, the profile fills what they lack."""

    def test_reported_totals_preferred(self) -> None:
        """A flat-looking profile with reported 200/200 m over 5 km is uphill."""
        profile = ramp_profile((5000, 0))
        c = classify(run(5000.0, reported_gain_m=200.0, reported_loss_m=200.0), profile, PARAMS)
        assert c.label is Terrain.UPHILL
        assert c.elevation_gain_m == 200.0
        assert c.inputs["gain_from"] == "reported"
        assert c.inputs["loss_from"] == "reported"
        assert c.inputs["split"] == "profile"

    def test_strava_gain_reported_loss_from_profile(self) -> None:
        """Strava's gain only: the loss comes from the profile (gain minus its net rise)."""
        profile = ramp_profile((2000, -10), (2000, 0))
        c = classify(run(4000.0, reported_gain_m=10.0), profile, PARAMS)
        assert c.inputs["gain_from"] == "reported"
        assert c.inputs["loss_from"] == "profile"
        assert c.elevation_gain_m == 10.0
        assert c.elevation_loss_m == pytest.approx(210.0, abs=3.0)
        assert c.label is Terrain.DOWNHILL


class TestSummaryOnly:
    """Summary-only runs: loops, point-to-point, the elevation range."""

    def test_loop_has_loss_equal_gain(self) -> None:
        """A loop with reported gain 100 m over 5 km is uphill, loss = gain."""
        c = classify(
            run(5000.0, reported_gain_m=100.0, start_latlng=(45.0, 7.0), end_latlng=(45.0005, 7.0)),
            None,
            PARAMS,
        )
        assert c.label is Terrain.UPHILL
        assert c.elevation_loss_m == 100.0
        assert c.inputs["loss_from"] == "loop"
        assert c.inputs["method"] == "summary"
        assert c.inputs["split"] == "none"
        assert (c.uphill_m, c.downhill_m, c.flat_m) == (0.0, 0.0, 0.0)

    def test_point_to_point_needs_profile(self) -> None:
        """A point-to-point run with gain but no loss is unknown and needs its profile."""
        c = classify(
            run(10000.0, reported_gain_m=50.0, start_latlng=(45.0, 7.0), end_latlng=(45.1, 7.0)),
            None,
            PARAMS,
        )
        assert c.label is Terrain.UNKNOWN
        assert c.needs_profile

    def test_unknown_ends_need_profile(self) -> None:
        """A run without start/end positions and without loss cannot be decided."""
        c = classify(run(10000.0, reported_gain_m=50.0), None, PARAMS)
        assert c.label is Terrain.UNKNOWN
        assert c.needs_profile

    def test_both_totals_decide_without_profile(self) -> None:
        """Garmin's gain and loss settle the label of a point-to-point run."""
        c = classify(run(5000.0, reported_gain_m=10.0, reported_loss_m=300.0), None, PARAMS)
        assert c.label is Terrain.DOWNHILL
        assert not c.needs_profile

    def test_range_settles_flat(self) -> None:
        """Gain 20 m and range 30 m over 10 km: loss at most 50 m, so flat."""
        c = classify(run(10000.0, reported_gain_m=20.0, elevation_range_m=30.0), None, PARAMS)
        assert c.label is Terrain.FLAT
        assert not c.needs_profile
        assert c.elevation_loss_m is None
        assert c.inputs["loss_max_m"] == 50.0

    def test_range_settles_uphill(self) -> None:
        """Gain 300 m and range 50 m over 10 km: loss at most 350 < 450, so uphill."""
        c = classify(run(10000.0, reported_gain_m=300.0, elevation_range_m=50.0), None, PARAMS)
        assert c.label is Terrain.UPHILL
        assert not c.needs_profile

    def test_range_leaves_label_open(self) -> None:
        """Gain 100 m and range 400 m over 10 km may be uphill or downhill: needs profile."""
        c = classify(run(10000.0, reported_gain_m=100.0, elevation_range_m=400.0), None, PARAMS)
        assert c.label is Terrain.UNKNOWN
        assert c.needs_profile

    def test_descent_is_left_open(self) -> None:
        """Gain 0 m and range 300 m over 5 km may be flat (loss 0) or downhill (loss 300)."""
        c = classify(run(5000.0, reported_gain_m=0.0, elevation_range_m=300.0), None, PARAMS)
        assert c.label is Terrain.UNKNOWN
        assert c.inputs["loss_min_m"] == 0.0
        assert c.needs_profile

    def test_thresholds_recorded(self) -> None:
        """Every classification records the four thresholds it used."""
        params = ClassifyParams(hilly_m_per_km=20.0, downhill_ratio=2.0, grade_pct=4.0)
        c = classify(run(5000.0, reported_gain_m=1.0, reported_loss_m=1.0), None, params)
        assert c.inputs["hilly_m_per_km"] == 20.0
        assert c.inputs["downhill_ratio"] == 2.0
        assert c.inputs["grade_pct"] == 4.0
        assert c.inputs["hysteresis_m"] == 3.0


# Quarter metres are exact in binary floating point, so reversal and offsets are exact too.
altitudes = st.lists(
    st.integers(min_value=-400, max_value=400).map(lambda k: k / 4),
    min_size=2,
    max_size=300,
)


def walk_profile(steps: list[float], base: float = 500.0) -> Profile:
    """A profile on whole 100 m segments from a list of altitude steps."""
    z = base + np.cumsum(np.array([0.0, *steps], dtype=np.float64))
    pad = (-(z.size - 1)) % 10
    z = np.concatenate([z, np.full(pad, z[-1])])
    return Profile(altitude_m=z, distance_m=10.0 * (z.size - 1))


class TestInvariants:
    """Properties that hold for any profile."""

    @settings(max_examples=200, deadline=None)
    @given(altitudes)
    def test_split_sums_to_distance(self, steps: list[float]) -> None:
        """uphill_m + downhill_m + flat_m equals the distance exactly."""
        c = classify(run(), walk_profile(steps), PARAMS)
        assert c.uphill_m + c.downhill_m + c.flat_m == c.distance_m
        assert min(c.uphill_m, c.downhill_m, c.flat_m) >= 0.0

    @settings(max_examples=200, deadline=None)
    @given(altitudes, st.floats(min_value=100.0, max_value=100000.0))
    def test_split_sums_to_reported_distance(self, steps: list[float], d: float) -> None:
        """With any reported distance the parts add up to it, or to 0 when the profile is too short.

        A profile covering under half the distance leaves the run unknown, and an unknown
        run has no terrain split (unknown is never flat).
        """
        profile = walk_profile(steps)
        c = classify(run(d), profile, PARAMS)
        if profile.distance_m < d / 2:
            assert c.label is Terrain.UNKNOWN
            assert c.uphill_m + c.downhill_m + c.flat_m == 0.0
        else:
            assert c.uphill_m + c.downhill_m + c.flat_m == d

    @settings(max_examples=200, deadline=None)
    @given(altitudes)
    def test_reversal_swaps_gain_and_loss(self, steps: list[float]) -> None:
        """Running a route backwards swaps gain and loss, and uphill and downhill."""
        fwd = walk_profile(steps)
        back = Profile(altitude_m=fwd.altitude_m[::-1].copy(), distance_m=fwd.distance_m)
        a = classify(run(), fwd, PARAMS)
        b = classify(run(), back, PARAMS)
        assert a.elevation_gain_m == pytest.approx(b.elevation_loss_m, abs=1e-9)
        assert a.elevation_loss_m == pytest.approx(b.elevation_gain_m, abs=1e-9)
        assert a.uphill_m == b.downhill_m
        assert a.downhill_m == b.uphill_m

    @settings(max_examples=200, deadline=None)
    @given(altitudes, st.integers(min_value=-400, max_value=4000))
    def test_constant_offset_changes_nothing(self, steps: list[float], offset: int) -> None:
        """Adding a constant to every altitude changes neither figures nor label."""
        p = walk_profile(steps)
        q = Profile(altitude_m=p.altitude_m + offset, distance_m=p.distance_m)
        a = classify(run(), p, PARAMS)
        b = classify(run(), q, PARAMS)
        assert a.label == b.label
        assert a.elevation_gain_m == pytest.approx(b.elevation_gain_m, abs=1e-9)
        assert a.elevation_loss_m == pytest.approx(b.elevation_loss_m, abs=1e-9)
        assert (a.uphill_m, a.downhill_m) == (b.uphill_m, b.downhill_m)

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=80)
    )
    def test_gain_never_negative_and_no_nan(self, alts: list[float]) -> None:
        """Any raw altitudes give a non-negative, finite gain and loss or none at all."""
        n = len(alts)
        track = Track(
            altitude_m=np.array(alts, dtype=np.float64),
            distance_m=np.arange(n, dtype=np.float64) * 7.0,
        )
        c = classify(run(), build_profile(track), PARAMS)
        for v in (c.elevation_gain_m, c.elevation_loss_m):
            assert v is None or (math.isfinite(v) and v >= 0.0)
        assert math.isfinite(c.distance_m)
        assert c.uphill_m + c.downhill_m + c.flat_m in (c.distance_m, 0.0)


SEMICIRCLE_DEG = 180.0 / 2**31


def read_fit_track(path: Path) -> Track:
    """A Track from a FIT file's record messages, read with fitdecode directly."""
    rows: list[tuple[float, float, float, float]] = []

    def num(v: object) -> float:
        return NAN if v is None else float(v)  # type: ignore[arg-type]

    with fitdecode.FitReader(path) as fit:
        for frame in fit:
            if not isinstance(frame, fitdecode.FitDataMessage) or frame.name != "record":
                continue
            alt = frame.get_value("enhanced_altitude", fallback=None)
            if alt is None:
                alt = frame.get_value("altitude", fallback=None)
            rows.append(
                (
                    num(alt),
                    num(frame.get_value("distance", fallback=None)),
                    num(frame.get_value("position_lat", fallback=None)) * SEMICIRCLE_DEG,
                    num(frame.get_value("position_long", fallback=None)) * SEMICIRCLE_DEG,
                )
            )
    a = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return Track(altitude_m=a[:, 0], distance_m=a[:, 1], lat=a[:, 2], lon=a[:, 3])


class TestRealDeviceFiles:
    """Real FIT files: the device's session totals are the reference."""

    def test_hilly_run_gain_within_10_percent(self, data_dir: Path) -> None:
        """The 2013 hilly loop's profile gain is within 10% of the device's 168 m, uphill."""
        track = read_fit_track(data_dir / "fit" / "2013-02-06-12-11-14.fit")
        profile = build_profile(track)
        assert profile is not None
        c = classify(run(), profile, PARAMS)
        assert c.elevation_gain_m == pytest.approx(168.0, rel=0.10)
        assert c.distance_m == pytest.approx(4835.0, abs=5.0)
        assert c.label is Terrain.UPHILL

    def test_hilly_run_positions_give_same_label(self, data_dir: Path) -> None:
        """Without the device distance, positions give nearly the same distance and label."""
        t = read_fit_track(data_dir / "fit" / "2013-02-06-12-11-14.fit")
        profile = build_profile(Track(altitude_m=t.altitude_m, lat=t.lat, lon=t.lon))
        assert profile is not None
        assert profile.distance_m == pytest.approx(4835.0, rel=0.03)
        assert classify(run(), profile, PARAMS).label is Terrain.UPHILL

    def test_fenix2_run_is_flat(self, data_dir: Path) -> None:
        """The fenix2 run (64 m over 9 km, with a spike at the start) is flat."""
        profile = build_profile(read_fit_track(data_dir / "fit" / "activity-small-fenix2-run.fit"))
        assert profile is not None
        c = classify(run(), profile, PARAMS)
        assert c.label is Terrain.FLAT
        assert c.elevation_gain_m is not None
        assert c.elevation_gain_m == pytest.approx(64.0, rel=0.25)

    def test_no_altitude_file_is_unknown(self, data_dir: Path) -> None:
        """compressed-speed-distance.fit has no altitude: no profile, label unknown."""
        track = read_fit_track(data_dir / "fit" / "compressed-speed-distance.fit")
        profile = build_profile(track)
        assert profile is None
        c = classify(run(10249.0), profile, PARAMS)
        assert c.label is Terrain.UNKNOWN
