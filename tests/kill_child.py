"""A `hillsync` process whose Strava is a `responses` mock inside it (kill and secret tests).

Run as `python tests/kill_child.py ACTIVITIES SEED -- HILLSYNC ARGS...`: Strava's activity
list and streams endpoints answer from a seeded simulated history of ACTIVITIES runs (the
same for every process with the same arguments), then hillsync's own `main` runs. Nothing
leaves the machine: any other request fails. `KILL_CHILD_FAULT` injects a fault that
carries the request's credentials: `echo401` (Strava answers 401 quoting the Authorization
header), `raise` (the HTTP layer raises an unexpected error quoting it), `cli` (the
notifier's test send raises an unexpected error quoting the URL, up to the command line).
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import responses

API = "https://www.strava.com/api/v3"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def history(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` runs, one a day back from NOW, half of them point-to-point (streams needed)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        start = NOW - timedelta(days=count - i, hours=rng.randint(0, 5))
        dist = rng.uniform(5000, 15000)
        gain = rng.choice([10.0, 60.0, 250.0])
        lat, lon = 46.9, 7.4
        loop = i % 2 == 0
        out.append(
            {
                "resource_state": 2,
                "athlete": {"id": 134815, "resource_state": 1},
                "id": 5_000_000 + i,
                "name": f"Run {i}",
                "distance": round(dist, 1),
                "moving_time": int(dist / 3),
                "elapsed_time": int(dist / 2.8),
                "total_elevation_gain": gain,
                "type": "Run",
                "sport_type": "Run",
                "start_date": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "start_date_local": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "start_latlng": [lat, lon],
                "end_latlng": [lat + 0.0005, lon] if loop else [lat + 0.08, lon + 0.02],
                "trainer": False,
                "manual": False,
                "elev_low": 500.0,
                "elev_high": 500.0 + gain * (0.5 if loop else 1.2),
            }
        )
    return out


def install(acts: list[dict[str, Any]]) -> responses.RequestsMock:
    """Start a mock of Strava's list and streams endpoints serving `acts`."""
    # Both budgets, as Strava reports them: every read counts against the overall one too.
    headers = {
        "X-ReadRateLimit-Usage": "1,1",
        "X-ReadRateLimit-Limit": "100000,1000000",
        "X-RateLimit-Usage": "1,1",
        "X-RateLimit-Limit": "200000,2000000",
    }

    def listing(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        q = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        after = int(q.get("after", 0))
        before = int(q.get("before", 2**40))
        page, per = int(q.get("page", 1)), int(q.get("per_page", 30))
        chosen = [
            a for a in acts if after < datetime.fromisoformat(a["start_date"]).timestamp() < before
        ]
        return 200, headers, json.dumps(chosen[(page - 1) * per : page * per])

    def streams(_request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        n = 300
        body = {
            "altitude": {"data": [500.0 + i * 0.4 for i in range(n)], "series_type": "distance"},
            "distance": {"data": [i * 30.0 for i in range(n)], "series_type": "distance"},
            "latlng": {"data": [[46.9 + i * 3e-4, 7.4] for i in range(n)]},
        }
        return 200, headers, json.dumps(body)

    fault = os.environ.get("KILL_CHILD_FAULT")
    if fault in {"echo401", "raise"}:

        def faulty(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
            auth = str(request.headers.get("Authorization"))
            if fault == "raise":
                raise RuntimeError(f"unexpected failure talking with {auth} at {request.url}")
            return 401, {}, json.dumps({"message": f"Authorization Error {auth}", "errors": []})

        listing = faulty
    if fault == "cli":
        from hillsync import notify

        def send_test(self: Any) -> Any:
            urls = [u.reveal() for u in self._urls]
            raise RuntimeError(f"unexpected failure sending to {urls}")

        notify.Notifier.send_test = send_test  # type: ignore[method-assign]

    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    mock.start()
    mock.add_callback(responses.GET, f"{API}/athlete/activities", callback=listing)
    mock.add_callback(
        responses.GET, re.compile(rf"{re.escape(API)}/activities/\d+/streams.*"), callback=streams
    )
    return mock


def main() -> int:
    count, seed, sep, *args = sys.argv[1:]
    assert sep == "--"
    install(history(int(count), int(seed)))
    from hillsync.cli import main as hillsync_main

    return hillsync_main(args)


if __name__ == "__main__":
    sys.exit(main())
