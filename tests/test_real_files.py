"""What a runner's folder really holds: untyped files, several activities, multisport,
partial elevation, files that are not activities, and files cut off or damaged."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import fitdecode
import numpy as np
import pytest

from hillsync.classify import classify
from hillsync.cli import main
from hillsync.errors import BadActivity
from hillsync.model import ClassifyParams, Profile, Summary, Terrain
from hillsync.pipeline import classify_activity
from hillsync.sources.fileformats import read_activities, read_activity, read_activity_bytes
from realfiles import (
    FIT,
    fit_records,
    fit_sessions,
    gpx,
    leg,
    tcx,
    tcx_activity,
    with_file_type,
)

PARAMS = ClassifyParams()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def classify_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], *files: Path) -> object:
    """`hillsync classify --json FILE...` run in-process with no config."""
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    main(["classify", "--json", *map(str, files)], environ=env)
    return json.loads(capsys.readouterr().out)


class TestUntypedSport:
    """A file that does not state its sport gets the sport its movement shows."""

    def test_untyped_ride_is_a_ride(self, tmp_path: Path) -> None:
        """The Edge 500's ride, exported as GPX without <type>, is a ride (the device: cycling)."""
        assert fit_sessions("garmin-edge-500-activity.fit")[0].sport == "cycling"
        path = write(tmp_path, "ride.gpx", gpx(fit_records("garmin-edge-500-activity.fit")))
        activity = read_activity(path)
        assert activity.sport == "ride"
        assert activity.raw is not None
        assert activity.raw["sport_from"] == "inferred"

    def test_untyped_run_is_a_run(self, tmp_path: Path) -> None:
        """The fenix 2's run, exported as GPX without <type>, is a run (the device: running)."""
        assert fit_sessions("activity-small-fenix2-run.fit")[0].sport == "running"
        path = write(tmp_path, "run.gpx", gpx(fit_records("activity-small-fenix2-run.fit")))
        assert read_activity(path).sport == "run"

    def test_untyped_swim_is_a_swim(self, tmp_path: Path) -> None:
        """The triathlon's open-water leg as a TCX Sport="Other" is a swim (device: swimming)."""
        name = "sample_mulitple_header.fit"
        swim = fit_sessions(name)[0]
        assert swim.sport == "swimming"
        points = leg(fit_records(name), swim)
        path = write(tmp_path, "swim.tcx", tcx([tcx_activity(points, "Other")]))
        assert read_activity(path).sport == "swim"

    def test_slow_hilly_run_cannot_be_told_apart(self, tmp_path: Path) -> None:
        """The 2013 hilly loop moves at 2.2 m/s, between walking and running: unknown, not a run."""
        points = fit_records("2013-02-06-12-11-14.fit")
        path = write(tmp_path, "hilly.gpx", gpx(points))
        activity = read_activity(path)
        assert activity.sport == "unknown"
        assert not activity.is_run

    def test_untyped_run_setting(self, tmp_path: Path) -> None:
        """`untyped = "run"` takes every untyped file as a run, as before (a runs-only folder)."""
        path = write(tmp_path, "ride.gpx", gpx(fit_records("2013-02-06-12-11-14.fit")))
        assert read_activity(path, untyped="run").sport == "run"

    def test_stated_sport_is_kept(self, tmp_path: Path) -> None:
        """A file that states its sport keeps it, whatever the movement looks like."""
        points = fit_records("garmin-edge-500-activity.fit")
        path = write(tmp_path, "typed.gpx", gpx(points, sport="running"))
        assert read_activity(path).sport == "run"


class TestStravaTypeCodes:
    """Strava's GPX exports write the activity type as a number."""

    @pytest.mark.parametrize(
        ("code", "sport"),
        [("1", "ride"), ("9", "run"), ("10", "walk"), ("16", "swim"), ("17", "ride"),
         ("53", "virtual_run"), ("4", "hike"), ("99", "other")],
    )  # fmt: skip
    def test_code(self, tmp_path: Path, code: str, sport: str) -> None:
        """Each code is its Strava type (17 = VirtualRide is no run); an unknown code is no run."""
        points = fit_records("activity-small-fenix2-run.fit")[:300]
        path = write(tmp_path, "strava.gpx", gpx(points, sport=code, creator="StravaGPX"))
        assert read_activity(path).sport == sport


class TestSeveralActivities:
    """A TCX holding several <Activity> elements gives one activity each."""

    @pytest.fixture
    def three(self, tmp_path: Path) -> Path:
        runs = [
            tcx_activity(fit_records("activity-small-fenix2-run.fit"), "Running"),
            tcx_activity(fit_records("2013-02-06-12-11-14.fit"), "Running"),
            tcx_activity(fit_records("garmin-edge-500-activity.fit")[:3000], "Biking"),
        ]
        return write(tmp_path, "three.tcx", tcx(runs))

    def test_each_activity_read(self, three: Path) -> None:
        """Three activities, parts 1-3, each with its own sport and distance."""
        activities = read_activities(three, source_id="three.tcx")
        assert [a.part for a in activities] == [1, 2, 3]
        assert [a.source_id for a in activities] == [f"three.tcx#{k}" for k in (1, 2, 3)]
        assert [a.sport for a in activities] == ["run", "run", "ride"]
        # The device totals (README of tests/data/fit) of the two runs.
        assert activities[0].distance_m == pytest.approx(9008.22, rel=1e-3)
        assert activities[1].distance_m == pytest.approx(4835.38, rel=1e-3)

    def test_classify_json_parts(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], three: Path
    ) -> None:
        """`classify --json` gives one object per activity, same file, with a part key."""
        rows = classify_json(tmp_path, capsys, three)
        assert isinstance(rows, list)
        assert [r["part"] for r in rows] == [1, 2, 3]
        assert {r["file"] for r in rows} == {str(three)}
        assert all(r["reason"] and r["elevation_source"] == "profile" for r in rows)


class TestMultisport:
    """A multisport file is described by its running legs only, with their own distances."""

    def test_fit_run_leg(self) -> None:
        """The triathlon FIT is its 9806 m run leg (device total), distance never backwards."""
        a = read_activity(FIT / "sample_mulitple_header.fit")
        run_leg = next(
            s for s in fit_sessions("sample_mulitple_header.fit") if s.sport == "running"
        )
        assert a.sport == "run"
        assert a.distance_m == pytest.approx(run_leg.distance_m)
        assert a.track is not None
        assert a.track.distance_m is not None
        d = a.track.distance_m[np.isfinite(a.track.distance_m)]
        assert bool(np.all(np.diff(d) >= 0))
        assert d.max() == pytest.approx(run_leg.distance_m, rel=0.01)

    def test_tcx_multisport_session(self, tmp_path: Path) -> None:
        """The same triathlon as a TCX MultiSportSession: its Running leg alone."""
        name = "sample_mulitple_header.fit"
        points = fit_records(name)
        legs = [s for s in fit_sessions(name) if s.sport != "transition"]
        sport = {"swimming": "Other", "cycling": "Biking", "running": "Running"}
        acts = [tcx_activity(leg(points, s), sport[s.sport], s.distance_m) for s in legs]
        path = write(tmp_path, "tri.tcx", tcx(acts, multisport=True))
        activities = read_activities(path)
        assert len(activities) == 1
        a = activities[0]
        run_leg = next(s for s in legs if s.sport == "running")
        assert a.sport == "run"
        assert a.distance_m == pytest.approx(run_leg.distance_m)
        assert a.start_time == run_leg.start


class TestCoverage:
    """Gain per km counts over the distance that has elevation; too little is unknown."""

    def test_short_coverage_is_unknown(self, tmp_path: Path) -> None:
        """Elevation on the first 40 % of the fenix 2 run only: unknown, with the reason."""
        points = fit_records("activity-small-fenix2-run.fit")
        cut = int(len(points) * 0.4)
        text = gpx(points[:cut]) + ""
        rest = gpx(points[cut:], with_ele=False)
        # One track: the first part with <ele>, the rest without.
        body = text.split("<trkseg>\n", 1)[1].split("</trkseg>", 1)[0]
        body += rest.split("<trkseg>\n", 1)[1].split("</trkseg>", 1)[0]
        head = text.split("<trkseg>\n", 1)[0]
        path = write(tmp_path, "part.gpx", f"{head}<trkseg>\n{body}</trkseg></trk></gpx>\n")
        activity = read_activity(path)
        _, c = classify_activity(activity, PARAMS)
        assert c.label is Terrain.UNKNOWN
        assert c.reason.startswith("elevation covers ")
        assert c.reason.endswith(": unknown")
        covered = float(c.inputs["covered_m"])
        assert covered / c.distance_m == pytest.approx(0.4, abs=0.05)

    def test_short_track_not_divided_by_session_distance(self) -> None:
        """16 m of track for a 180 km session: unknown, never flat."""
        profile = Profile(altitude_m=np.array([500.0, 500.5, 501.0]), distance_m=16.0)
        c = classify(Summary(sport="run", distance_m=180_000.0), profile, PARAMS)
        assert c.label is Terrain.UNKNOWN
        assert c.reason == "elevation covers 0.0 of 180 km: unknown"

    def test_reason_names_the_figures(self, tmp_path: Path) -> None:
        """The hilly loop's reason states its device totals: 168 m up over 4.8 km."""
        a = read_activity(FIT / "2013-02-06-12-11-14.fit")
        _, c = classify_activity(a, PARAMS)
        assert c.elevation_source == "device"
        assert c.reason == "168 m up over 4.8 km = 35 m/km >= 15: uphill"


class TestNotActivities:
    """Files that are not activities say what they are, in one line."""

    @pytest.mark.parametrize(
        ("file_type", "what"),
        [(6, "a course (planned route), not an activity"),
         (5, "a workout (planned training), not an activity"),
         (2, "device settings, not an activity"),
         (15, "daily monitoring data, not an activity")],
    )  # fmt: skip
    def test_fit_file_types(self, file_type: int, what: str) -> None:
        """A real FIT file whose file_id says course/workout/settings/monitoring is refused."""
        data = with_file_type((FIT / "activity-small-fenix2-run.fit").read_bytes(), file_type)
        with pytest.raises(BadActivity) as info:
            read_activity_bytes(data, "x.fit")
        assert str(info.value) == what

    def test_gpx_waypoints_only(self, tmp_path: Path) -> None:
        """A GPX holding only waypoints is not an activity."""
        text = (
            '<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
            '<wpt lat="46.0" lon="7.0"><name>hut</name></wpt></gpx>'
        )
        with pytest.raises(BadActivity, match="only waypoints, not an activity"):
            read_activity(write(tmp_path, "w.gpx", text))


class TestSalvage:
    """Files cut off or never finished keep their complete points, with a warning."""

    def test_unfinished_header_fit(self) -> None:
        """A crashed device's FIT (data size 0 in the header, no CRC) is read, not refused."""
        data = (FIT / "activity-small-fenix2-run.fit").read_bytes()
        size = data[0]
        cut = size + (len(data) - size) * 2 // 3
        crashed = bytearray(data[:cut])
        struct.pack_into("<I", crashed, 4, 0)
        crashed[12:14] = b"\0\0"
        a = read_activity_bytes(bytes(crashed), "crashed.fit")
        assert a.warning is not None
        assert a.warning.startswith("unfinished header")
        # fitdecode reading the same bytes with a correct header: the complete records.
        fixed = bytearray(data[:cut])
        struct.pack_into("<I", fixed, 4, cut - size - 2)
        expected = 0.0
        reader = fitdecode.FitReader(
            bytes(fixed),
            check_crc=fitdecode.CrcCheck.DISABLED,
            error_handling=fitdecode.ErrorHandling.IGNORE,
        )
        try:
            for frame in reader:
                if isinstance(frame, fitdecode.FitDataMessage) and frame.name == "record":
                    expected = frame.get_value("distance", fallback=None) or expected
        except (fitdecode.FitError, AssertionError):
            pass  # the cut ends mid-record: what came before is what counts
        assert a.distance_m == pytest.approx(expected, abs=5.0)
        assert 0.5 * 9008 < expected < 0.8 * 9008

    @pytest.mark.parametrize("kind", ["gpx", "tcx"])
    def test_half_written_xml(self, tmp_path: Path, kind: str) -> None:
        """A GPX or TCX cut mid-file keeps exactly its complete points, with a warning."""
        points = fit_records("activity-small-fenix2-run.fit")
        text = gpx(points) if kind == "gpx" else tcx([tcx_activity(points, "Running")])
        cut = text[: len(text) // 2]
        closing = "</trkpt>" if kind == "gpx" else "</Trackpoint>"
        path = write(tmp_path, f"half.{kind}", cut)
        a = read_activity(path)
        assert a.track is not None
        assert len(a.track) == cut.count(closing)
        assert a.warning is not None
        assert a.warning.startswith("truncated")
        assert a.sport == "run"


class TestFitCrc:
    """A flipped bit in a real FIT file never changes a figure silently."""

    FIGURES = ("label", "distance_m", "elevation_gain_m", "elevation_loss_m", "uphill_m")

    @pytest.mark.parametrize("name", ["2013-02-06-12-11-14.fit", "activity-small-fenix2-run.fit"])
    def test_bit_flips(self, name: str) -> None:
        """Each of 40 seeded single-bit flips in the data area: rejected, warned, or unchanged."""
        data = (FIT / name).read_bytes()
        _, base = classify_activity(read_activity_bytes(data, name), PARAMS)
        rng = random.Random(f"crc-{name}")
        outcomes = {"rejected": 0, "warned": 0, "unchanged": 0}
        for _ in range(40):
            flipped = bytearray(data)
            pos = rng.randrange(data[0], len(data))
            flipped[pos] ^= 1 << rng.randrange(8)
            try:
                activity = read_activity_bytes(bytes(flipped), name)
            except BadActivity:
                outcomes["rejected"] += 1
                continue
            if activity.warning:
                outcomes["warned"] += 1
                continue
            _, c = classify_activity(activity, PARAMS)
            assert [getattr(c, f) for f in self.FIGURES] == [
                getattr(base, f) for f in self.FIGURES
            ], f"silent change from a flip at byte {pos}"
            outcomes["unchanged"] += 1
        assert outcomes["rejected"] + outcomes["warned"] >= 38


class TestWhyStored:
    """`activities --json` carries each run's elevation_source and reason, kept in the store."""

    def test_sync_then_activities(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A synced hilly FIT run says device totals and why it is uphill; reclassify keeps it."""
        folder = tmp_path / "runs"
        folder.mkdir()
        (folder / "hilly.fit").write_bytes((FIT / "2013-02-06-12-11-14.fit").read_bytes())
        config = tmp_path / "config.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "h.db"}"\n\n'
            f'[[sources.folder]]\npath = "{folder}"\n'
        )
        env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
        assert main(["--config", str(config), "sync"], environ=env) == 0
        capsys.readouterr()
        for command in (["activities", "--json"], ["reclassify"]):
            main(["--config", str(config), *command], environ=env)
        out = capsys.readouterr().out
        runs = json.loads(out[: out.rindex("]") + 1])
        assert [(r["elevation_source"], r["reason"]) for r in runs] == [
            ("device", "168 m up over 4.8 km = 35 m/km >= 15: uphill")
        ]


class FolderCli:
    """`hillsync` run in-process on one folder source and a throw-away SQLite database."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.folder = tmp_path / "runs"
        self.folder.mkdir()
        self.config = tmp_path / "config.toml"
        self.config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "h.db"}"\n\n'
            f'[[sources.folder]]\npath = "{self.folder}"\n'
        )
        self.env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str]:
        code = main(["--config", str(self.config), *args], environ=self.env)
        return code, self.capsys.readouterr().out

    def sources(self) -> list[str]:
        code, out = self("activities", "--json")
        assert code == 0
        return sorted(s["source_id"] for r in json.loads(out) for s in r["sources"])

    def copy(self, name: str, target: str | None = None) -> Path:
        path = self.folder / (target or name)
        path.write_bytes((FIT / name).read_bytes())
        return path


@pytest.fixture
def folder_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> FolderCli:
    return FolderCli(tmp_path, capsys)


class TestFolderCompleteness:
    """A folder's files are judged complete by their content, never by their age."""

    def test_copy_then_sync(self, folder_cli: FolderCli) -> None:
        """Files copied a moment ago are imported by the very next sync, with every count."""
        folder_cli.copy("activity-small-fenix2-run.fit")
        folder_cli.copy("2013-02-06-12-11-14.fit")
        code, out = folder_cli("sync")
        assert code == 0
        assert "folder: 2 new, 0 updated, 0 deleted, 0 rejected, 0 waiting" in out
        assert folder_cli.sources() == ["2013-02-06-12-11-14.fit", "activity-small-fenix2-run.fit"]

    def test_half_written_waits(self, folder_cli: FolderCli) -> None:
        """A FIT still being written (cut, just changed) waits, then is read once complete."""
        data = (FIT / "activity-small-fenix2-run.fit").read_bytes()
        path = folder_cli.folder / "live.fit"
        path.write_bytes(data[: len(data) // 2])
        code, out = folder_cli("sync")
        assert code == 0
        assert "0 new, 0 updated, 0 deleted, 0 rejected, 1 waiting" in out
        assert folder_cli.sources() == []
        path.write_bytes(data)
        _code, out = folder_cli("sync")
        assert "1 new" in out
        assert "0 waiting" in out
        assert folder_cli.sources() == ["live.fit"]

    def test_restore_after_delete(self, folder_cli: FolderCli, tmp_path: Path) -> None:
        """A file moved away (sync --full deletes its run) and moved back is imported again."""
        path = folder_cli.copy("activity-small-fenix2-run.fit")
        folder_cli.copy("2013-02-06-12-11-14.fit")
        folder_cli("sync")
        aside = tmp_path / "aside.fit"
        path.rename(aside)
        code, out = folder_cli("sync", "--full")
        assert code == 0
        assert "1 deleted" in out
        assert folder_cli.sources() == ["2013-02-06-12-11-14.fit"]
        aside.rename(path)  # unchanged: same size and mtime as when it was first seen
        _code, out = folder_cli("sync")
        assert folder_cli.sources() == ["2013-02-06-12-11-14.fit", "activity-small-fenix2-run.fit"]

    def test_ctrl_c_then_status(
        self, folder_cli: FolderCli, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Ctrl-C during sync is `interrupted` in status (no error, no backoff); the next sync
        finishes the work."""
        from hillsync.sources import fileformats, files

        folder_cli.copy("activity-small-fenix2-run.fit", "a.fit")
        folder_cli.copy("2013-02-06-12-11-14.fit", "b.fit")
        real = fileformats.read_activities

        def interrupted(path: Path, **kwargs: object) -> object:
            if path.name == "b.fit":
                raise KeyboardInterrupt
            return real(path, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(files, "read_activities", interrupted)
        code, _ = folder_cli("sync")
        assert code == 130
        code, out = folder_cli("status", "--json")
        source = json.loads(out)["sources"][0]
        assert source["state"] == "interrupted"
        assert "unexpected" not in (source["last_error"] or "")
        monkeypatch.setattr(files, "read_activities", real)
        code, out = folder_cli("sync")
        assert code == 0
        assert folder_cli.sources() == ["a.fit", "b.fit"]
