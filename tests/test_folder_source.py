"""The folder source: scanning, fingerprints, rejected files, batches and export folders."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from helpers import Clock, gpx_track, straight_route
from hillsync.errors import SourceUnavailable
from hillsync.model import Batch
from hillsync.sources.base import Source, SourceState
from hillsync.sources.files import FolderSource
from source_contract import SourceContract, SourceWorld

SINCE = datetime(2000, 1, 1, tzinfo=UTC)
SMALL_FITS = (
    "2013-02-06-12-11-14.fit",
    "activity-unexpected-eof.fit",
    "activity-settings-corruptheader.fit",
)


def _settled(folder: Path) -> Callable[[], datetime]:
    """A clock five minutes after the folder's newest file (every file has settled), read from
    the files themselves rather than the wall clock."""

    def now() -> datetime:
        newest = max((p.stat().st_mtime for p in folder.rglob("*")), default=0.0)
        return datetime.fromtimestamp(newest, UTC) + timedelta(minutes=5)

    return now


def _fetch(source: FolderSource, seen: dict[str, str] | None = None) -> list[Batch]:
    return list(source.fetch(SourceState(since=SINCE, seen=seen or {})))


def _merge_seen(batches: list[Batch]) -> dict[str, str]:
    seen: dict[str, str] = {}
    for b in batches:
        seen.update(b.seen)
    return seen


@pytest.fixture
def run_folder(tmp_path: Path, data_dir: Path) -> Path:
    """A runner's folder: three small FIT files in a subfolder, a GPX and a TCX at the top."""
    folder = tmp_path / "runs"
    (folder / "2013").mkdir(parents=True)
    for name in SMALL_FITS:
        shutil.copy(data_dir / "fit" / name, folder / "2013" / name)
    shutil.copy(data_dir / "gpx" / "two-segments.gpx.gz", folder / "a.gpx.gz")
    shutil.copy(data_dir / "tcx" / "run.tcx", folder / "b.tcx")
    (folder / "notes.txt").write_text("not an activity")
    (folder / ".partial.fit").write_text("being copied")
    return folder


def _source(
    folder: Path, *, batch_size: int = 50, clock: Callable[[], datetime] | None = None
) -> FolderSource:
    return FolderSource("folder", folder, batch_size=batch_size, clock=clock or _settled(folder))


class TestScan:
    """First and later scans of a folder."""

    def test_protocol(self, run_folder: Path) -> None:
        """FolderSource is a Source of kind "folder" under its own name."""
        source: Source = FolderSource("pi-runs", run_folder)
        assert (source.name, source.kind) == ("pi-runs", "folder")

    def test_first_fetch_yields_everything(self, run_folder: Path) -> None:
        """Every activity file is read once, keyed by its POSIX path relative to the folder."""
        batches = _fetch(_source(run_folder))
        keys = [a.source_id for b in batches for a in b.activities]
        assert keys == [
            "2013/2013-02-06-12-11-14.fit",
            "2013/activity-settings-corruptheader.fit",
            "2013/activity-unexpected-eof.fit",
            "a.gpx.gz",
            "b.tcx",
        ]
        assert all(a.source == "folder" for b in batches for a in b.activities)
        assert set(_merge_seen(batches)) == set(keys)

    def test_second_fetch_yields_nothing(self, run_folder: Path) -> None:
        """With the seen fingerprints of the first fetch, the second yields no batch at all."""
        source = _source(run_folder)
        seen = _merge_seen(_fetch(source))
        assert _fetch(source, seen) == []

    def test_known_files_are_not_opened(
        self, run_folder: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A rescan of known files never reads one."""
        source = _source(run_folder)
        seen = _merge_seen(_fetch(source))
        opened: list[object] = []

        def spy(*args: object, **kwargs: object) -> None:
            opened.append(args)
            raise AssertionError("read a known file")

        monkeypatch.setattr("hillsync.sources.fileformats.read_activities", spy)
        assert _fetch(source, seen) == []
        assert opened == []

    def test_touched_file_is_read_again(self, run_folder: Path) -> None:
        """A file whose mtime changed is read again, and only that one."""
        source = _source(run_folder)
        seen = _merge_seen(_fetch(source))
        path = run_folder / "b.tcx"
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10_000_000_000))
        batches = _fetch(source, seen)
        assert [a.source_id for b in batches for a in b.activities] == ["b.tcx"]
        assert batches[0].seen["b.tcx"] != seen["b.tcx"]

    def test_new_complete_file_read_at_once(self, run_folder: Path) -> None:
        """A file written a moment ago that parses completely is read at once (content, not age)."""
        written = datetime.fromtimestamp((run_folder / "b.tcx").stat().st_mtime, UTC)
        source = _source(run_folder, clock=lambda: written + timedelta(seconds=1))
        keys = {k for b in _fetch(source) for k in b.seen}
        assert "b.tcx" in keys

    def test_cut_new_file_waits(self, run_folder: Path) -> None:
        """A cut file changed within the last minute waits (not seen); later it is salvaged."""
        text = (run_folder / "b.tcx").read_bytes()
        (run_folder / "b.tcx").write_bytes(text[: len(text) // 2])
        written = datetime.fromtimestamp((run_folder / "b.tcx").stat().st_mtime, UTC)
        source = _source(run_folder, clock=lambda: written + timedelta(seconds=1))
        with capture_logs() as events:
            batches = _fetch(source)
        assert "b.tcx" not in {k for b in batches for k in b.seen}
        assert "b.tcx" in {k for b in batches for k in b.waiting}
        said = [e for e in events if e["event"].startswith("files still being written")]
        assert said
        assert said[0]["log_level"] == "info"
        later = _source(run_folder, clock=lambda: written + timedelta(minutes=2))
        salvaged = [a for b in _fetch(later) for a in b.activities if a.source_id == "b.tcx"]
        assert salvaged
        assert salvaged[0].warning is not None

    def test_missing_folder(self, tmp_path: Path) -> None:
        """A folder that does not exist makes the source unavailable, with its path."""
        with pytest.raises(SourceUnavailable, match="does not exist"):
            _fetch(_source(tmp_path / "nope"))

    def test_full_reports_deleted_files(self, run_folder: Path) -> None:
        """A full re-list names the files gone since the last sync; a plain sync does not."""
        source = _source(run_folder)
        seen = _merge_seen(_fetch(source))
        (run_folder / "b.tcx").unlink()
        assert _fetch(source, seen) == []
        batches = list(source.fetch(SourceState(since=SINCE, seen=seen, full=True)))
        assert [list(b.deleted) for b in batches] == [["b.tcx"]]
        assert batches[0].activities == []

    def test_full_on_emptied_folder_deletes_nothing(self, run_folder: Path) -> None:
        """A folder suddenly empty (an unmounted disk) reports no deletions."""
        source = _source(run_folder)
        seen = _merge_seen(_fetch(source))
        shutil.rmtree(run_folder)
        run_folder.mkdir()
        assert list(source.fetch(SourceState(since=SINCE, seen=seen, full=True))) == []

    def test_not_a_folder(self, tmp_path: Path) -> None:
        """A path that is a file is reported as not a folder."""
        (tmp_path / "f").write_text("x")
        with pytest.raises(SourceUnavailable, match="is not a folder"):
            _fetch(_source(tmp_path / "f"))

    def test_batch_sizes(self, run_folder: Path) -> None:
        """Five files in batches of two make batches of 2, 2 and 1."""
        batches = _fetch(_source(run_folder, batch_size=2))
        assert [len(b.activities) for b in batches] == [2, 2, 1]
        assert [len(b.seen) for b in batches] == [2, 2, 1]


class TestRejected:
    """Damaged files beside good ones."""

    def test_damaged_file_rejected_once(self, run_folder: Path, data_dir: Path) -> None:
        """A damaged file is rejected with its reason once; the good ones are read."""
        shutil.copy(data_dir / "bad" / "notes.gpx", run_folder / "broken.gpx")
        source = _source(run_folder)
        batches = _fetch(source)
        rejected = [r for b in batches for r in b.rejected]
        assert [(r.key, r.reason) for r in rejected] == [("broken.gpx", "not a GPX file")]
        assert rejected[0].fingerprint == _merge_seen(batches)["broken.gpx"]
        assert len([a for b in batches for a in b.activities]) == 5
        assert _fetch(source, _merge_seen(batches)) == []


class TestExports:
    """Strava and Garmin export folders."""

    def test_strava_export_sport_from_csv(self, tmp_path: Path, data_dir: Path) -> None:
        """The CSV's Activity Type and Name win over the file's; the key stays the path."""
        folder = tmp_path / "export_123"
        shutil.copytree(data_dir / "exports" / "strava", folder)
        acts = {a.source_id: a for b in _fetch(_source(folder)) for a in b.activities}
        assert set(acts) == {"activities/1001.fit", "activities/1002.fit.gz", "activities/1003.gpx"}
        assert acts["activities/1001.fit"].sport == "trail_run"
        assert acts["activities/1001.fit"].name == "Hill loop"
        assert acts["activities/1002.fit.gz"].sport == "ride"
        assert acts["activities/1003.gpx"].name == "Easy, with a comma"
        raw = acts["activities/1001.fit"].raw
        assert raw is not None
        assert raw["export"]["id"] == "1001"

    def test_strava_export_nested(self, tmp_path: Path, data_dir: Path) -> None:
        """An export unpacked into a subfolder of the watched folder is recognised too."""
        shutil.copytree(data_dir / "exports" / "strava", tmp_path / "w" / "export_123")
        acts = {a.source_id: a for b in _fetch(_source(tmp_path / "w")) for a in b.activities}
        assert acts["export_123/activities/1001.fit"].sport == "trail_run"

    def test_garmin_export_zip(self, tmp_path: Path, data_dir: Path) -> None:
        """FIT files inside the export's zip are read, keyed zip path + member."""
        shutil.copytree(data_dir / "exports" / "garmin", tmp_path / "g")
        source = _source(tmp_path / "g")
        batches = _fetch(source)
        zip_key = "DI_CONNECT/DI-Connect-Uploaded-Files/UploadedFiles_0-_Part1.zip"
        acts = {a.source_id: a for b in batches for a in b.activities}
        assert set(acts) == {
            f"{zip_key}/runner_19500000001.fit",
            f"{zip_key}/runner_19500000002.fit",
        }
        run = acts[f"{zip_key}/runner_19500000001.fit"]
        assert run.sport == "run"
        assert run.name == "Hill loop"
        assert run.reported_gain_m == 168.0
        assert acts[f"{zip_key}/runner_19500000002.fit"].sport == "ride"
        seen = _merge_seen(batches)
        assert zip_key in seen
        assert _fetch(source, seen) == []

    def test_garmin_zip_marker_after_members(self, tmp_path: Path, data_dir: Path) -> None:
        """The zip itself is marked seen only in the batch holding its last member."""
        shutil.copytree(data_dir / "exports" / "garmin", tmp_path / "g")
        batches = _fetch(_source(tmp_path / "g", batch_size=1))
        zip_key = "DI_CONNECT/DI-Connect-Uploaded-Files/UploadedFiles_0-_Part1.zip"
        assert zip_key not in batches[0].seen
        assert zip_key in batches[-1].seen

    def test_damaged_zip_rejected(self, tmp_path: Path) -> None:
        """A .zip that is not a zip is rejected once under its own key."""
        (tmp_path / "bad.zip").write_bytes(b"PK not really")
        os.utime(tmp_path / "bad.zip", (1_600_000_000, 1_600_000_000))
        batches = _fetch(_source(tmp_path))
        rejected = [r for b in batches for r in b.rejected]
        assert [r.key for r in rejected] == ["bad.zip"]
        assert rejected[0].reason.startswith("damaged zip")


CONTRACT_NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class FolderWorld:
    """A folder of GPX runs for the SourceContract: files dated an hour before the clock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir()
        self.count = 0

    def source(self) -> FolderSource:
        return FolderSource("folder", self.root, batch_size=2, clock=Clock(CONTRACT_NOW))

    def first_state(self) -> SourceState:
        return SourceState(since=CONTRACT_NOW - timedelta(days=365))

    def _put(self, name: str, text: str) -> None:
        path = self.root / name
        path.write_text(text)
        settled = (CONTRACT_NOW - timedelta(hours=1)).timestamp()
        os.utime(path, (settled, settled))

    def add_runs(self, count: int) -> list[str]:
        names = []
        for _ in range(count):
            self.count += 1
            name = f"run-{self.count:03d}.gpx"
            points = straight_route(3_000, lambda d: 300 + 0.03 * d)
            start = CONTRACT_NOW - timedelta(days=60 - self.count)
            self._put(name, gpx_track(points, start=start, sport="running"))
            names.append(name)
        return names

    def add_bad(self) -> str:
        self._put("broken.gpx", "<gpx><trk><trkseg><trkpt lat=")
        return "broken.gpx"


class TestFolderContract(SourceContract):
    """The folder source keeps the SourceContract."""

    @pytest.fixture
    def world(self, tmp_path: Path) -> SourceWorld:
        return FolderWorld(tmp_path / "contract")
