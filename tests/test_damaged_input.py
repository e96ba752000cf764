"""Damaged input built from the real files in tests/data: rejected or repaired, never silent.

Every variant is read the way the folder source reads it (`read_activity_bytes`): it is
either rejected with a one-line reason (BadActivity), or read; when read, its figures equal
the undamaged file's, or the activity says it was salvaged (`warning`), or the test
states why the change is the repair (absurd altitudes dropped, duplicates ignored).
"""

from __future__ import annotations

import math
import random
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hillsync.classify import build_profile, classify
from hillsync.errors import BadActivity
from hillsync.model import Activity, ClassifyParams, Summary
from hillsync.sources.fileformats import read_activity_bytes

DATA = Path(__file__).parent / "data"
FIT_RUN = DATA / "fit" / "activity-small-fenix2-run.fit"
GPX_RUN = DATA / "gpx" / "two-segments.gpx"
TCX_RUN = DATA / "tcx" / "run.tcx"
REAL = [FIT_RUN, GPX_RUN, TCX_RUN]
FLIPS = 40


def read(data: bytes, name: str) -> Activity | str:
    """The activity, or the rejection's reason (which must be one line)."""
    try:
        return read_activity_bytes(data, name)
    except BadActivity as exc:
        reason = str(exc)
        assert reason, "a rejection without a reason"
        assert "\n" not in reason, reason
        assert "Traceback" not in reason, reason
        return reason


def figures(a: Activity) -> tuple[Any, ...]:
    """What a damage could change silently: sport, start, distance, samples, device totals."""
    return (
        a.sport,
        a.start_time,
        None if a.distance_m is None else round(a.distance_m, 1),
        None if a.track is None else len(a.track),
        a.reported_gain_m,
        a.reported_loss_m,
    )


def gain_loss(a: Activity) -> tuple[float | None, float | None]:
    """The classifier's gain and loss of an activity's own samples."""
    assert a.track is not None
    profile = build_profile(a.track)
    c = classify(Summary(sport=a.sport, distance_m=a.distance_m), profile, ClassifyParams())
    return c.elevation_gain_m, c.elevation_loss_m


def salvaged_or_same(damaged: Activity | str, original: Activity) -> None:
    """Rejected, or flagged as salvaged, or exactly the original's figures."""
    if isinstance(damaged, str):
        return
    if damaged.warning or (damaged.raw or {}).get("damaged"):
        assert damaged.distance_m is None or damaged.distance_m <= (original.distance_m or 0) + 1
        return
    assert figures(damaged) == figures(original)


class TestTruncated:
    """A file cut at every twentieth of its length is rejected or salvaged up to the cut."""

    @pytest.mark.parametrize("path", REAL, ids=lambda p: p.suffix)
    def test_every_twentieth(self, path: Path) -> None:
        """Cuts 0/20 (empty) to 19/20: never an unflagged activity differing from the file."""
        data = path.read_bytes()
        original = read(data, path.name)
        assert isinstance(original, Activity)
        for k in range(20):
            salvaged_or_same(read(data[: len(data) * k // 20], path.name), original)

    @pytest.mark.parametrize("path", REAL, ids=lambda p: p.suffix)
    def test_empty(self, path: Path) -> None:
        """An empty file is rejected with a reason."""
        assert isinstance(read(b"", path.name), str)


class TestBitFlips:
    """One random bit flipped (seeded): rejected, salvaged with a flag, or nothing changed."""

    def test_fit_flips_never_change_figures_silently(self) -> None:
        """A flipped bit in a FIT file is caught by its CRC (or changes nothing)."""
        data = FIT_RUN.read_bytes()
        original = read(data, FIT_RUN.name)
        assert isinstance(original, Activity)
        rng = random.Random(13)
        for _ in range(FLIPS):
            at = rng.randrange(14, len(data) - 2)  # the data area, past the header
            flipped = bytearray(data)
            flipped[at] ^= 1 << rng.randrange(8)
            salvaged_or_same(read(bytes(flipped), FIT_RUN.name), original)

    @pytest.mark.parametrize("path", [GPX_RUN, TCX_RUN], ids=lambda p: p.suffix)
    def test_xml_flips_are_read_or_rejected(self, path: Path) -> None:
        """XML has no checksum: a flip is rejected with a reason or read into plausible figures."""
        data = path.read_bytes()
        rng = random.Random(17)
        for _ in range(FLIPS):
            flipped = bytearray(data)
            flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            got = read(bytes(flipped), path.name)
            if isinstance(got, Activity) and got.track is not None:
                gain, loss = gain_loss(got)
                assert gain is None or math.isfinite(gain)
                assert loss is None or math.isfinite(loss)
                assert got.distance_m is None or 0 <= got.distance_m < 5_000_000


class TestGarbage:
    """Bytes that are no activity at all are rejected with a reason."""

    @pytest.mark.parametrize(
        "content",
        [
            b"\x00" * 512,
            b"<?xml version='1.0'?><gpx><trk><trkseg><trkpt lat='1' lon='2'>",
            b"<?xml version='1.0'?><html><body>not a track</body></html>",
            b"<?xml version='1.0'?><!DOCTYPE gpx [<!ENTITY a 'aaaaaaaaaa'>"
            b"<!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>]><gpx>&b;</gpx>",
            bytes(random.Random(3).randrange(256) for _ in range(4096)),
        ],
        ids=["zeros", "unclosed", "html", "entities", "random"],
    )
    @pytest.mark.parametrize("suffix", [".gpx", ".tcx", ".fit"])
    def test_rejected(self, content: bytes, suffix: str) -> None:
        """Each garbage content under each format's name is rejected with a one-line reason."""
        assert isinstance(read(content, f"garbage{suffix}"), str)


def _edit_points(text: str, tag: str, edit: Any) -> str:
    """`text` with the value of every `tag` element replaced by edit(index, value)."""
    counter = iter(range(1_000_000))
    pattern = re.compile(rf"<{tag}>([^<]*)</{tag}>")
    return pattern.sub(lambda m: f"<{tag}>{edit(next(counter), m.group(1))}</{tag}>", text)


class TestAbsurdValues:
    """Absurd altitudes, times and distances in otherwise real files."""

    @pytest.mark.parametrize(("path", "tag"), [(GPX_RUN, "ele"), (TCX_RUN, "AltitudeMeters")])
    @pytest.mark.parametrize("bad", ["NaN", "1e9", "-1e9"])
    def test_absurd_altitudes_are_dropped(self, path: Path, tag: str, bad: str) -> None:
        """Every fifth altitude absurd: gain and loss equal those of the file without them."""
        text = path.read_text()
        damaged = _edit_points(text, tag, lambda i, v: bad if i % 5 == 2 else v)
        removed = _edit_points(text, tag, lambda i, v: "" if i % 5 == 2 else v)
        got, clean = read(damaged.encode(), path.name), read(removed.encode(), path.name)
        assert isinstance(got, Activity)
        assert isinstance(clean, Activity)
        assert gain_loss(got) == pytest.approx(gain_loss(clean), abs=0.5)
        assert got.distance_m == pytest.approx(clean.distance_m)

    @pytest.mark.parametrize(("path", "tag"), [(GPX_RUN, "time"), (TCX_RUN, "Time")])
    @pytest.mark.parametrize("year", [1901, 2150])
    def test_times_far_off_are_kept_as_written(self, path: Path, tag: str, year: int) -> None:
        """A run dated 1901 or 2150 keeps the file's own date and its distance and profile."""
        text = path.read_text()
        original = read(text.encode(), path.name)
        moved = read(re.sub(r"\b2026-", f"{year}-", text).encode(), path.name)
        assert isinstance(original, Activity)
        assert isinstance(moved, Activity)
        assert moved.start_time.year == year
        assert moved.start_time.tzinfo is not None
        assert moved.distance_m == pytest.approx(original.distance_m)
        assert gain_loss(moved) == pytest.approx(gain_loss(original))

    def test_zero_distance(self) -> None:
        """Every point at one place: zero distance, no label but unknown, nothing invented."""
        text = re.sub(r'lat="[^"]*" lon="[^"]*"', 'lat="46.0" lon="7.0"', GPX_RUN.read_text())
        got = read(text.encode(), GPX_RUN.name)
        assert isinstance(got, Activity)
        assert got.distance_m == 0
        assert got.track is not None
        profile = build_profile(got.track)
        c = classify(Summary(sport=got.sport, distance_m=0.0), profile, ClassifyParams())
        assert c.label.value == "unknown"

    def test_duplicated_timestamps(self) -> None:
        """Every track point written twice: distance and gain equal the original's."""
        text = GPX_RUN.read_text()
        doubled = re.sub(r"(<trkpt .*?</trkpt>)", r"\1\1", text, flags=re.S)
        original, got = read(text.encode(), GPX_RUN.name), read(doubled.encode(), GPX_RUN.name)
        assert isinstance(original, Activity)
        assert isinstance(got, Activity)
        assert got.distance_m == pytest.approx(original.distance_m)
        assert gain_loss(got) == pytest.approx(gain_loss(original), abs=0.5)
        assert got.start_time == original.start_time

    def test_reversed_timestamps(self) -> None:
        """Times running backwards along the track: the start is the earliest time written."""
        text = GPX_RUN.read_text()
        stamps = re.findall(r"<time>([^<]*)</time>", text.split("<trk>", 1)[1])
        backwards = iter(reversed(stamps))
        head, body = text.split("<trk>", 1)
        body = re.sub(r"<time>[^<]*</time>", lambda _m: f"<time>{next(backwards)}</time>", body)
        got = read((head + "<trk>" + body).encode(), GPX_RUN.name)
        assert isinstance(got, Activity)
        earliest = min(datetime.fromisoformat(s.replace("Z", "+00:00")) for s in stamps)
        assert got.warning is not None
        assert "backwards" in got.warning
        assert got.start_time == earliest.astimezone(UTC)
        assert got.elapsed_time_s is None or got.elapsed_time_s >= 0
