"""Reading FIT, GPX and TCX files (and .gz, zips) into activities."""

from __future__ import annotations

import functools
import gzip
import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from hillsync.errors import BadActivity
from hillsync.model import Activity
from hillsync.sources.fileformats import (
    describe_file_error,
    map_sport,
    read_activity,
    read_activity_bytes,
    read_activity_zip,
)


def _fit(data_dir: Path, name: str) -> Path:
    return data_dir / "fit" / name


@functools.cache
def _read_cached(path: Path) -> Activity:
    """fitdecode takes seconds over the 10,000-record ride: read each file once per session."""
    return read_activity(path)


class TestRealFitFiles:
    """The device files of tests/data/fit against what their README says."""

    @pytest.mark.parametrize(
        ("name", "sport", "distance", "gain", "loss"),
        [
            ("2013-02-06-12-11-14.fit", "run", 4835.0, 168.0, 160.0),
            ("activity-small-fenix2-run.fit", "run", 9008.0, 64.0, 61.0),
            ("garmin-edge-500-activity.fit", "ride", 92622.0, 541.0, 541.0),
            ("sample_mulitple_header.fit", "run", 9806.0, 2.0, 2.0),
        ],
    )
    def test_session_totals(
        self, data_dir: Path, name: str, sport: str, distance: float, gain: float, loss: float
    ) -> None:
        """Sport, distance and the device's own ascent and descent are read from the session."""
        a = _read_cached(_fit(data_dir, name))
        assert a.sport == sport
        assert a.distance_m == pytest.approx(distance, abs=2.0)
        assert a.reported_gain_m == gain
        assert a.reported_loss_m == loss
        assert a.start_time.tzinfo is UTC

    def test_hilly_loop_track(self, data_dir: Path) -> None:
        """The hilly loop has a full track: altitude, distance, positions and times."""
        a = read_activity(_fit(data_dir, "2013-02-06-12-11-14.fit"))
        assert a.track is not None
        assert len(a.track) == 590
        assert a.track.distance_m is not None
        assert a.track.lat is not None
        assert a.track.time_s is not None
        assert a.track.time_s[0] == 0.0
        assert np.nanmax(a.track.distance_m) == pytest.approx(4835.38)
        assert 200 < np.nanmin(a.track.altitude_m) < np.nanmax(a.track.altitude_m) < 500
        assert a.start_latlng is not None
        assert a.start_latlng[0] == pytest.approx(57.38, abs=0.01)
        assert a.start_time == datetime(2013, 2, 6, 12, 11, 14, tzinfo=UTC)
        assert a.moving_time_s == pytest.approx(2625.14)
        assert not a.indoor

    def test_multisport_run_leg(self, data_dir: Path) -> None:
        """A triathlon is described by its run leg only: its records, distance and start."""
        a = _read_cached(_fit(data_dir, "sample_mulitple_header.fit"))
        assert a.sport == "run"
        assert a.start_time == datetime(2018, 5, 27, 9, 23, 41, tzinfo=UTC)
        assert a.track is not None
        assert a.track.distance_m is not None
        assert np.nanmax(a.track.distance_m) == pytest.approx(9806, abs=20)
        assert a.raw is not None
        assert a.raw["multisport"] is True
        assert next(s["sport"] for s in a.raw["sessions"]) == "swimming"

    def test_chained_files_read_in_full(self, data_dir: Path) -> None:
        """Two FIT files chained in one are both read: their records and their sessions."""
        data = (
            _fit(data_dir, "2013-02-06-12-11-14.fit").read_bytes()
            + _fit(data_dir, "activity-unexpected-eof.fit").read_bytes()
        )
        a = read_activity_bytes(data, "chained.fit")
        assert a.track is not None
        assert len(a.track) == 590 + 14
        assert a.distance_m == pytest.approx(4835.38 + 5.73)
        assert a.track.segment is not None
        assert set(a.track.segment.tolist()) == {0, 1}

    def test_ride_is_not_a_run(self, data_dir: Path) -> None:
        """The Edge 500 ride is a "ride", which the worker will not count."""
        a = _read_cached(_fit(data_dir, "garmin-edge-500-activity.fit"))
        assert a.sport == "ride"
        assert not a.is_run

    def test_indoor_trainer(self, data_dir: Path) -> None:
        """A ride without positions or distance is indoor."""
        a = read_activity(_fit(data_dir, "sample-activity-indoor-trainer.fit"))
        assert a.sport == "ride"
        assert a.indoor

    def test_no_altitude(self, data_dir: Path) -> None:
        """A foot-pod run without altitude has no reported totals and an all-NaN altitude."""
        a = read_activity(_fit(data_dir, "compressed-speed-distance.fit"))
        assert a.sport == "run"
        assert a.distance_m == pytest.approx(10249, abs=1)
        assert a.reported_gain_m is None
        assert a.track is not None
        assert bool(np.isnan(a.track.altitude_m).all())
        assert a.start_time.year == 2012

    @pytest.mark.parametrize(
        ("name", "damage"),
        [
            ("activity-unexpected-eof.fit", "truncated"),
            ("activity-settings-corruptheader.fit", "corrupt header"),
        ],
    )
    def test_damaged_files_salvaged(self, data_dir: Path, name: str, damage: str) -> None:
        """What precedes a truncation or a corrupt second header is kept."""
        a = read_activity(_fit(data_dir, name))
        assert a.sport == "run"
        assert a.distance_m == pytest.approx(5.73)
        assert a.track is not None
        assert len(a.track) == 14
        assert a.raw is not None
        assert a.raw["damaged"] == damage

    def test_truncated_to_header_only(self, data_dir: Path) -> None:
        """A FIT file cut right after its header holds nothing usable: BadActivity."""
        data = _fit(data_dir, "2013-02-06-12-11-14.fit").read_bytes()[:20]
        with pytest.raises(BadActivity, match="no track points or records"):
            read_activity_bytes(data, "cut.fit")

    def test_raw_is_small_json(self, data_dir: Path) -> None:
        """`raw` is a small JSON-serialisable summary, not the file."""
        a = _read_cached(_fit(data_dir, "garmin-edge-500-activity.fit"))
        text = json.dumps(a.raw)
        assert len(text) < 4000
        assert a.raw is not None
        assert a.raw["device"]["garmin_product"] == "edge500"

    def test_bytes_and_zip(self, data_dir: Path) -> None:
        """The same FIT read from bytes or from a zip (Garmin's download) gives the same run."""
        data = _fit(data_dir, "activity-small-fenix2-run.fit").read_bytes()
        a = read_activity_bytes(data, "x.fit", source="garmin", source_id="42")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("42_ACTIVITY.fit", data)
        b = read_activity_zip(buf.getvalue(), source="garmin", source_id="42")
        assert (a.source, a.source_id) == ("garmin", "42")
        assert a.distance_m == b.distance_m == pytest.approx(9008.22)


class TestGpx:
    """GPX tracks, segments, times and types."""

    def test_moving_time_leaves_out_the_pause(self, data_dir: Path) -> None:
        """The pause between two segments counts in the elapsed time only."""
        a = read_activity(data_dir / "gpx" / "two-segments.gpx")
        assert a.elapsed_time_s is not None
        assert a.moving_time_s is not None
        assert 0 < a.moving_time_s < a.elapsed_time_s

    def test_segments_gap_not_counted(self, data_dir: Path) -> None:
        """Two 1 km segments 5 km apart make 2 km, not 7 km."""
        a = read_activity(data_dir / "gpx" / "two-segments.gpx")
        assert a.distance_m == pytest.approx(2000, rel=0.01)
        assert a.track is not None
        assert a.track.segment is not None
        assert set(a.track.segment.tolist()) == {0, 1}
        assert a.sport == "run"
        assert a.name == "Two segments"
        assert a.start_time == datetime(2026, 5, 3, 7, 0, tzinfo=UTC)

    def test_tracks_and_strava_type_code(self, data_dir: Path) -> None:
        """Two tracks are one activity, and Strava's type code 9 is a run."""
        a = read_activity(data_dir / "gpx" / "two-tracks.gpx")
        assert a.sport == "run"
        assert a.distance_m == pytest.approx(2000, rel=0.01)

    def test_no_times_uses_mtime(self, data_dir: Path) -> None:
        """A GPX without any time starts at the file's mtime, and says so."""
        path = data_dir / "gpx" / "no-times.gpx"
        a = read_activity(path)
        assert a.track is not None
        assert a.track.time_s is None
        assert a.raw is not None
        assert a.raw["start_time_from"] == "mtime"
        assert a.start_time == datetime.fromtimestamp(path.stat().st_mtime, UTC)
        assert np.nanmax(a.track.altitude_m) == pytest.approx(590)

    def test_metadata_time(self, data_dir: Path) -> None:
        """A GPX without point times but with a metadata time starts then."""
        a = read_activity(data_dir / "gpx" / "metadata-time.gpx")
        assert a.start_time == datetime(2026, 4, 1, 6, 30, tzinfo=UTC)

    def test_route_only(self, data_dir: Path) -> None:
        """A GPX holding only a route is not an activity, and the error says what it is."""
        with pytest.raises(
            BadActivity, match=r"a route \(planned, not recorded\), not an activity"
        ):
            read_activity(data_dir / "gpx" / "route-only.gpx")

    def test_ride_type(self, data_dir: Path) -> None:
        """A GPX of type cycling is a ride."""
        assert read_activity(data_dir / "gpx" / "ride.gpx").sport == "ride"

    def test_gzip(self, data_dir: Path) -> None:
        """A .gpx.gz reads like the plain file."""
        a = read_activity(data_dir / "gpx" / "two-segments.gpx.gz")
        b = read_activity(data_dir / "gpx" / "two-segments.gpx")
        assert a.distance_m == b.distance_m

    def test_gzipped_fit(self, data_dir: Path) -> None:
        """A .fit.gz reads like the plain FIT."""
        data = gzip.compress(_fit(data_dir, "2013-02-06-12-11-14.fit").read_bytes())
        assert read_activity_bytes(data, "a.fit.gz").reported_gain_m == 168.0


class TestTcx:
    """TCX activities."""

    def test_run(self, data_dir: Path) -> None:
        """Trackpoints, lap totals and the Id time are read."""
        a = read_activity(data_dir / "tcx" / "run.tcx")
        assert a.sport == "run"
        assert a.distance_m == pytest.approx(1112.0)
        assert a.moving_time_s == pytest.approx(600.0)
        assert a.start_time == datetime(2026, 5, 3, 7, 0, tzinfo=UTC)
        assert a.track is not None
        assert len(a.track) == 101
        assert a.track.altitude_m[-1] == pytest.approx(530.0)

    def test_blank_lines_before_declaration(self, data_dir: Path) -> None:
        """A TCX with blank lines before its XML declaration (Garmin exports) still reads."""
        data = b"\n\n   " + (data_dir / "tcx" / "run.tcx").read_bytes()
        assert read_activity_bytes(data, "run.tcx").distance_m == pytest.approx(1112.0)

    def test_entities_not_expanded(self) -> None:
        """An XML entity bomb is refused or left unexpanded, never blown up in memory."""
        bomb = (
            b'<?xml version="1.0"?><!DOCTYPE gpx [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            b'<gpx xmlns="http://www.topografix.com/GPX/1/1"><trk><name>&b;</name>'
            b'<trkseg><trkpt lat="1" lon="2"/></trkseg></trk></gpx>'
        )
        a = read_activity_bytes(bomb, "bomb.gpx")
        assert a.name is None or "aaaaaaaaaa" * 10 not in a.name

    def test_sports(self, data_dir: Path) -> None:
        """Biking is a ride; Other says nothing, so the sport comes from the movement.

        other.tcx moves 1112 m in 600 s (1.85 m/s, its own lap figures): walking pace.
        """
        assert read_activity(data_dir / "tcx" / "ride.tcx").sport == "ride"
        other = data_dir / "tcx" / "other.tcx"
        assert read_activity(other).sport == "walk"
        assert read_activity(other, untyped="run").sport == "run"


class TestBadFiles:
    """Files that are not activities give a clean BadActivity with a short reason."""

    @pytest.mark.parametrize(
        ("name", "reason"),
        [
            ("empty.gpx", "empty file"),
            ("notes.gpx", "not a GPX file"),
            ("notes.fit", "not a FIT file"),
            ("notes.txt", "unknown file type"),
            ("truncated.gpx.gz", "truncated gzip"),
            ("not-gzip.fit.gz", "not a gzip file"),
        ],
    )
    def test_reason(self, data_dir: Path, name: str, reason: str) -> None:
        """Each damaged file names what is wrong in one line."""
        with pytest.raises(BadActivity, match=reason) as info:
            read_activity(data_dir / "bad" / name)
        assert "\n" not in str(info.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is a BadActivity, not an OSError."""
        with pytest.raises(BadActivity, match="file not found"):
            read_activity(tmp_path / "gone.fit")

    def test_random_bytes_after_fit_header(self, data_dir: Path) -> None:
        """A FIT header followed by garbage never raises anything but BadActivity."""
        head = _fit(data_dir, "2013-02-06-12-11-14.fit").read_bytes()[:14]
        rng = np.random.default_rng(1)
        reasons: list[str] = []
        for _ in range(30):
            data = head + rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
            try:
                read_activity_bytes(data, "r.fit")
            except BadActivity as exc:
                reasons.append(describe_file_error(exc))
        assert all(r and "\n" not in r for r in reasons)


class TestSportMapping:
    """Sport names from files and exports onto hillsync's."""

    @pytest.mark.parametrize(
        ("name", "sport"),
        [
            ("Run", "run"),
            ("Trail Run", "trail_run"),
            ("trail_running", "trail_run"),
            ("VirtualRun", "virtual_run"),
            ("Ride", "ride"),
            ("9", "run"),
            ("17", "ride"),
            ("53", "virtual_run"),
            ("16", "swim"),
            (None, "unknown"),
            ("Other", "unknown"),
            ("Parkour", "other"),
            ("Walk", "walk"),
        ],
    )
    def test_map(self, name: str | None, sport: str) -> None:
        """Known names map to hillsync's; a missing one is unknown, an unknown one other."""
        assert map_sport(name) == sport


class TestDamagedBytes:
    """Damaged content anywhere in a file is a clear rejection, never another exception."""

    def test_salvaged_before_an_assertion(self, data_dir: Path) -> None:
        """A file on which fitdecode asserts keeps what precedes the damage, and says so."""
        activity = read_activity(data_dir / "fit" / "damaged" / "bad_AssertionError.fit")
        assert activity.raw is not None
        assert "AssertionError" in activity.raw["damaged"]

    @pytest.mark.parametrize(
        ("name", "kind"), [("bad_IndexError.fit", "ValueError"), ("bad_TypeError.fit", "TypeError")]
    )
    def test_rejected_when_nothing_holds(self, data_dir: Path, name: str, kind: str) -> None:
        """Files that once escaped as IndexError/TypeError are a one-line BadActivity."""
        with pytest.raises(BadActivity, match=f"damaged FIT file \\({kind}\\)"):
            read_activity(data_dir / "fit" / "damaged" / name)

    @pytest.mark.parametrize(
        "name",
        [
            "2013-02-06-12-11-14.fit",
            "activity-small-fenix2-run.fit",
            "compressed-speed-distance.fit",
            "activity-unexpected-eof.fit",
        ],
    )
    def test_random_byte_flips(self, data_dir: Path, name: str) -> None:
        """Seeded mutations of a real file each give an activity or BadActivity."""
        import random

        from hillsync.model import ClassifyParams
        from hillsync.pipeline import classify_activity

        data = (data_dir / "fit" / name).read_bytes()
        rng = random.Random(name)
        outcomes = {"read": 0, "rejected": 0}
        for _ in range(25):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            try:
                activity = read_activity_bytes(bytes(mutated), name)
            except BadActivity:
                outcomes["rejected"] += 1
                continue
            classify_activity(activity, ClassifyParams())
            outcomes["read"] += 1
        assert sum(outcomes.values()) == 25
