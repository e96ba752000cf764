"""The repository: batches, seen items, cursors, sync state, accounts, runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from hillsync.errors import StoreError
from hillsync.model import RUN_SPORTS, Activity, Batch, Classification, Profile, Rejected, Terrain
from hillsync.store import repo
from hillsync.store.codec import decode_profile, encode_profile
from hillsync.store.db import Database
from hillsync.store.tables import ActivityRow, Run, SeenItem, SyncState

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
START = datetime(2026, 5, 30, 7, 0, tzinfo=UTC)


def activity(source_id: str, **kw: object) -> Activity:
    """A Strava-like run summary."""
    fields: dict[str, object] = {
        "source": "strava", "source_id": source_id, "sport": "run", "start_time": START,
        "distance_m": 10_000.0, "moving_time_s": 3000.0, "reported_gain_m": 50.0,
        "elevation_source": "strava", "raw": {"id": source_id, "name": "Morning Run"},
    }  # fmt: skip
    fields.update(kw)
    return Activity(**fields)  # type: ignore[arg-type]


def label(terrain: Terrain = Terrain.FLAT, gain: float = 50.0) -> Classification:
    """A classification with figures."""
    return Classification(
        label=terrain, distance_m=10_000.0, elevation_gain_m=gain, elevation_loss_m=gain,
        uphill_m=1000.0, downhill_m=1000.0, flat_m=8000.0, version=1,
        inputs={"basis": "summary"},
    )  # fmt: skip


def classify_all(
    acts: list[Activity], c: Classification | None = None
) -> dict[str, tuple[Profile | None, Classification]]:
    """Every activity with the same classification."""
    return {a.source_id: (a.profile, c or label()) for a in acts}


def state_of(db: Database, name: str = "strava", kind: str = "strava") -> int:
    """Create athlete `me` and a sync state; its id."""
    with db.session() as s:
        athlete = repo.ensure_athlete(s, "me")
        return repo.ensure_sync_state(s, athlete, name, kind).id


def save(db: Database, state_id: int, batch: Batch) -> repo.BatchResult:
    """Save a batch with every activity labelled flat, in its own transaction."""
    with db.session() as s:
        state = s.get_one(SyncState, state_id)
        return repo.save_batch(
            s, state, batch, classify_all(list(batch.activities)), RUN_SPORTS, NOW
        )


class TestCodec:
    """Profile compression."""

    def test_round_trip(self) -> None:
        """A profile comes back with its samples (to float32 precision), step and distance."""
        alt = np.linspace(100.0, 900.0, 4201) + np.sin(np.arange(4201.0))
        blob = encode_profile(Profile(altitude_m=alt, distance_m=42_005.0))
        back = decode_profile(blob, 42_005.0)
        assert back.distance_m == 42_005.0
        assert back.step_m == 10.0
        np.testing.assert_allclose(back.altitude_m, alt, atol=1e-3)
        assert len(blob) < alt.size * 4

    def test_empty(self) -> None:
        """An empty profile round-trips."""
        back = decode_profile(encode_profile(Profile(np.zeros(0), 0.0)), 0.0)
        assert back.altitude_m.shape == (0,)

    def test_corrupt_blob(self) -> None:
        """Foreign bytes give a StoreError."""
        with pytest.raises(StoreError):
            decode_profile(b"xyz-not-a-profile", 10.0)


class TestSaveBatch:
    """Upserts, counts, idempotence."""

    def test_counts_insert_update_unchanged(self, db: Database) -> None:
        """New, changed and unchanged activities are counted as such."""
        sid = state_of(db)
        first = save(db, sid, Batch(activities=[activity("1"), activity("2")]))
        assert first == repo.BatchResult(new=2, updated=0, unchanged=0, rejected=0)
        changed = activity("2", name="Renamed", start_time=START + timedelta(days=1))
        second = save(db, sid, Batch(activities=[activity("1"), changed, activity("3")]))
        assert (second.new, second.updated, second.unchanged) == (1, 1, 1)

    def test_unchanged_redelivery_bumps_nothing(self, db: Database) -> None:
        """Saving the same batch again changes no row (updated_at stays)."""
        sid = state_of(db)
        acts = [activity("1", raw={"id": 1, "nested": {"b": [1, 2], "a": None}})]
        save(db, sid, Batch(activities=acts))
        with db.session() as s:
            before = s.scalars(select(ActivityRow.updated_at)).one()
        with db.session() as s:
            state = s.get_one(SyncState, sid)
            later = NOW + timedelta(hours=1)
            result = repo.save_batch(
                s, state, Batch(activities=acts), classify_all(acts), RUN_SPORTS, later
            )
        assert result.unchanged == 1
        with db.session() as s:
            assert s.scalars(select(ActivityRow.updated_at)).one() == before
            assert repo.count_activities(s) == 1
            assert s.scalar(select(func.count()).select_from(Run)) == 1

    def test_stored_fields(self, db: Database) -> None:
        """Raw payload, profile, summary and classification are stored."""
        sid = state_of(db)
        prof = Profile(altitude_m=np.array([100.0, 110.0, 120.0]), distance_m=25.0)
        act = activity("9", raw={"k": [1, 2]}, start_latlng=(46.5, 7.9), end_latlng=(46.6, 8.0))
        with db.session() as s:
            state = s.get_one(SyncState, sid)
            repo.save_batch(
                s, state, Batch(activities=[act]), {"9": (prof, label(Terrain.UPHILL, 300.0))},
                RUN_SPORTS, NOW,
            )  # fmt: skip
        with db.session() as s:
            row = s.scalars(select(ActivityRow)).one()
            assert row.raw == {"k": [1, 2]}
            assert row.label == "uphill"
            assert row.elevation_gain_m == 300.0
            assert row.classify_inputs == {"basis": "summary"}
            assert row.classifier_version == 1
            assert (row.start_lat, row.end_lon) == (46.5, 8.0)
            assert row.source == "strava"
            assert row.profile is not None
            back = decode_profile(row.profile, row.profile_distance_m or 0.0)
            np.testing.assert_allclose(back.altitude_m, [100.0, 110.0, 120.0])

    def test_times_come_back_aware_utc(self, db: Database) -> None:
        """A start time given in another zone is stored and read back as aware UTC."""
        from zoneinfo import ZoneInfo

        sid = state_of(db)
        local = datetime(2026, 5, 30, 9, 0, tzinfo=ZoneInfo("Europe/Zurich"))
        save(db, sid, Batch(activities=[activity("1", start_time=local)]))
        with db.session() as s:
            row = s.scalars(select(ActivityRow)).one()
            assert row.start_time.tzinfo is not None
            assert row.start_time.utcoffset() == timedelta(0)
            assert row.start_time == local
            views = repo.list_runs(s)
            assert views[0].start_time.utcoffset() == timedelta(0)

    def test_cursor_saved_with_batch(self, db: Database) -> None:
        """The batch's cursor is stored; a batch with cursor None leaves it."""
        sid = state_of(db)
        save(db, sid, Batch(activities=[activity("1")], cursor={"after": "2026-05-30"}))
        save(db, sid, Batch(activities=[activity("2")]))
        with db.session() as s:
            assert s.get_one(SyncState, sid).cursor == {"after": "2026-05-30"}

    def test_failing_batch_leaves_nothing(self, db: Database) -> None:
        """An exception inside the transaction leaves neither activities nor cursor."""
        sid = state_of(db)

        def crash() -> None:
            with db.session() as s:
                state = s.get_one(SyncState, sid)
                acts = [activity("1")]
                batch = Batch(activities=acts, cursor={"page": 2})
                repo.save_batch(s, state, batch, classify_all(acts), RUN_SPORTS, NOW)
                raise RuntimeError("crash after save")

        with pytest.raises(RuntimeError, match="crash"):
            crash()
        with db.session() as s:
            assert repo.count_activities(s) == 0
            assert s.get_one(SyncState, sid).cursor == {}
            assert s.scalar(select(func.count()).select_from(Run)) == 0

    def test_seen_items_with_rejected_reason(self, db: Database) -> None:
        """Seen keys are stored with status; rejected ones with their reason."""
        sid = state_of(db, "folder", "folder")
        batch = Batch(
            activities=[activity("/runs/a.fit", source="folder", elevation_source="file")],
            seen={"/runs/a.fit": "10:1", "/runs/ride.fit": "20:2", "/runs/bad.fit": "30:3"},
            rejected=[Rejected(key="/runs/bad.fit", reason="truncated FIT file")],
        )
        result = save(db, sid, batch)
        assert result.rejected == 1
        with db.session() as s:
            state = s.get_one(SyncState, sid)
            assert repo.load_seen(s, state) == {
                "/runs/a.fit": "10:1", "/runs/ride.fit": "20:2", "/runs/bad.fit": "30:3",
            }  # fmt: skip
            bad = repo.rejected_items(s, state)
            assert [(i.key, i.reason) for i in bad] == [("/runs/bad.fit", "truncated FIT file")]
            statuses = {i.key: i.status for i in state_items(s, state)}
            assert statuses == {
                "/runs/a.fit": "stored", "/runs/ride.fit": "skipped", "/runs/bad.fit": "rejected",
            }  # fmt: skip

    def test_non_runs_have_no_run(self, db: Database) -> None:
        """A ride is stored but belongs to no run."""
        sid = state_of(db)
        save(db, sid, Batch(activities=[activity("r", sport="ride", distance_m=40_000.0)]))
        with db.session() as s:
            row = s.scalars(select(ActivityRow)).one()
            assert row.is_run is False
            assert row.run_id is None
            assert repo.list_runs(s) == []

    def test_deleted_activity_leaves_its_run(self, db: Database) -> None:
        """A deleted activity is marked and its run, now empty, disappears."""
        sid = state_of(db)
        save(db, sid, Batch(activities=[activity("1")]))
        result = save(db, sid, Batch(deleted=["1", "unknown"]))
        assert result.deleted == 1
        with db.session() as s:
            assert repo.count_activities(s) == 0
            assert repo.list_runs(s) == []
            assert s.scalars(select(ActivityRow.deleted_at)).one() == NOW


def state_items(s: object, state: SyncState) -> list[SeenItem]:
    """Every seen item of a state."""
    from sqlalchemy.orm import Session

    assert isinstance(s, Session)
    return list(s.scalars(select(SeenItem).where(SeenItem.sync_state_id == state.id)))


class TestSyncState:
    """Sync results and due sources."""

    def test_ok_resets_failures(self, db: Database) -> None:
        """Errors count up; ok resets the count and sets last_sync."""
        sid = state_of(db)
        with db.session() as s:
            st = s.get_one(SyncState, sid)
            repo.record_sync_result(s, st, status="error", now=NOW, next_sync=None, error="x")
            repo.record_sync_result(s, st, status="error", now=NOW, next_sync=None, error="y")
            assert (st.failures, st.last_error, st.last_sync) == (2, "y", None)
            repo.record_sync_result(s, st, status="ok", now=NOW, next_sync=NOW, error=None)
            assert (st.failures, st.last_error, st.last_sync) == (0, None, NOW)

    def test_due(self, db: Database) -> None:
        """Due: never scheduled or past next_sync; not needs_auth, not leased."""
        with db.session() as s:
            me = repo.ensure_athlete(s, "me")
            names = ["new", "due", "later", "auth", "leased"]
            st = {n: repo.ensure_sync_state(s, me, n, "folder") for n in names}
            st["due"].next_sync = NOW - timedelta(minutes=1)
            st["later"].next_sync = NOW + timedelta(minutes=1)
            st["auth"].state = "needs_auth"
            st["leased"].lease_until = NOW + timedelta(minutes=5)
            s.flush()
            assert [x.name for x in repo.due_sync_states(s, NOW)] == ["new", "due"]
            assert [x.name for x in repo.all_sync_states(s)] == sorted(names)

    def test_ensure_is_idempotent(self, db: Database) -> None:
        """Ensuring an athlete and a state twice gives the same rows."""
        assert state_of(db) == state_of(db)
        with db.session() as s:
            assert repo.athlete_names(s) == ["me"]


class TestAccounts:
    """Connected accounts."""

    def test_lifecycle(self, db: Database) -> None:
        """An account is upserted, changes state and is deleted."""
        with db.session() as s:
            me = repo.ensure_athlete(s, "me")
            repo.upsert_account(s, me, "strava", "42", "Anna", "/t/strava.json", "read", NOW)
            acc = repo.upsert_account(s, me, "strava", "42", "Anna B", "/t/s.json", "read", NOW)
            assert acc.display_name == "Anna B"
        with db.session() as s:
            assert repo.set_account_state(s, "me", "strava", "needs_auth", NOW) is True
            got = repo.get_account(s, "me", "strava")
            assert got is not None
            assert got.state == "needs_auth"
            assert repo.get_account(s, "me", "garmin") is None
            assert repo.delete_account(s, "me", "strava") is True
            assert repo.delete_account(s, "me", "strava") is False


class TestRunsViews:
    """list_runs, runs_for_balance, reclassification."""

    def test_list_runs_shape_and_filters(self, db: Database) -> None:
        """Runs come oldest first with their sources; filters apply."""
        sid = state_of(db)
        acts = [
            activity("2", start_time=START + timedelta(days=1), distance_m=12_000.0),
            activity("1"),
        ]
        save(db, sid, Batch(activities=acts))
        with db.session() as s:
            views = repo.list_runs(s, athlete="me")
            assert [v.sources for v in views] == [(("strava", "1"),), (("strava", "2"),)]
            first = views[0]
            assert (first.athlete, first.sport, first.label) == ("me", "run", "flat")
            assert (first.distance_m, first.moving_time_s, first.elevation_gain_m) == (
                10_000.0, 3000.0, 50.0,
            )  # fmt: skip
            assert len(repo.list_runs(s, since=START + timedelta(hours=1))) == 1
            assert repo.list_runs(s, label="uphill") == []
            assert repo.list_runs(s, athlete="nobody") == []

    def test_runs_for_balance(self, db: Database) -> None:
        """Runs in [start, end) with their label as Terrain."""
        sid = state_of(db)
        save(db, sid, Batch(activities=[activity("1"), activity("2", start_time=NOW)]))
        with db.session() as s:
            got = repo.runs_for_balance(s, "me", START, NOW)
            assert [(r.start_time, r.label, r.distance_m) for r in got] == [
                (START, Terrain.FLAT, 10_000.0)
            ]

    def test_reclassify_updates_runs(self, db: Database) -> None:
        """A new classification reaches the row and its run."""
        sid = state_of(db)
        prof = Profile(altitude_m=np.array([1.0, 2.0]), distance_m=10.0)
        save(db, sid, Batch(activities=[activity("1", profile=prof)]))
        with db.session() as s:
            items = list(repo.iter_for_reclassify(s))
            assert len(items) == 1
            row, summary, profile = items[0]
            assert summary.distance_m == 10_000.0
            assert summary.reported_gain_m == 50.0
            assert profile is not None
            np.testing.assert_allclose(profile.altitude_m, [1.0, 2.0])
            assert repo.apply_classification(s, row, label(Terrain.UPHILL, 400.0)) is True
            assert repo.apply_classification(s, row, label(Terrain.UPHILL, 400.0)) is False
        with db.session() as s:
            view = repo.list_runs(s)[0]
            assert (view.label, view.elevation_gain_m) == ("uphill", 400.0)


class TestWorkerHelpers:
    """Small lookups the worker and the CLI use."""

    def test_newest_start_and_get_state(self, db: Database) -> None:
        """newest_start is the latest stored start, aware UTC; get_sync_state finds by id."""
        sid = state_of(db)
        with db.session() as s:
            assert repo.newest_start(s, repo.get_sync_state(s, sid)) is None
        later = START + timedelta(days=2)
        save(db, sid, Batch(activities=[activity("1"), activity("2", start_time=later)]))
        with db.session() as s:
            got = repo.newest_start(s, repo.get_sync_state(s, sid))
            assert got == later
            assert got is not None
            assert got.utcoffset() == timedelta(0)
            with pytest.raises(StoreError):
                repo.get_sync_state(s, 9999)

    def test_clear_needs_auth_and_list_accounts(self, db: Database) -> None:
        """A reconnect makes the source due again; accounts list with their athlete."""
        sid = state_of(db)
        with db.session() as s:
            st = repo.get_sync_state(s, sid)
            repo.record_sync_result(
                s, st, status="needs_auth", now=NOW, next_sync=NOW, error="revoked"
            )
            me = repo.ensure_athlete(s, "me")
            repo.upsert_account(s, me, "strava", "42", "Anna", None, "activity:read_all", NOW)
        with db.session() as s:
            repo.clear_needs_auth(s, "strava")
            st = repo.get_sync_state(s, sid)
            assert (st.state, st.failures, st.last_error) == ("never_synced", 0, None)
            assert [st.name for st in repo.due_sync_states(s, NOW)] == ["strava"]
            accounts = repo.list_accounts(s)
            assert [(a.athlete_name, a.kind, a.state) for a in accounts] == [
                ("me", "strava", "connected")
            ]
