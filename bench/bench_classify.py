"""Benchmark: hillsync's classification against the numpy floor of its steps and gpxpy.

Not a test. Run it as `.venv/bin/python -m bench.bench_classify`. Both sides get the same
points (lat/lon/altitude, one every ~3 m as a watch records at a run's pace): hillsync
derives the distance from the positions, cleans, resamples every 10 m, smooths, counts
gain/loss with hysteresis, splits into 100 m segments and labels; gpxpy only smooths and sums
the elevation steps. Building gpxpy's point objects is not timed (it is parsing, not
classification). The numpy floor is the two steps no classifier of positions can skip:
the distance from the positions (haversine) and the 10 m resampling (np.interp). Prints the
best of several runs and the ratios.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gpxpy.gpx
import numpy as np

from bench.common import Row
from hillsync.classify import build_profile, classify
from hillsync.model import Classification, ClassifyParams, Summary, Track

SIZES = (20_000, 50_000, 100_000)
REPEATS = 5
EARTH_M = 6_371_008.8


def numpy_floor(lat: np.ndarray, lon: np.ndarray, alt: np.ndarray) -> np.ndarray:
    """Distance from positions and a 10 m resampling: the least any classifier does."""
    la, lo = np.radians(lat), np.radians(lon)
    a = (
        np.sin(np.diff(la) / 2) ** 2
        + np.cos(la[:-1]) * np.cos(la[1:]) * np.sin(np.diff(lo) / 2) ** 2
    )
    d = np.empty(lat.shape[0])
    d[0] = 0.0
    np.cumsum(2 * EARTH_M * np.arcsin(np.sqrt(a)), out=d[1:])
    return np.interp(np.arange(0.0, float(d[-1]), 10.0), d, alt)


def make_route(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A wandering route of n samples ~3 m apart over rolling hills with sensor noise."""
    rng = np.random.default_rng(seed)
    heading = np.cumsum(rng.normal(0.0, 0.05, n))
    step = rng.normal(3.0, 0.3, n).clip(0.5)
    north = np.cumsum(step * np.cos(heading))
    east = np.cumsum(step * np.sin(heading))
    lat = 46.0 + north / 111_195.0
    lon = 7.0 + east / (111_195.0 * np.cos(np.radians(46.0)))
    d = np.cumsum(step)
    alt = (
        800.0
        + 60.0 * np.sin(d / 1500.0)
        + 25.0 * np.sin(d / 420.0 + 1.0)
        + 8.0 * np.sin(d / 90.0)
        + rng.normal(0.0, 0.8, n)
    )
    return lat, lon, alt


def best_of(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    """The fastest of `repeats` runs of fn, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def classify_rows(n: int, repeats: int = REPEATS) -> list[Row]:
    """hillsync's build_profile + classify of n points vs the numpy floor and vs gpxpy."""
    params = ClassifyParams()
    lat, lon, alt = make_route(n)
    segment = gpxpy.gpx.GPXTrackSegment(
        [
            gpxpy.gpx.GPXTrackPoint(la, lo, elevation=al)
            for la, lo, al in zip(lat.tolist(), lon.tolist(), alt.tolist(), strict=True)
        ]
    )

    def ours() -> Classification:
        profile = build_profile(Track(altitude_m=alt, lat=lat, lon=lon))
        return classify(Summary(sport="run", distance_m=None), profile, params)

    t_ours = best_of(ours, repeats)
    t_floor = best_of(lambda: numpy_floor(lat, lon, alt), repeats)
    t_gpxpy = best_of(segment.get_uphill_downhill, repeats)
    return [
        Row(
            f"classify {n:,} points",
            t_ours * 1e3,
            t_floor * 1e3,
            "ms",
            "numpy floor: haversine + 10 m interp",
            limit=1.3,
            on_ratio=True,
        ),
        Row(
            f"classify {n:,} points",
            t_ours * 1e3,
            t_gpxpy * 1e3,
            "ms",
            "gpxpy get_uphill_downhill",
        ),
    ]


def main() -> None:
    """Time both sides for every size and print the ratio."""
    params = ClassifyParams()
    print(
        f"{'points':>8} {'hillsync ms':>12} {'gpxpy ms':>10} {'ratio':>7}  label  gain/gpxpy-up m"
    )
    for n in SIZES:
        lat, lon, alt = make_route(n)
        segment = gpxpy.gpx.GPXTrackSegment(
            [
                gpxpy.gpx.GPXTrackPoint(la, lo, elevation=al)
                for la, lo, al in zip(lat.tolist(), lon.tolist(), alt.tolist(), strict=True)
            ]
        )

        def ours(
            lat: np.ndarray = lat, lon: np.ndarray = lon, alt: np.ndarray = alt
        ) -> Classification:
            profile = build_profile(Track(altitude_m=alt, lat=lat, lon=lon))
            return classify(Summary(sport="run", distance_m=None), profile, params)

        def theirs(segment: gpxpy.gpx.GPXTrackSegment = segment) -> object:
            return segment.get_uphill_downhill()

        t_ours = best_of(ours)
        t_theirs = best_of(theirs)
        result = ours()
        up = segment.get_uphill_downhill()
        print(
            f"{n:>8} {t_ours * 1e3:>12.2f} {t_theirs * 1e3:>10.2f} {t_ours / t_theirs:>7.3f}"
            f"  {result.label.value:<6} {result.elevation_gain_m:.0f}/{up.uphill:.0f}"
        )


if __name__ == "__main__":
    main()
