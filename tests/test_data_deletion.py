"""Strava's API Agreement: an athlete's Strava data goes when they disconnect or revoke.

Through the real stravalib and garminconnect clients with HTTP mocked, on the worker and
the CLI: a run seen only on Strava is deleted, a run also seen on Garmin stays with
Garmin's activity and figures.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import responses
from sqlalchemy import select

from helpers import Clock
from hillsync.config import DEFAULT_ATHLETE
from hillsync.store.tables import ActivityRow
from test_garmin import FakeGarminServer, add_profile
from test_garmin import summary as garmin_summary
from test_strava import LIST_URL, REFRESH_INVALID, REVOKE_URL, TOKEN_URL, FakeStrava
from test_strava import summary as strava_summary
from test_worker import NOW, Env, env

pytestmark = pytest.mark.usefixtures("garmin_offline")
__all__ = ["env"]


def two_sources(env: Env, rsps: responses.RequestsMock) -> None:
    """A run uploaded by Garmin to Strava (one run, two activities) and a Strava-only run."""
    start = NOW - timedelta(days=1)
    env.connect_garmin()
    env.connect_strava(NOW + timedelta(hours=5))
    add_profile(rsps)
    FakeGarminServer(rsps, [garmin_summary(5001, start, gain=160.0, loss=158.0)])
    merged = strava_summary(9001, start + timedelta(seconds=1), gain=42.0)
    merged["external_id"] = "garmin_ping_5001"
    only = strava_summary(9002, NOW - timedelta(days=3), gain=80.0)
    only["external_id"] = None
    FakeStrava(rsps, [merged, only])
    worker = env.worker(Clock(NOW))
    for kind in ("garmin", "strava"):
        (outcome,) = worker.sync_cycle(only=kind).outcomes
        assert outcome.state == "ok"
    assert sorted(r.sources for r in env.runs()) == [
        (("garmin", "5001"), ("strava", "9001")),
        (("strava", "9002"),),
    ]


def strava_rows(env: Env) -> list[str]:
    with env.db.session() as session:
        rows = session.scalars(select(ActivityRow).where(ActivityRow.source_kind == "strava"))
        return [r.source_id for r in rows]


class TestDisconnectStrava:
    """`disconnect strava` deletes what came only from Strava and says how much."""

    def test_strava_only_runs_deleted_merged_kept(
        self, env: Env, rsps: responses.RequestsMock
    ) -> None:
        """The Strava-only run is gone; the merged run keeps Garmin's activity and figures."""
        two_sources(env, rsps)
        rsps.add(responses.POST, REVOKE_URL, json={})
        code, out, err = env.cli("disconnect", "strava")
        assert code == 0, err
        assert "access revoked on Strava" in out
        assert (
            "deleted 2 Strava activities (1 runs; 1 runs also seen from another source keep"
            " their figures from there)"
        ) in out
        (run,) = env.runs()
        assert run.sources == (("garmin", "5001"),)
        assert run.elevation_gain_m == pytest.approx(160.0)
        assert strava_rows(env) == []
        code, out, err = env.cli("status", "--json")
        assert code == 0, err
        assert '"strava"' not in out

    def test_garmin_keeps_data_unless_asked(self, env: Env, rsps: responses.RequestsMock) -> None:
        """`disconnect garmin` keeps its runs; `--delete-data` deletes them and says so."""
        two_sources(env, rsps)
        code, out, err = env.cli("disconnect", "garmin")
        assert code == 0, err
        assert "its runs are kept" in out
        assert len(env.runs()) == 2
        code, out, err = env.cli("disconnect", "garmin", "--delete-data")
        assert code == 0, err
        assert "deleted 1 Garmin activities (0 runs; 1 runs also seen" in out
        assert sorted(r.sources for r in env.runs()) == [
            (("strava", "9001"),),
            (("strava", "9002"),),
        ]


class TestRevocation:
    """A 401 whose refresh Strava refuses: the athlete revoked access."""

    def test_needs_auth_then_deleted(self, env: Env, rsps: responses.RequestsMock) -> None:
        """One needs_auth message, then the Strava-only run is deleted, the merged one kept."""
        two_sources(env, rsps)
        rsps.replace(responses.GET, LIST_URL, status=401, json={"message": "Authorization Error"})
        rsps.add(responses.POST, TOKEN_URL, status=400, json=REFRESH_INVALID)
        worker = env.worker(Clock(NOW + timedelta(hours=1)))
        (outcome,) = worker.sync_cycle(only="strava").outcomes
        assert outcome.state == "needs_auth"
        assert "revoked hillsync's access" in (outcome.error or "")
        assert [m[0] for m in env.messages()] == ["needs_auth"]
        (run,) = env.runs()
        assert run.sources == (("garmin", "5001"),)
        assert strava_rows(env) == []
        assert env.state("strava")[0] == "needs_auth"
        (again,) = worker.sync_cycle(only="strava").outcomes
        assert again.skipped is not None
        assert len(env.messages()) == 1
        with env.db.session() as session:
            from hillsync.store import repo

            account = repo.get_account(session, DEFAULT_ATHLETE, "strava")
            assert account is not None
            assert account.state == "needs_auth"
