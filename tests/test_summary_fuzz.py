"""Property tests on Strava and Garmin activity summaries, mutated by hypothesis (issue 13).

A valid summary (test_strava's and test_garmin's `summary` helpers) gets fields set to null,
deleted, given the wrong type, huge or non-finite numbers, negative distances and times,
absurd dates. Through the real mapping, and for fewer examples through a whole mocked poll
into a real database, every summary is either kept with each figure as it was sent (a figure
that is no plausible number dropped with a warning naming it), or rejected with a one-line
reason: never another exception, never a figure changed silently. Plausible, from DESIGN
11: a finite number, not a bool, never negative for a distance, time or climb; a position
on the globe; an elevation range of 0 to 9,500 m.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import responses
from hypothesis import HealthCheck, given, settings
from sqlalchemy import select

from helpers import Clock, assert_nothing_twice, stored_ids, storm
from hillsync.errors import BadActivity
from hillsync.model import Activity
from hillsync.paths import sqlite_url
from hillsync.sources.garmin import activity_from_summary as garmin_activity
from hillsync.sources.strava import activity_from_summary as strava_activity
from hillsync.store.db import Database, open_database
from hillsync.store.tables import ActivityRow
from test_garmin import FakeGarminServer, add_profile
from test_garmin import summary as garmin_summary
from test_strava import LIST_URL, FakeStrava
from test_strava import summary as strava_summary
from test_worker import NOW, Env

pytestmark = pytest.mark.usefixtures("garmin_offline")

#: Mapping-level properties: fast, so many examples; reproducible in CI.
MAPPING = settings(max_examples=150, deadline=None, derandomize=True)
#: Whole polls: a database and a mocked API per example, so fewer.
POLL = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

DELETE = object()
HUGE = [1e308, -1e308, 2**63, -(2**63), 2**70, math.nan, math.inf, -math.inf, 1e-320]
ABSURD_DATES = [
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "2026-02-30T07:00:00Z",
    "2026-13-01T07:00:00Z",
    "yesterday",
    "",
    "0001-01-01 00:00:00",
    "9999-12-31 23:59:59",
]
#: What a mutation puts in a field (or DELETE, which removes the key).
ODD_VALUES = st.one_of(
    st.just(DELETE),
    st.none(),
    st.booleans(),
    st.sampled_from(HUGE),
    st.sampled_from(ABSURD_DATES),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e6, max_value=-1e-3),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.text(max_size=6),
    st.sampled_from(["12.5", "-3", "NaN", "1e308"]),
    st.sampled_from([[], [1.0, 2.0], [46.9, 7.4, 0.0], ["46.9", "7.4"], {}, {"value": 1}]),
)

STRAVA_FIGURES = {
    "distance": "distance_m",
    "moving_time": "moving_time_s",
    "elapsed_time": "elapsed_time_s",
    "total_elevation_gain": "reported_gain_m",
}
STRAVA_KEYS = [
    *STRAVA_FIGURES,
    "id",
    "start_date",
    "elev_high",
    "elev_low",
    "start_latlng",
    "end_latlng",
    "sport_type",
    "type",
    "name",
    "trainer",
    "external_id",
]
GARMIN_FIGURES = {
    "distance": "distance_m",
    "movingDuration": "moving_time_s",
    "elevationGain": "reported_gain_m",
    "elevationLoss": "reported_loss_m",
}
GARMIN_KEYS = [
    *GARMIN_FIGURES,
    "activityId",
    "startTimeGMT",
    "beginTimestamp",
    "elapsedDuration",
    "duration",
    "minElevation",
    "maxElevation",
    "startLatitude",
    "startLongitude",
    "endLatitude",
    "endLongitude",
    "activityType",
    "activityName",
]

Mutation = list[tuple[str, Any]]


def mutations(keys: list[str]) -> st.SearchStrategy[Mutation]:
    """One to four (key, odd value) changes to a summary."""
    return st.lists(st.tuples(st.sampled_from(keys), ODD_VALUES), min_size=1, max_size=4)


def mutated(base: dict[str, Any], changes: Mutation) -> dict[str, Any]:
    """`base` with each change applied (DELETE removes the key)."""
    raw = dict(base)
    for key, value in changes:
        if value is DELETE:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


# --- what a figure is allowed to become -----------------------------------------------------


def real(value: Any) -> float | None:
    """`value` as a finite float when it is a number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def plausible(value: Any) -> float | None:
    """A distance, time or climb as sent when it is plausible (finite, not negative)."""
    f = real(value)
    return f if f is not None and f >= 0 else None


def assert_figure(raw: Mapping[str, Any], key: str, got: float | None, act: Activity) -> None:
    """Kept as sent when plausible; otherwise unknown, with a warning when something was sent."""
    sent = raw.get(key)
    if plausible(sent) is not None:
        assert got == plausible(sent), key
        return
    assert got is None, (key, sent, got)
    if sent is not None:
        assert act.warning is not None
        assert key in act.warning


def assert_range(raw: Mapping[str, Any], high: str, low: str, act: Activity) -> None:
    """The elevation range is high - low when both are numbers and it is plausible."""
    hi, lo = real(raw.get(high)), real(raw.get(low))
    span = hi - lo if hi is not None and lo is not None else None
    if span is not None and 0 <= span <= 9500:
        assert act.elevation_range_m == span
        return
    assert act.elevation_range_m is None
    if raw.get(high) is not None and raw.get(low) is not None:
        assert act.warning is not None
        assert high in act.warning or low in act.warning


def on_globe(lat: float | None, lon: float | None) -> bool:
    return lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180


def assert_position(
    got: tuple[float, float] | None, lat: Any, lon: Any, *, names: str, act: Activity
) -> None:
    """A position is the one sent when it is on the globe, else unknown (with a warning when
    both halves were sent)."""
    la, lo = real(lat), real(lon)
    if got is not None:
        assert on_globe(la, lo)
        assert got == (la, lo)
        return
    if on_globe(la, lo) and (la, lo) != (0.0, 0.0):
        pytest.fail(f"{names}: the position ({la}, {lo}) was dropped")
    if lat is not None and lon is not None and not on_globe(la, lo):
        assert act.warning is not None
        assert any(n in act.warning for n in names.split("/"))


def assert_start(act: Activity, sent: Any) -> None:
    """Aware UTC, and the time sent when it was an ISO 8601 text Python reads."""
    assert act.start_time.tzinfo is not None
    assert act.start_time.utcoffset() == timedelta(0)
    if isinstance(sent, str):
        try:
            parsed = datetime.fromisoformat(sent.strip().replace(" ", "T"))
        except ValueError:
            return
        expected = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        assert act.start_time == expected


def assert_rejection(error: BadActivity) -> None:
    """A rejection says why, on one line."""
    message = str(error)
    assert message.strip()
    assert "\n" not in message
    assert "Traceback" not in message


def check_strava(raw: dict[str, Any]) -> Activity | None:
    """The Strava mapping keeps its promise on `raw`; the activity, or None when rejected."""
    try:
        act = strava_activity(raw)
    except BadActivity as error:
        assert_rejection(error)
        return None
    # Strava's ids are integers: one sent as 12, 12.0 or "12" is activity "12".
    sent_id = raw.get("id")
    assert isinstance(sent_id, int | float | str)
    assert not isinstance(sent_id, bool)
    number = int(act.source_id)
    assert number == (float(sent_id) if isinstance(sent_id, str) else sent_id)
    for key, attr in STRAVA_FIGURES.items():
        assert_figure(raw, key, getattr(act, attr), act)
    assert_range(raw, "elev_high", "elev_low", act)
    for key, got in (("start_latlng", act.start_latlng), ("end_latlng", act.end_latlng)):
        pair = raw.get(key)
        lat, lon = pair if isinstance(pair, list) and len(pair) == 2 else (None, None)
        if got is None and pair not in (None, []) and (lat is None or real(lat) is None):
            assert act.warning is not None
            assert key in act.warning
        assert_position(got, lat, lon, names=key, act=act)
    assert_start(act, raw.get("start_date"))
    return act


def check_garmin(raw: dict[str, Any]) -> Activity | None:
    """The Garmin mapping keeps its promise on `raw`; the activity, or None when rejected."""
    try:
        act = garmin_activity(raw)
    except BadActivity as error:
        assert_rejection(error)
        return None
    sent_id = raw.get("activityId")
    assert isinstance(sent_id, int | str)
    assert not isinstance(sent_id, bool)
    assert act.source_id == str(sent_id)
    for key, attr in GARMIN_FIGURES.items():
        assert_figure(raw, key, getattr(act, attr), act)
    # Elapsed time: elapsedDuration, or the duration when it has none.
    elapsed, duration = raw.get("elapsedDuration"), raw.get("duration")
    if plausible(elapsed) is not None:
        assert act.elapsed_time_s == plausible(elapsed)
    else:
        assert act.elapsed_time_s == plausible(duration)
        if elapsed is not None:
            assert act.warning is not None
            assert "elapsedDuration" in act.warning
    assert_range(raw, "maxElevation", "minElevation", act)
    for lat_key, lon_key, got in (
        ("startLatitude", "startLongitude", act.start_latlng),
        ("endLatitude", "endLongitude", act.end_latlng),
    ):
        assert_position(
            got, raw.get(lat_key), raw.get(lon_key), names=f"{lat_key}/{lon_key}", act=act
        )
    assert_start(act, raw.get("startTimeGMT"))
    return act


# --- the mapping ------------------------------------------------------------------------------


STRAVA_BASE = strava_summary(4242, NOW - timedelta(days=1))
GARMIN_BASE = garmin_summary(5151, NOW - timedelta(days=1))


class TestStravaMapping:
    """Strava's summary mapping (sources/strava/mapping.py) on mutated summaries."""

    def test_base_is_kept_whole(self) -> None:
        """The unmutated summary maps with every figure as sent and no warning."""
        act = check_strava(dict(STRAVA_BASE))
        assert act is not None
        assert act.warning is None

    @MAPPING
    @given(changes=mutations(STRAVA_KEYS))
    def test_mutated_summary(self, changes: Mutation) -> None:
        """Every mutated summary is kept as sent (odd figures dropped, named) or rejected."""
        check_strava(mutated(STRAVA_BASE, changes))

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("distance", True),
            ("distance", "12.5"),
            ("distance", math.nan),
            ("distance", -5.0),
            ("moving_time", True),
            ("total_elevation_gain", -1e308),
            ("elev_low", -1e308),
            ("start_latlng", [1e308, 2.0]),
        ],
    )
    def test_found_by_the_fuzz(self, key: str, value: Any) -> None:
        """The figures the fuzz found coerced or passed on silently are dropped and named."""
        act = check_strava(mutated(STRAVA_BASE, [(key, value)]))
        assert act is not None
        assert act.warning is not None
        assert key in act.warning

    def test_bool_id_is_rejected(self) -> None:
        """An id of true is no id (it was stored as activity "1")."""
        with pytest.raises(BadActivity, match="id"):
            strava_activity(mutated(STRAVA_BASE, [("id", True)]))

    def test_sport_of_wrong_type_is_rejected(self) -> None:
        """A sport_type that is a number is a BadActivity (it was a bare TypeError)."""
        with pytest.raises(BadActivity):
            strava_activity(mutated(STRAVA_BASE, [("sport_type", 5)]))


class TestGarminMapping:
    """Garmin's summary mapping (sources/garmin/mapping.py) on mutated summaries."""

    def test_base_is_kept_whole(self) -> None:
        """The unmutated summary maps with every figure as sent and no warning."""
        act = check_garmin(dict(GARMIN_BASE))
        assert act is not None
        assert act.warning is None

    @MAPPING
    @given(changes=mutations(GARMIN_KEYS))
    def test_mutated_summary(self, changes: Mutation) -> None:
        """Every mutated summary is kept as sent (odd figures dropped, named) or rejected."""
        check_garmin(mutated(GARMIN_BASE, changes))

    def test_zero_elapsed_is_kept(self) -> None:
        """An elapsedDuration of 0 is a figure, not a missing one (it became the duration)."""
        act = check_garmin(mutated(GARMIN_BASE, [("elapsedDuration", 0)]))
        assert act is not None
        assert act.elapsed_time_s == 0.0

    def test_negative_distance_is_named(self) -> None:
        """A negative distance is dropped with a warning (it was dropped silently)."""
        act = check_garmin(mutated(GARMIN_BASE, [("distance", -10.0)]))
        assert act is not None
        assert act.warning is not None
        assert "distance" in act.warning


# --- a whole poll -------------------------------------------------------------------------------


@dataclass
class Machine:
    """A fresh runner's machine per example: its own database, token folders and mocks."""

    env: Env
    rsps: responses.RequestsMock


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite database, copied for every example (migrating is slow)."""
    path = tmp_path_factory.mktemp("template") / "hillsync.db"
    open_database(sqlite_url(path)).close()
    return path


@contextmanager
def machine(template: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Machine]:
    """A Machine on a copy of the template database, mocks torn down after."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        shutil.copy(template, tmp / "hillsync.db")
        url = sqlite_url(tmp / "hillsync.db")
        db = open_database(url, upgrade=False)
        try:
            with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
                yield Machine(Env(tmp, db, url, capsys), rsps)
        finally:
            db.close()


def stored_figures(db: Database, source: str, source_id: str) -> dict[str, Any]:
    """The stored figures of one activity, by the mapping's names."""
    with db.session(readonly=True) as session:
        row = session.scalars(
            select(ActivityRow).where(
                ActivityRow.source == source, ActivityRow.source_id == source_id
            )
        ).one()
        return {
            "distance_m": row.distance_m,
            "moving_time_s": row.moving_time_s,
            "elapsed_time_s": row.elapsed_time_s,
            "reported_gain_m": row.reported_gain_m,
            "elevation_range_m": row.elevation_range_m,
        }


def assert_poll(
    m: Machine,
    source: str,
    raw: dict[str, Any],
    good_id: str,
    check: Callable[[dict[str, Any]], Activity | None],
) -> None:
    """One cycle with the mutated summary beside a good one: the cycle returns, the good run
    is stored, the odd one stored with the mapping's figures unchanged, or rejected."""
    expected = check(raw)
    with storm():
        result = m.env.worker(Clock(NOW)).sync_cycle()
    (outcome,) = result.outcomes
    assert outcome.state == "ok", outcome.error
    ids = stored_ids(m.env.db, source)
    assert good_id in ids
    if expected is None:
        assert outcome.rejected == 1
        assert len(ids) == 1
    else:
        assert outcome.rejected == 0
        assert expected.source_id in ids
        stored = stored_figures(m.env.db, source, expected.source_id)
        for name, value in stored.items():
            want = getattr(expected, name)
            if want is None:
                continue  # what the summary lacks may come from the track or file
            assert value == want, name
    assert_nothing_twice(m.env.db)


class TestWholePoll:
    """Mutated summaries through a whole mocked poll into a real SQLite database."""

    @POLL
    @given(changes=mutations(STRAVA_KEYS))
    def test_strava(
        self, template: Path, capsys: pytest.CaptureFixture[str], changes: Mutation
    ) -> None:
        """A mutated Strava summary beside a good one: stored as mapped, or rejected."""
        raw = mutated(strava_summary(4242, NOW - timedelta(days=2)), changes)
        good = strava_summary(4343, NOW - timedelta(days=1), gain=10.0)
        with machine(template, capsys) as m:
            m.env.connect_strava(NOW + timedelta(hours=5))
            # Registered first, so answered first: one short page holding both.
            m.rsps.add(responses.GET, LIST_URL, json=[raw, good])
            FakeStrava(m.rsps, [good])
            assert_poll(m, "strava", raw, "4343", check_strava)

    @POLL
    @given(changes=mutations(GARMIN_KEYS))
    def test_garmin(
        self, template: Path, capsys: pytest.CaptureFixture[str], changes: Mutation
    ) -> None:
        """A mutated Garmin summary beside a good one: stored as mapped, or rejected."""
        raw = mutated(garmin_summary(5151, NOW - timedelta(days=2)), changes)
        good = garmin_summary(5252, NOW - timedelta(days=1))
        with machine(template, capsys) as m:
            m.env.connect_garmin()
            add_profile(m.rsps)
            # Listed by the first backfill page, whatever its start date says.
            m.rsps.add(responses.GET, GARMIN_LIST, json=[good, raw])
            FakeGarminServer(m.rsps, [])
            assert_poll(m, "garmin", raw, "5252", check_garmin)


GARMIN_LIST = "https://connectapi.garmin.com/activitylist-service/activities/search/activities"


@pytest.fixture
def env(tmp_path: Path, db: Database, database_url: str, capsys: pytest.CaptureFixture[str]) -> Env:
    """A runner's machine (test_worker's Env) on the test database (SQLite, PostgreSQL)."""
    return Env(tmp_path, db, database_url, capsys)


class TestNonFiniteJson:
    """NaN and Infinity, which Python's json reads in an answer, on every database."""

    def test_nan_payload_stored(self, env: Env, rsps: responses.RequestsMock) -> None:
        """The run is stored without the odd figures, its payload too (PostgreSQL refused it)."""
        env.connect_strava(NOW + timedelta(hours=5))
        odd = strava_summary(4444, NOW - timedelta(days=2))
        good = strava_summary(4545, NOW - timedelta(days=1))
        rsps.add(
            responses.GET,
            LIST_URL,
            body=json.dumps([odd, good]).replace('"distance": 10012.4', '"distance": NaN', 1),
            content_type="application/json",
        )
        FakeStrava(rsps, [good])
        with storm() as events:
            result = env.worker(Clock(NOW)).sync_cycle()
        (outcome,) = result.outcomes
        assert (outcome.state, outcome.new, outcome.rejected) == ("ok", 2, 0)
        assert stored_figures(env.db, "strava", "4444")["distance_m"] is None
        repaired = [e for e in events if e["event"] == "strava_summary_repaired"]
        assert [e["id"] for e in repaired] == ["4444"]
        assert "distance" in repaired[0]["warning"]
        assert_nothing_twice(env.db)
