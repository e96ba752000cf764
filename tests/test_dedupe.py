"""Deduplication: one run however many sources saw it, whatever the arrival order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hillsync.model import RUN_SPORTS, Activity, Batch, Classification, Profile, Terrain
from hillsync.store import repo
from hillsync.store.db import Database
from hillsync.store.runs import garmin_id_of
from hillsync.store.tables import SyncState

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
START = datetime(2026, 5, 30, 7, 0, tzinfo=UTC)


def garmin(source_id: str = "123456", **kw: object) -> Activity:
    """A Garmin Connect run summary (barometric gain)."""
    fields: dict[str, object] = {
        "source": "garmin", "source_id": source_id, "sport": "run", "start_time": START,
        "distance_m": 10_000.0, "moving_time_s": 3000.0, "reported_gain_m": 210.0,
        "reported_loss_m": 205.0, "elevation_source": "garmin",
    }  # fmt: skip
    fields.update(kw)
    return Activity(**fields)  # type: ignore[arg-type]


def strava(source_id: str = "987", **kw: object) -> Activity:
    """A Strava run summary of the same run, uploaded from Garmin."""
    fields: dict[str, object] = {
        "source": "strava", "source_id": source_id, "sport": "run",
        "start_time": START + timedelta(seconds=1), "distance_m": 10_040.0,
        "moving_time_s": 2990.0, "reported_gain_m": 150.0, "elevation_source": "strava",
        "external_id": "garmin_ping_123456",
    }  # fmt: skip
    fields.update(kw)
    return Activity(**fields)  # type: ignore[arg-type]


def classified(a: Activity) -> Classification:
    """A classification echoing the activity's own gain (so the winner is visible)."""
    gain = a.reported_gain_m or 0.0
    terrain = Terrain.UPHILL if gain >= 200 else Terrain.FLAT
    return Classification(
        label=terrain, distance_m=a.distance_m or 0.0, elevation_gain_m=gain,
        elevation_loss_m=a.reported_loss_m, uphill_m=0.0, downhill_m=0.0,
        flat_m=a.distance_m or 0.0, version=1,
    )  # fmt: skip


def put(db: Database, source: str, *acts: Activity, athlete: str = "me") -> None:
    """Save activities of one source (named `athlete/source` for others than `me`)."""
    name = source if athlete == "me" else f"{athlete}/{source}"
    with db.session() as s:
        state = repo.ensure_sync_state(s, repo.ensure_athlete(s, athlete), name, source)
        table: dict[str, tuple[Profile | None, Classification]] = {
            a.source_id: (None, classified(a)) for a in acts
        }
        repo.save_batch(s, state, Batch(activities=acts), table, RUN_SPORTS, NOW)


def runs(db: Database) -> list[repo.RunView]:
    """Every stored run."""
    with db.session() as s:
        return repo.list_runs(s)


def shape(views: list[repo.RunView]) -> list[tuple[object, ...]]:
    """What must not depend on arrival order (ids may)."""
    return [
        (v.athlete, v.start_time, v.label, v.distance_m, v.elevation_gain_m, v.sources)
        for v in views
    ]


class TestExternalId:
    """A Strava upload naming the Garmin activity."""

    def test_garmin_id_of(self) -> None:
        """ping and push ids are recognised; other ids are not."""
        assert garmin_id_of("garmin_ping_123456") == "123456"
        assert garmin_id_of("garmin_push_77") == "77"
        assert garmin_id_of("some_upload.fit") is None
        assert garmin_id_of(None) is None

    def test_garmin_then_strava(self, db: Database) -> None:
        """Garmin first, then Strava: one run with both sources."""
        put(db, "garmin", garmin())
        put(db, "strava", strava())
        (run,) = runs(db)
        assert run.sources == (("garmin", "123456"), ("strava", "987"))

    def test_strava_then_garmin(self, db: Database) -> None:
        """Strava first, then Garmin: the same one run."""
        put(db, "strava", strava())
        put(db, "garmin", garmin())
        (run,) = runs(db)
        assert run.sources == (("garmin", "123456"), ("strava", "987"))

    def test_external_id_even_when_times_differ(self, db: Database) -> None:
        """The external_id alone links them, whatever the start times and distances say."""
        put(db, "strava", strava(start_time=START + timedelta(hours=2), distance_m=5000.0))
        put(db, "garmin", garmin())
        assert len(runs(db)) == 1

    def test_longer_garmin_id_is_not_a_match(self, db: Database) -> None:
        """garmin_ping_1234560 does not name Garmin activity 123456."""
        put(db, "garmin", garmin())
        put(db, "strava", strava(external_id="garmin_ping_1234560", start_time=NOW))
        assert len(runs(db)) == 2


class TestTimeAndDistance:
    """Runs matched by start time and distance."""

    def test_within_window_either_order(self, db: Database) -> None:
        """Start 100 s apart with 4 % distance difference: one run, in either order."""
        s = strava(external_id=None, start_time=START + timedelta(seconds=100), distance_m=10_400.0)
        put(db, "garmin", garmin())
        put(db, "strava", s)
        first = shape(runs(db))
        assert len(first) == 1
        assert first[0][5] == (("garmin", "123456"), ("strava", "987"))
        other = _fresh(db)
        put(other, "strava", s)
        put(other, "garmin", garmin())
        assert shape(runs(other)) == first

    def test_distance_six_percent_apart(self, db: Database) -> None:
        """Distances 6 % apart are two runs."""
        put(db, "garmin", garmin())
        put(db, "strava", strava(external_id=None, distance_m=10_600.0))
        assert len(runs(db)) == 2

    def test_start_too_far_apart(self, db: Database) -> None:
        """Starts 121 s apart are two runs."""
        put(db, "garmin", garmin())
        put(db, "strava", strava(external_id=None, start_time=START + timedelta(seconds=121)))
        assert len(runs(db)) == 2

    def test_different_athletes_never_merge(self, db: Database) -> None:
        """The same run by two athletes stays two runs, even with the external_id."""
        put(db, "garmin", garmin())
        put(db, "strava", strava(), athlete="anna")
        views = runs(db)
        assert sorted(v.athlete for v in views) == ["anna", "me"]


class TestBestSource:
    """The run's figures come from the best source."""

    def test_garmin_elevation_wins_over_strava(self, db: Database) -> None:
        """Garmin's gain and label win whatever the arrival order."""
        put(db, "strava", strava())
        put(db, "garmin", garmin())
        (run,) = runs(db)
        assert (run.elevation_gain_m, run.label, run.distance_m) == (210.0, "uphill", 10_000.0)

    def test_file_wins_over_garmin(self, db: Database) -> None:
        """A FIT file beats Garmin's summary."""
        put(db, "garmin", garmin())
        put(db, "folder", garmin("/runs/a.fit", elevation_source="file", reported_gain_m=230.0))
        (run,) = runs(db)
        assert run.elevation_gain_m == 230.0
        assert len(run.sources) == 2

    def test_resave_does_not_create_a_second_run(self, db: Database) -> None:
        """Saving changed versions of both again keeps one run."""
        put(db, "garmin", garmin())
        put(db, "strava", strava())
        put(db, "strava", strava(name="renamed"))
        put(db, "garmin", garmin(name="renamed"))
        assert len(runs(db)) == 1

    def test_deleting_best_source_falls_back(self, db: Database) -> None:
        """When Garmin's copy is deleted, the run keeps Strava's figures."""
        put(db, "garmin", garmin())
        put(db, "strava", strava())
        with db.session() as s:
            state = s.query(SyncState).filter_by(name="garmin").one()
            repo.save_batch(s, state, Batch(deleted=["123456"]), {}, RUN_SPORTS, NOW)
        (run,) = runs(db)
        assert run.sources == (("strava", "987"),)
        assert run.elevation_gain_m == 150.0

    def test_bridging_activity_merges_runs(self, db: Database) -> None:
        """A file matching two separate runs joins them into one."""
        put(db, "garmin", garmin())
        put(db, "strava", strava(external_id=None, start_time=START + timedelta(seconds=200)))
        assert len(runs(db)) == 2
        put(db, "folder", garmin("f.fit", start_time=START + timedelta(seconds=100),
                                 elevation_source="file"))  # fmt: skip
        (run,) = runs(db)
        assert len(run.sources) == 3


def _fresh(db: Database) -> Database:
    """`db` emptied of every athlete, source, activity and run."""
    from sqlalchemy import delete

    from hillsync.store.tables import ActivityRow, Athlete, Run, SeenItem

    with db.session() as s:
        for table in (SeenItem, ActivityRow, Run, SyncState, Athlete):
            s.execute(delete(table))
    return db
