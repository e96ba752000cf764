"""Strava API requests per synced activity on a simulated 10-year history.

3,000 activities (80 % loops; runs, trail runs, treadmill runs, rides, walks and hikes) are
served by a `responses` mock of Strava's list and streams endpoints, which counts every
request. A full backfill and a few quiet polls go through StravaSource with the worker's own
needs_profile (the classifier run on each summary). Printed beside the 1.0
request per activity of a naive sync that fetches every activity's detail.

Run: .venv/bin/python bench/bench_strava_requests.py
"""

from __future__ import annotations

import json
import random
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import responses
import tenacity

from hillsync.model import Activity, ClassifyParams, Secret
from hillsync.pipeline import needs_profile_check
from hillsync.sources.base import SourceState
from hillsync.sources.strava import StravaSource

API = "https://www.strava.com/api/v3"
STREAMS_RE = re.compile(rf"{re.escape(API)}/activities/(\d+)/streams.*")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
N = 3000
YEARS = 10


def simulated_history(rng: random.Random) -> list[dict[str, Any]]:
    """Ten years of a runner's Strava: mostly runs, some rides, walks and hikes."""
    out = []
    step = timedelta(days=365 * YEARS) / N
    for i in range(N):
        start = (
            NOW - timedelta(days=365 * YEARS) + step * i + timedelta(minutes=rng.randint(0, 600))
        )
        roll = rng.random()
        sport, trainer = "Run", False
        if roll < 0.12:
            sport = "Ride"
        elif roll < 0.15:
            sport = rng.choice(["Walk", "Hike"])
        elif roll < 0.20:
            sport, trainer = "Run", True
        elif roll < 0.35:
            sport = "TrailRun"
        loop = rng.random() < 0.8
        dist = rng.uniform(5000, 25000) if sport != "Ride" else rng.uniform(20000, 90000)
        per_km = (
            rng.choice([2, 5, 8, 12, 20, 35, 60])
            if sport == "TrailRun"
            else rng.choice([2, 4, 6, 10, 18, 30])
        )
        gain = 0.0 if trainer else per_km * dist / 1000 * rng.uniform(0.8, 1.2)
        low = rng.uniform(300, 1200)
        rise = (
            gain * rng.uniform(0.3, 1.0)
            if loop
            else rng.uniform(0.2, 1.5) * gain + rng.uniform(0, 40)
        )
        lat, lon = 46.9 + rng.uniform(-0.2, 0.2), 7.4 + rng.uniform(-0.2, 0.2)
        end = [lat + 0.0005, lon] if loop else [lat + rng.uniform(0.03, 0.15), lon + 0.02]
        out.append(
            {
                "resource_state": 2,
                "athlete": {"id": 134815, "resource_state": 1},
                "id": 10_000_000 + i,
                "name": f"{sport} {i}",
                "distance": round(dist, 1),
                "moving_time": int(dist / 3.0),
                "elapsed_time": int(dist / 2.8),
                "total_elevation_gain": round(gain, 1),
                "type": {"TrailRun": "Run"}.get(sport, sport),  # the legacy field has no TrailRun
                "sport_type": sport,
                "start_date": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "start_date_local": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "start_latlng": [] if trainer else [lat, lon],
                "end_latlng": [] if trainer else end,
                "trainer": trainer,
                "manual": False,
                "external_id": f"garmin_ping_{20_000_000 + i}",
                "elev_low": None if trainer else round(low, 1),
                "elev_high": None if trainer else round(low + rise, 1),
            }
        )
    return out


class Counter:
    """Counts list and stream requests served by the mock."""

    def __init__(self, activities: list[dict[str, Any]]) -> None:
        self.activities = activities
        self.lists = 0
        self.streams = 0

    def headers(self) -> dict[str, str]:
        # A generous budget: this measures requests, not pauses.
        return {"X-ReadRateLimit-Usage": "1,1", "X-ReadRateLimit-Limit": "100000,1000000"}

    def list_cb(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.lists += 1
        q = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        after, page, per = int(q.get("after", 0)), int(q.get("page", 1)), int(q.get("per_page", 30))
        chosen = [
            a
            for a in self.activities
            if datetime.fromisoformat(a["start_date"]).timestamp() > after
        ]
        return 200, self.headers(), json.dumps(chosen[(page - 1) * per : page * per])

    def streams_cb(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.streams += 1
        n = 200
        body = {
            "altitude": {"data": [500.0 + i * 0.5 for i in range(n)], "series_type": "distance"},
            "distance": {"data": [i * 50.0 for i in range(n)], "series_type": "distance"},
            "latlng": {
                "data": [[46.9 + i * 1e-4, 7.4] for i in range(n)],
                "series_type": "distance",
            },
        }
        return 200, self.headers(), json.dumps(body)


def main() -> None:
    rng = random.Random(20260310)
    acts = simulated_history(rng)
    needs_profile = needs_profile_check(ClassifyParams())
    with tempfile.TemporaryDirectory() as tmp, responses.RequestsMock() as rsps:
        token_path = Path(tmp) / "state" / "strava.json"
        token_path.parent.mkdir(mode=0o700)
        token_path.write_text(
            json.dumps(
                {
                    "access_token": "bench-access",
                    "refresh_token": "bench-refresh",
                    "expires_at": int((NOW + timedelta(hours=6)).timestamp()),
                    "athlete_id": "134815",
                    "scope": "read,activity:read_all",
                }
            )
        )
        counter = Counter(acts)
        rsps.add_callback(responses.GET, f"{API}/athlete/activities", callback=counter.list_cb)
        rsps.add_callback(responses.GET, STREAMS_RE, callback=counter.streams_cb)
        source = StravaSource(
            "strava",
            client_id=1,
            client_secret=Secret("bench-client-secret"),
            token_path=token_path,
            needs_profile=needs_profile,
            clock=lambda: NOW,
            retrying=tenacity.Retrying(
                wait=tenacity.wait_none(), stop=tenacity.stop_after_attempt(2)
            ),
        )
        since = NOW - timedelta(days=365 * YEARS + 2)
        synced: dict[str, Activity] = {}
        cursor: dict[str, Any] = {}
        for batch in source.fetch(SourceState(since=since)):
            synced.update((a.source_id, a) for a in batch.activities)
            cursor = dict(batch.cursor or cursor)
        backfill = counter.lists + counter.streams
        quiet_polls = 4
        for _ in range(quiet_polls):
            for batch in source.fetch(SourceState(since=since, cursor=cursor)):
                synced.update((a.source_id, a) for a in batch.activities)
                cursor = dict(batch.cursor or cursor)
        total = counter.lists + counter.streams
    runs = sum(1 for a in synced.values() if a.is_run)
    print(f"activities synced: {len(synced)} ({runs} runs, {len(synced) - runs} other)")
    pages = counter.lists - quiet_polls
    polls = total - backfill
    print(f"backfill requests: {backfill} ({pages} list pages, {counter.streams} streams)")
    print(f"quiet polls: {quiet_polls}, requests: {polls} ({polls / quiet_polls:.1f} each)")
    print(f"{'':28}{'hillsync':>10}{'naive list+detail':>20}")
    naive = (N + (N + 199) // 200 + quiet_polls) / len(synced)
    print(f"{'requests per activity':28}{total / len(synced):>10.3f}{naive:>20.3f}")
    print(f"target: <= 0.2 -> {'met' if total / len(synced) <= 0.2 else 'NOT met'}")


if __name__ == "__main__":
    main()
