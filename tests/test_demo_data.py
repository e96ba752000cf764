"""Tests of the bundled demo activities (read with gpxpy and lxml, not the app's reader)."""

from __future__ import annotations

import functools
import gzip
import importlib.util
import itertools
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import gpxpy
import gpxpy.gpx
import numpy as np
import pytest
from lxml import etree

DEMO = Path(__file__).parent.parent / "src" / "hillsync" / "demo"
SCRIPT = Path(__file__).parent.parent / "scripts" / "make_demo_data.py"
FIRST = datetime(2026, 10, 19, tzinfo=UTC)
LAST = datetime(2026, 11, 30, tzinfo=UTC)  # the end of 2026-11-29
GPX_NS = {"g": "http://www.topografix.com/GPX/1/1"}
TCX_NS = {"t": "http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"}


def _gpx_files() -> list[Path]:
    return sorted(p for p in DEMO.iterdir() if p.name.endswith((".gpx", ".gpx.gz")))


def _read(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.suffix == ".gz" else raw


@dataclass(frozen=True)
class Track:
    """One GPX file's track, read with lxml."""

    kind: str
    times: list[datetime]
    lat: np.ndarray
    lon: np.ndarray
    ele: np.ndarray


@functools.cache
def _track(path: Path) -> Track:
    root = etree.fromstring(_read(path))
    pts = root.findall(".//g:trkpt", GPX_NS)
    return Track(
        kind=root.findtext(".//g:trk/g:type", namespaces=GPX_NS) or "",
        times=[datetime.fromisoformat(p.findtext("g:time", namespaces=GPX_NS) or "") for p in pts],
        lat=np.array([float(p.get("lat") or "nan") for p in pts]),
        lon=np.array([float(p.get("lon") or "nan") for p in pts]),
        ele=np.array([float(p.findtext("g:ele", namespaces=GPX_NS) or "nan") for p in pts]),
    )


def _gain_per_km(track: Track) -> tuple[float, float, float]:
    """Distance (km), gain and loss per km after 50 m smoothing and a 3 m hysteresis."""
    lat, lon = np.radians(track.lat), np.radians(track.lon)
    h = (
        np.sin(np.diff(lat) / 2) ** 2
        + np.cos(lat[:-1]) * np.cos(lat[1:]) * np.sin(np.diff(lon) / 2) ** 2
    )
    dist = np.concatenate([[0.0], np.cumsum(2 * 6_371_008.8 * np.arcsin(np.sqrt(h)))])
    grid = np.arange(0.0, dist[-1], 10.0)
    alt = np.convolve(
        np.pad(np.interp(grid, dist, track.ele), 2, mode="edge"), np.ones(5) / 5, "valid"
    )
    gain = loss = 0.0
    ref = alt[0]
    for a in alt[1:]:
        if a - ref >= 3.0:
            gain, ref = gain + a - ref, a
        elif ref - a >= 3.0:
            loss, ref = loss + ref - a, a
    km = dist[-1] / 1000
    return km, gain / km, loss / km


class TestFiles:
    """The demo folder holds small, parseable GPX and TCX files."""

    def test_contents(self) -> None:
        """There are plain and gzipped GPX files and one treadmill TCX, under 3 MB in all."""
        names = [p.name for p in DEMO.iterdir()]
        assert sum(n.endswith(".gpx") for n in names) >= 10
        assert sum(n.endswith(".gpx.gz") for n in names) >= 3
        assert sum(n.endswith(".tcx") for n in names) == 1
        assert sum(p.stat().st_size for p in DEMO.iterdir()) < 3_000_000

    def test_gpx_parse_with_gpxpy(self) -> None:
        """GPX files (every fourth: gpxpy is slow) parse with gpxpy, with altitude and time."""
        for path in _gpx_files()[::4]:
            gpx = gpxpy.parse(_read(path).decode("utf-8"))
            points = [p for t in gpx.tracks for s in t.segments for p in s.points]
            assert len(points) > 500, path.name
            assert all(p.elevation is not None for p in points), path.name
            assert all(p.time is not None for p in points), path.name
            assert len(points) == len(_track(path).times), path.name

    def test_sampling(self) -> None:
        """Points are 1 s or 3 s apart (the last one closes the run at its end time)."""
        for path in _gpx_files():
            times = _track(path).times
            steps = {(b - a).total_seconds() for a, b in itertools.pairwise(times[:-1])}
            assert steps <= {1.0, 3.0}, path.name

    def test_dates_span_six_weeks(self) -> None:
        """Activities run from the week of 2026-10-19 to 2026-11-29, in UTC."""
        starts = []
        for path in _gpx_files():
            times = _track(path).times
            starts.append(times[0])
            assert times[0] >= FIRST, path.name
            assert times[-1] < LAST, path.name
            assert times[0].utcoffset() == timedelta(0)
        assert min(starts) < FIRST + timedelta(days=7)
        assert max(starts).date().isoformat() == "2026-11-29"

    def test_treadmill_tcx(self) -> None:
        """The treadmill TCX is a run with distance and time but no position or altitude."""
        [path] = [p for p in DEMO.iterdir() if p.suffix == ".tcx"]
        tree = etree.parse(str(path))
        [activity] = tree.findall(".//t:Activity", TCX_NS)
        assert activity.get("Sport") in ("Running", "Other")
        points = tree.findall(".//t:Trackpoint", TCX_NS)
        assert len(points) > 500
        assert tree.findall(".//t:Position", TCX_NS) == []
        assert tree.findall(".//t:AltitudeMeters", TCX_NS) == []
        dist = [float(p.findtext("t:DistanceMeters", namespaces=TCX_NS) or "nan") for p in points]
        assert dist[-1] == pytest.approx(10_000, rel=0.05)
        assert np.all(np.diff(dist) >= 0)

    def test_one_ride(self) -> None:
        """Exactly one GPX track is a ride (type cycling); every other one is running."""
        types = [_track(p).kind for p in _gpx_files()]
        assert types.count("cycling") == 1
        assert set(types) == {"running", "cycling"}


class TestTerrain:
    """The runs have the terrain the demo's story needs."""

    @pytest.fixture
    def runs(self) -> list[tuple[str, datetime, float, float, float]]:
        out = []
        for path in _gpx_files():
            track = _track(path)
            if track.kind == "running":
                out.append((path.name, track.times[0], *_gain_per_km(track)))
        return out

    def test_kinds_of_runs(self, runs: list[tuple[str, datetime, float, float, float]]) -> None:
        """There are flat runs (< 5 m/km), hilly loops (25-40 m/km) and three big descents."""
        flat = [r for r in runs if r[3] < 5 and r[4] < 5]
        hilly = [r for r in runs if 25 <= r[3] <= 40 and abs(r[3] - r[4]) < 3]
        downhill = [r for r in runs if r[4] > 30 and r[3] < 5 and r[4] * r[2] > 500]
        assert len(flat) >= 10
        assert len(hilly) >= 6
        assert len(downhill) == 3
        assert len(flat) + len(hilly) + len(downhill) == len(runs)

    def test_last_four_weeks_too_hilly(
        self, runs: list[tuple[str, datetime, float, float, float]]
    ) -> None:
        """In the 28 days to 2026-11-29 the hill share is 40-50 %, far above a marathon's 25 %.

        One descent falls in the window, so the demo shows every label, but the downhill
        share stays under a marathon's 10 % (the warning is about hills, not descents).
        """
        window = [r for r in runs if r[1] >= LAST - timedelta(days=28)]
        assert len(window) >= 15
        total = sum(r[2] for r in window)
        downhill = sum(r[2] for r in window if r[4] >= 15 and r[4] >= 1.5 * r[3])
        uphill = sum(r[2] for r in window if r[3] >= 15 and not r[4] >= 1.5 * r[3])
        assert 0.40 <= uphill / total <= 0.50
        assert 0 < downhill / total < 0.10


class TestGenerator:
    """The generator is deterministic."""

    def test_regenerates_identical_files(self, tmp_path: Path) -> None:
        """Running the script again gives byte-identical files to the committed ones."""
        spec = importlib.util.spec_from_file_location("make_demo_data", SCRIPT)
        assert spec is not None
        assert spec.loader is not None
        module: ModuleType = importlib.util.module_from_spec(spec)
        sys.modules["make_demo_data"] = module
        try:
            spec.loader.exec_module(module)
            written = module.main(tmp_path)
        finally:
            del sys.modules["make_demo_data"]
        assert sorted(p.name for p in written) == sorted(p.name for p in DEMO.iterdir())
        for path in written:
            assert path.read_bytes() == (DEMO / path.name).read_bytes(), path.name
