"""Contract tests of the Strava source, through the real stravalib client with HTTP mocked."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import stat
import threading
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
import tenacity
from structlog.testing import capture_logs

from helpers import Clock
from hillsync.errors import (
    AccessRevoked,
    AuthRequired,
    ConfigError,
    RateLimited,
    SourceUnavailable,
)
from hillsync.model import Activity, Batch, Secret, is_loop
from hillsync.sources.base import SourceState
from hillsync.sources.oauth import RedirectListener
from hillsync.sources.strava import (
    Disconnected,
    StravaApp,
    StravaSource,
    activity_from_summary,
    connect_strava,
    disconnect_strava,
    map_sport,
)
from source_contract import SourceContract, SourceWorld

DATA = Path(__file__).parent / "data" / "strava"
API = "https://www.strava.com/api/v3"
TOKEN_URL = "https://www.strava.com/oauth/token"
REVOKE_URL = "https://www.strava.com/oauth/revoke"
DEAUTH_URL = "https://www.strava.com/oauth/deauthorize"
LIST_URL = f"{API}/athlete/activities"
STREAMS_RE = re.compile(rf"{re.escape(API)}/activities/(\d+)/streams.*")
CLIENT_ID = 4242
CLIENT_SECRET = "CLIENT-SECRET-fedcba9876543210"
ACCESS = "ACCESS-live-1111222233334444"
REFRESH = "REFRESH-live-5555666677778888"
NOW = datetime(2026, 3, 10, 12, 5, tzinfo=UTC)
APP = StravaApp(CLIENT_ID, Secret(CLIENT_SECRET))


UNAUTHORIZED = {
    "message": "Authorization Error",
    "errors": [{"resource": "Athlete", "field": "access_token", "code": "invalid"}],
}
#: Strava's answer to an authorization code that is used, expired or of another application.
CODE_INVALID = {
    "message": "Bad Request",
    "errors": [{"resource": "AuthorizationCode", "field": "code", "code": "invalid"}],
}
#: Strava's 403 for an application that is not active (2026-27: it needs a paid subscription).
APP_INACTIVE = {
    "message": "Forbidden",
    "errors": [{"resource": "Application", "field": "Status", "code": "Inactive"}],
}
REFRESH_INVALID = {
    "message": "Bad Request",
    "errors": [{"resource": "RefreshToken", "field": "refresh_token", "code": "invalid"}],
}


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


TEMPLATE = load("summary_run.json")


def summary(
    ident: int,
    start: datetime,
    *,
    sport_type: str = "Run",
    loop: bool = True,
    trainer: bool = False,
    gain: float = 42.0,
) -> dict[str, Any]:
    """A list-page summary shaped like Strava's SummaryActivity example."""
    raw: dict[str, Any] = copy.deepcopy(TEMPLATE)
    raw.update(
        id=ident,
        sport_type=sport_type,
        type="Ride" if "Ride" in sport_type else "Run",
        start_date=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        start_date_local=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        trainer=trainer,
        total_elevation_gain=gain,
        external_id=f"garmin_ping_{ident}",
    )
    if not loop:
        raw["end_latlng"] = [47.0, 7.6]
    if trainer:
        raw["start_latlng"] = raw["end_latlng"] = []
    return raw


class FakeStrava:
    """Strava's list and streams endpoints over an in-memory history, counting requests."""

    def __init__(self, rsps: responses.RequestsMock, activities: list[dict[str, Any]]) -> None:
        self.activities = sorted(activities, key=lambda a: a["start_date"])
        self.list_calls: list[dict[str, str]] = []
        self.stream_calls: list[int] = []
        self.tokens_seen: list[str] = []
        self.usage = [10, 100]
        self.limit = [100, 1000]
        self.fail_next: list[int] = []
        rsps.add_callback(responses.GET, LIST_URL, callback=self._list)
        rsps.add_callback(responses.GET, STREAMS_RE, callback=self._streams)

    def headers(self) -> dict[str, str]:
        return {
            "X-ReadRateLimit-Usage": f"{self.usage[0]},{self.usage[1]}",
            "X-ReadRateLimit-Limit": f"{self.limit[0]},{self.limit[1]}",
            "X-RateLimit-Usage": f"{self.usage[0]},{self.usage[1]}",
            "X-RateLimit-Limit": "200,2000",
        }

    def _auth(self, request: requests.PreparedRequest) -> None:
        self.tokens_seen.append(str(request.headers.get("Authorization", "")))

    def _list(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self._auth(request)
        if self.fail_next:
            return self.fail_next.pop(0), self.headers(), json.dumps({"message": "Server Error"})
        query = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        self.list_calls.append(query)
        after = int(query.get("after", "0"))
        page, per_page = int(query.get("page", "1")), int(query.get("per_page", "30"))
        chosen = [
            a
            for a in self.activities
            if datetime.fromisoformat(a["start_date"]).timestamp() > after
        ]
        body = chosen[(page - 1) * per_page : page * per_page]
        return 200, self.headers(), json.dumps(body)

    def _streams(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self._auth(request)
        match = STREAMS_RE.match(str(request.url))
        assert match is not None
        self.stream_calls.append(int(match.group(1)))
        return 200, self.headers(), (DATA / "streams_p2p.json").read_text()

    @property
    def requests(self) -> int:
        return len(self.list_calls) + len(self.stream_calls)


def point_to_point(activity: Activity) -> bool:
    """The stand-in classifier: only a point-to-point run needs its profile."""
    return is_loop(activity.start_latlng, activity.end_latlng) is False


def write_tokens(
    path: Path, *, expires_at: datetime, access: str = ACCESS, refresh: str = REFRESH
) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "access_token": access,
                "refresh_token": refresh,
                "expires_at": int(expires_at.timestamp()),
                "athlete_id": "134815",
                "scope": "read,activity:read_all",
            }
        )
    )
    path.chmod(0o600)


def no_wait() -> tenacity.Retrying:
    return tenacity.Retrying(
        wait=tenacity.wait_none(), stop=tenacity.stop_after_attempt(3), sleep=lambda _s: None
    )


@pytest.fixture
def token_path(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "strava" / "me.json"
    write_tokens(path, expires_at=NOW + timedelta(hours=5))
    return path


def make_source(
    token_path: Path,
    clock: Callable[[], datetime] | None = None,
    needs_profile: Callable[[Activity], bool] = point_to_point,
    **kwargs: Any,
) -> StravaSource:
    return StravaSource(
        "strava",
        client_id=CLIENT_ID,
        client_secret=Secret(CLIENT_SECRET),
        token_path=token_path,
        needs_profile=needs_profile,
        clock=clock or Clock(NOW),
        retrying=no_wait(),
        **kwargs,
    )


def history(
    n: int, *, end: datetime = NOW - timedelta(days=1), every: timedelta = timedelta(hours=16)
) -> list[dict[str, Any]]:
    """`n` activities ending at `end`: every fifth a ride, every seventh point-to-point."""
    out = []
    for i in range(n):
        start = end - every * (n - 1 - i)
        sport = "Ride" if i % 5 == 4 else "Run"
        out.append(summary(1000 + i, start, sport_type=sport, loop=i % 7 != 3))
    return out


def run_fetch(source: StravaSource, state: SourceState) -> list[Batch]:
    return list(source.fetch(state))


def drain(
    source: StravaSource,
    state: SourceState,
    into: list[Batch],
    after_each: Callable[[], None] | None = None,
) -> None:
    for batch in source.fetch(state):
        into.append(batch)
        if after_each is not None:
            after_each()


def first_state(days: int = 365) -> SourceState:
    return SourceState(since=NOW - timedelta(days=days))


class TestMapping:
    """Strava's summaries become hillsync activities."""

    def test_sports(self) -> None:
        """Strava sport types map onto hillsync's names, and a trainer run is a treadmill run."""
        assert map_sport("Run") == "run"
        assert map_sport("TrailRun") == "trail_run"
        assert map_sport("GravelRide") == "ride"
        assert map_sport("Kitesurf") == "other"
        assert map_sport("Run", trainer=True) == "treadmill"

    def test_summary_fields(self) -> None:
        """Distance, gain, elevation range, ends, external id and the raw payload are kept."""
        act = activity_from_summary(TEMPLATE)
        assert act.source_id == "154504250376823"
        assert act.start_time == datetime(2026, 3, 1, 7, 15, 9, tzinfo=UTC)
        assert act.distance_m == pytest.approx(10012.4)
        assert act.reported_gain_m == pytest.approx(42.0)
        assert act.elevation_range_m == pytest.approx(39.2)
        assert act.start_latlng == (46.948, 7.4474)
        assert act.external_id == "garmin_ping_12345678987"
        assert act.elevation_source == "strava"
        assert act.raw is not None
        assert act.raw["device_name"] == "Garmin Forerunner 965"

    def test_virtual_and_trainer_are_indoor(self) -> None:
        """Virtual and trainer runs are indoor, so their label is unknown."""
        virtual = activity_from_summary(summary(1, NOW, sport_type="VirtualRun"))
        trainer = activity_from_summary(summary(2, NOW, trainer=True))
        assert virtual.indoor
        assert virtual.sport == "virtual_run"
        assert trainer.indoor
        assert trainer.sport == "treadmill"
        assert trainer.start_latlng is None


class TestConnect:
    """`connect strava` in its three forms."""

    def exchange(self, rsps: responses.RequestsMock, body: Any = None, status: int = 200) -> None:
        rsps.add(responses.POST, TOKEN_URL, json=body or load("oauth_exchange.json"), status=status)

    def test_code(self, rsps: responses.RequestsMock, tmp_path: Path) -> None:
        """A bare code is exchanged and the tokens land 0600 in a 0700 folder."""
        self.exchange(rsps)
        path = tmp_path / "state" / "strava" / "me.json"
        said: list[str] = []
        account = connect_strava(APP, path, code="abc", say=said.append)
        assert account.remote_id == "134815"
        assert account.display_name == "Anna Berg"
        stored = json.loads(path.read_text())
        assert stored["refresh_token"] == "REFRESH-first-0123456789abcdef"
        assert stored["athlete_id"] == "134815"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        body = rsps.calls[0].request.body
        assert "code=abc" in str(body)
        assert "grant_type=authorization_code" in str(body)

    rsps: responses.RequestsMock

    @pytest.fixture(autouse=True)
    def _mock(self, rsps: responses.RequestsMock) -> None:
        self.rsps = rsps

    def start_pending(self, path: Path) -> str:
        """Print the URL headless (the listener times out at once) and return it."""
        said: list[str] = []
        with pytest.raises(AuthRequired, match="no answer"):
            connect_strava(
                APP,
                path,
                open_browser=False,
                port=0,
                timeout_s=0.05,
                say=said.append,
            )
        url = next(
            line for text in said for line in text.splitlines() if line.startswith("https://")
        )
        self.rsps.calls.reset()  # the timeout's probe of the application
        return url

    def test_pasted_redirect(self, rsps: responses.RequestsMock, tmp_path: Path) -> None:
        """The address the browser ended on, pasted later, completes the connection."""
        path = tmp_path / "strava.json"
        url = self.start_pending(path)
        query = parse_qs(urlsplit(url).query)
        assert query["scope"] == ["read,activity:read_all"]
        assert query["redirect_uri"][0].startswith("http://127.0.0.1:")
        self.exchange(rsps)
        redirect = f"http://127.0.0.1:8721/authorized?state={query['state'][0]}&code=xyz&scope=read,activity:read_all"
        account = connect_strava(APP, path, redirect_url=redirect)
        assert account.scope == "read,activity:read_all"
        assert path.exists()
        assert not path.with_name("strava.json.pending").exists()

    def test_pasted_redirect_state_mismatch(
        self, rsps: responses.RequestsMock, tmp_path: Path
    ) -> None:
        """A pasted address whose state is not the pending one is refused without a request."""
        path = tmp_path / "strava.json"
        self.start_pending(path)
        redirect = (
            "http://127.0.0.1:8721/authorized?state=forged&code=xyz&scope=read,activity:read_all"
        )
        with pytest.raises(AuthRequired, match="state mismatch"):
            connect_strava(APP, path, redirect_url=redirect)
        assert len(rsps.calls) == 0
        assert not path.exists()

    def test_scope_without_read_all(self, rsps: responses.RequestsMock, tmp_path: Path) -> None:
        """A grant without activity:read_all is refused with what to tick."""
        path = tmp_path / "strava.json"
        state = parse_qs(urlsplit(self.start_pending(path)).query)["state"][0]
        redirect = (
            f"http://127.0.0.1:8721/authorized?state={state}&code=xyz&scope=read,activity:read"
        )
        with pytest.raises(AuthRequired, match="without activity:read_all"):
            connect_strava(APP, path, redirect_url=redirect)
        assert len(rsps.calls) == 0

    def test_listener_flow(self, rsps: responses.RequestsMock, tmp_path: Path) -> None:
        """A browser stand-in asks for a favicon, then follows the redirect to the listener."""
        rsps.add_passthru("http://127.0.0.1")
        self.exchange(rsps)
        path = tmp_path / "strava.json"
        pages: list[tuple[int, str]] = []
        visitors: list[threading.Thread] = []

        def browser(text: str) -> None:
            url = next((w for w in text.split() if w.startswith("https://")), None)
            if url is None:
                return
            query = parse_qs(urlsplit(url).query)
            back = query["redirect_uri"][0]

            def visit() -> None:
                base = back.rsplit("/", 1)[0]
                try:
                    urllib.request.urlopen(base + "/favicon.ico", timeout=5)
                except urllib.error.HTTPError as e:
                    pages.append((e.code, ""))
                target = f"{back}?state={query['state'][0]}&code=c0de&scope=read,activity:read_all"
                with urllib.request.urlopen(target, timeout=5) as answer:
                    pages.append((answer.status, answer.read().decode()))

            visitor = threading.Thread(target=visit, daemon=True)
            visitors.append(visitor)
            visitor.start()

        account = connect_strava(
            APP,
            path,
            open_browser=False,
            port=0,
            timeout_s=10,
            say=browser,
        )
        visitors[0].join(5)
        assert account.remote_id == "134815"
        assert pages[0][0] == 404
        assert pages[1][0] == 200
        assert "hillsync is connected" in pages[1][1]
        assert "Anna Berg is connected for me" in pages[1][1]

    def test_listener_refuses_state_mismatch(self) -> None:
        """The listener ends with AuthRequired when the redirect's state is not its own."""
        with RedirectListener("expected", port=0) as listener:

            def visit() -> None:
                with contextlib.suppress(urllib.error.HTTPError):
                    urllib.request.urlopen(listener.redirect_uri + "?state=other&code=1", timeout=5)

            threading.Thread(target=visit, daemon=True).start()
            with pytest.raises(AuthRequired, match="state mismatch"):
                listener.wait(5)

    def test_listener_binds_loopback_only(self) -> None:
        """The listener's address is 127.0.0.1, never every interface."""
        with RedirectListener("s", port=0) as listener:
            assert listener.redirect_uri.startswith("http://127.0.0.1:")
            assert listener._server.server_address[0] == "127.0.0.1"

    def test_denied(self, rsps: responses.RequestsMock, tmp_path: Path) -> None:
        """A denied authorization says so."""
        path = tmp_path / "strava.json"
        state = parse_qs(urlsplit(self.start_pending(path)).query)["state"][0]
        with pytest.raises(AuthRequired, match="denied"):
            connect_strava(
                APP,
                path,
                redirect_url=f"http://127.0.0.1:8721/authorized?state={state}&error=access_denied",
            )

    def test_bad_code(self, rsps: responses.RequestsMock, tmp_path: Path) -> None:
        """A used or expired code gives AuthRequired naming the command."""
        body = CODE_INVALID
        self.exchange(rsps, body, 400)
        with pytest.raises(AuthRequired, match="hillsync connect strava"):
            connect_strava(
                APP,
                tmp_path / "t.json",
                code="old",
                say=lambda _s: None,
            )

    def test_disconnect(self, rsps: responses.RequestsMock, token_path: Path) -> None:
        """Disconnecting revokes (oauth/revoke) and deletes the token file."""
        rsps.add(responses.POST, REVOKE_URL, json={})
        result = disconnect_strava(APP, token_path, now=NOW)
        assert result == Disconnected(revoked=True, endpoint="revoke")
        assert not token_path.exists()
        assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {ACCESS}"


class TestPolling:
    """Listing, backfill and API economy."""

    def test_backfill_pages(self, rsps: responses.RequestsMock, token_path: Path) -> None:
        """A 450-activity backfill takes 3 list pages plus one stream per point-to-point run."""
        fake = FakeStrava(rsps, history(450))
        batches = run_fetch(make_source(token_path), first_state())
        activities = [a for b in batches for a in b.activities]
        assert len({a.source_id for a in activities}) == 450
        assert len(fake.list_calls) == 3
        assert all(c["per_page"] == "200" for c in fake.list_calls)
        p2p_runs = [a for a in activities if a.sport == "run" and point_to_point(a)]
        assert len(fake.stream_calls) == len(p2p_runs) > 0
        assert len(batches) == 3
        assert "listing" not in batches[-1].cursor  # type: ignore[operator]

    def test_streams_only_where_needed(
        self, rsps: responses.RequestsMock, token_path: Path
    ) -> None:
        """A point-to-point run gets its streams; loops, rides and treadmill runs cost nothing."""
        day = NOW - timedelta(days=3)
        acts = [
            summary(1, day, loop=False),
            summary(2, day + timedelta(hours=1)),
            summary(3, day + timedelta(hours=2), sport_type="Ride", loop=False),
            summary(4, day + timedelta(hours=3), trainer=True),
        ]
        fake = FakeStrava(rsps, acts)
        batches = run_fetch(make_source(token_path), first_state())
        assert fake.stream_calls == [1]
        by_id = {a.source_id: a for b in batches for a in b.activities}
        track = by_id["1"].track
        assert track is not None
        assert len(track) == 6
        assert track.distance_m is not None
        assert track.distance_m[-1] == 5000.0
        assert track.lat is not None
        assert track.lat[0] == pytest.approx(46.9)
        assert by_id["3"].sport == "ride"
        assert by_id["3"].track is None
        assert by_id["4"].indoor

    def test_streams_always(self, rsps: responses.RequestsMock, token_path: Path) -> None:
        """With streams = "always" every outdoor run gets streams, rides still none."""
        day = NOW - timedelta(days=3)
        acts = [summary(1, day), summary(2, day + timedelta(hours=1), sport_type="Ride")]
        fake = FakeStrava(rsps, acts)
        run_fetch(
            make_source(token_path, streams="always", needs_profile=lambda _a: False), first_state()
        )
        assert fake.stream_calls == [1]

    def test_quiet_poll_is_one_request(
        self, rsps: responses.RequestsMock, token_path: Path
    ) -> None:
        """A poll with nothing new costs 1 request, though the overlap lists old runs again."""
        acts = history(30, end=NOW - timedelta(hours=3), every=timedelta(hours=5))
        fake = FakeStrava(rsps, acts)
        source = make_source(token_path)
        first = run_fetch(source, first_state())
        before = fake.requests
        again = run_fetch(
            source, SourceState(since=NOW - timedelta(days=365), cursor=first[-1].cursor or {})
        )
        assert fake.requests - before == 1
        assert [a for b in again for a in b.activities] == []
        newest = datetime.fromisoformat(acts[-1]["start_date"]).timestamp()
        assert int(fake.list_calls[-1]["after"]) == int(newest) - 2 * 86400

    def test_new_and_edited_activities(
        self, rsps: responses.RequestsMock, token_path: Path
    ) -> None:
        """A new run and an edited one inside the overlap are yielded, nothing else."""
        acts = history(10, end=NOW - timedelta(hours=3), every=timedelta(hours=5))
        fake = FakeStrava(rsps, acts)
        source = make_source(token_path)
        cursor = run_fetch(source, first_state())[-1].cursor or {}
        fake.activities[-1]["name"] = "Renamed"
        fake.activities.append(summary(99, NOW - timedelta(hours=1)))
        again = run_fetch(source, SourceState(since=NOW - timedelta(days=365), cursor=cursor))
        assert sorted(a.source_id for b in again for a in b.activities) == ["1009", "99"]

    def test_resume_after_rate_limit(self, rsps: responses.RequestsMock, token_path: Path) -> None:
        """A backfill stopped by the budget resumes from its cursor without listing twice."""
        fake = FakeStrava(rsps, history(450))
        clock = Clock(NOW)
        source = make_source(token_path, clock=clock)
        batches: list[Batch] = []

        def spend() -> None:
            fake.usage = [96, 200]  # the next request would eat into the reserve of 5

        with pytest.raises(RateLimited) as caught:
            drain(source, first_state(), batches, spend)
        assert caught.value.resume_at == datetime(2026, 3, 10, 12, 15, tzinfo=UTC)
        # page 1 whole, then page 2 cut short when its streams hit the reserve
        assert len(batches) == 2
        assert batches[1].cursor is not None
        assert batches[1].cursor["listing"]["done"]
        calls_before = len(fake.list_calls)
        cursor = batches[-1].cursor or {}
        assert "listing" in cursor
        clock.now = caught.value.resume_at + timedelta(seconds=1)
        fake.usage = [1, 200]
        source2 = make_source(token_path, clock=clock)
        rest = run_fetch(source2, SourceState(since=NOW - timedelta(days=365), cursor=cursor))
        ids = [a.source_id for b in batches + rest for a in b.activities]
        assert len(set(ids)) == 450
        assert len(ids) - len(set(ids)) <= 2  # at most the same-second page boundary again
        assert len(fake.list_calls) - calls_before == 2

    def test_stream_budget_mid_page_keeps_progress(
        self, rsps: responses.RequestsMock, token_path: Path
    ) -> None:
        """When the budget runs out between streams, what the page already cost is yielded."""
        day = NOW - timedelta(days=3)
        acts = [summary(i, day + timedelta(hours=i), loop=False) for i in range(1, 5)]
        fake = FakeStrava(rsps, acts)
        source = make_source(token_path)
        orig = fake._streams

        def streams(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
            if len(fake.stream_calls) == 1:
                fake.usage = [95, 200]
            return orig(request)

        rsps.remove(responses.GET, STREAMS_RE)
        rsps.add_callback(responses.GET, STREAMS_RE, callback=streams)
        got: list[Batch] = []
        with pytest.raises(RateLimited):
            drain(source, first_state(), got)
        assert [a.source_id for a in got[0].activities] == ["1", "2"]
        fake.usage = [1, 200]
        rest = run_fetch(
            make_source(token_path, clock=Clock(NOW + timedelta(minutes=15))),
            SourceState(since=NOW - timedelta(days=365), cursor=got[0].cursor or {}),
        )
        assert [a.source_id for b in rest for a in b.activities] == ["3", "4"]
        assert sorted(fake.stream_calls) == [1, 2, 3, 4]

    def test_odd_payload_rejected(self, rsps: responses.RequestsMock, token_path: Path) -> None:
        """A summary without a start date is rejected with a reason; the others go on."""
        bad = summary(7, NOW - timedelta(days=2))
        del bad["start_date"]
        FakeStrava(rsps, [summary(8, NOW - timedelta(days=2))])
        rsps.replace(responses.GET, LIST_URL, json=[bad, summary(8, NOW - timedelta(days=2))])
        batches = run_fetch(make_source(token_path), first_state())
        assert [a.source_id for a in batches[0].activities] == ["8"]
        assert batches[0].rejected[0].key == "7"
        assert "start date" in batches[0].rejected[0].reason


class TestTokens:
    """Refresh, rotation and refusal."""

    def refresh_response(self, rsps: responses.RequestsMock, n: int = 1) -> None:
        rsps.add(
            responses.POST,
            TOKEN_URL,
            json={
                "token_type": "Bearer",
                "access_token": f"ACCESS-rotated-{n}-abcdefabcdef",
                "refresh_token": f"REFRESH-rotated-{n}-abcdefabcdef",
                "expires_at": int((NOW + timedelta(hours=6)).timestamp()),
                "expires_in": 21600,
            },
        )

    def test_missing_token_file(self, tmp_path: Path) -> None:
        """Without a token file, fetch says to connect."""
        source = make_source(tmp_path / "none.json")
        with pytest.raises(
            AuthRequired, match="strava is not connected: run hillsync connect strava"
        ):
            run_fetch(source, first_state())

    def test_rotation_across_two_processes(
        self, rsps: responses.RequestsMock, tmp_path: Path
    ) -> None:
        """The first source refreshes and persists; the second uses the rotated token as is."""
        path = tmp_path / "state" / "me.json"
        write_tokens(path, expires_at=NOW + timedelta(minutes=5))
        fake = FakeStrava(rsps, [])
        self.refresh_response(rsps)
        a, b = make_source(path), make_source(path)
        run_fetch(a, first_state())
        run_fetch(b, first_state())
        token_posts = [c for c in rsps.calls if c.request.url == TOKEN_URL]
        assert len(token_posts) == 1
        assert f"refresh_token={REFRESH}" in str(token_posts[0].request.body)
        stored = json.loads(path.read_text())
        assert stored["refresh_token"] == "REFRESH-rotated-1-abcdefabcdef"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert fake.tokens_seen == ["Bearer ACCESS-rotated-1-abcdefabcdef"] * 2

    def test_refresh_refused(self, rsps: responses.RequestsMock, tmp_path: Path) -> None:
        """A 401 on refresh means reconnecting, and the old tokens stay on disk."""
        path = tmp_path / "me.json"
        write_tokens(path, expires_at=NOW - timedelta(minutes=1))
        rsps.add(
            responses.POST,
            TOKEN_URL,
            status=401,
            json={"message": "Authorization Error", "errors": []},
        )
        with pytest.raises(AuthRequired, match="hillsync connect strava") as caught:
            run_fetch(make_source(path), first_state())
        assert caught.value.command == "hillsync connect strava"
        assert json.loads(path.read_text())["refresh_token"] == REFRESH

    def test_401_on_list(self, rsps: responses.RequestsMock, token_path: Path) -> None:
        """A 401 whose forced refresh works but is refused again gives AuthRequired."""
        rsps.add(responses.GET, LIST_URL, status=401, json=UNAUTHORIZED)
        self.refresh_response(rsps)
        with pytest.raises(AuthRequired, match="run hillsync connect strava") as caught:
            run_fetch(make_source(token_path), first_state())
        assert not isinstance(caught.value, AccessRevoked)
        assert [c.request.url for c in rsps.calls].count(TOKEN_URL) == 1

    def test_revocation_401(self, rsps: responses.RequestsMock, token_path: Path) -> None:
        """A 401 whose refresh Strava refuses as invalid means the athlete revoked access."""
        rsps.add(responses.GET, LIST_URL, status=401, json=UNAUTHORIZED)
        rsps.add(responses.POST, TOKEN_URL, status=400, json=REFRESH_INVALID)
        with pytest.raises(AccessRevoked, match="revoked hillsync's access") as caught:
            run_fetch(make_source(token_path), first_state())
        assert caught.value.command == "hillsync connect strava"

    def test_403_inactive_application(self, rsps: responses.RequestsMock, token_path: Path) -> None:
        """Strava's 403 for an inactive app gives one clear line naming the fix and the command."""
        rsps.add(
            responses.GET,
            LIST_URL,
            status=403,
            json=APP_INACTIVE,
        )
        with pytest.raises(AuthRequired) as caught:
            run_fetch(
                make_source(token_path, reconnect_command="hillsync connect strava --athlete anna"),
                first_state(),
            )
        message = str(caught.value)
        assert "inactive" in message
        assert "hillsync connect strava --athlete anna" in message
        assert "\n" not in message


class TestRateAndFailures:
    """Rate budget, 429, server errors."""

    def test_429(self, rsps: responses.RequestsMock, token_path: Path) -> None:
        """A 429 parks the source until the next quarter hour."""
        rsps.add(
            responses.GET,
            LIST_URL,
            status=429,
            json={"message": "Rate Limit Exceeded", "errors": []},
            headers={"X-ReadRateLimit-Usage": "101,300", "X-ReadRateLimit-Limit": "100,1000"},
        )
        with pytest.raises(RateLimited) as caught:
            run_fetch(
                make_source(token_path, clock=Clock(datetime(2026, 3, 10, 12, 44, 59, tzinfo=UTC))),
                first_state(),
            )
        assert caught.value.resume_at == datetime(2026, 3, 10, 12, 45, tzinfo=UTC)

    def test_daily_budget(self, rsps: responses.RequestsMock, token_path: Path) -> None:
        """A spent daily budget parks the source until UTC midnight, before the next request."""
        fake = FakeStrava(rsps, history(250))
        fake.usage = [10, 998]
        with pytest.raises(RateLimited) as caught:
            run_fetch(make_source(token_path), first_state())
        assert caught.value.resume_at == datetime(2026, 3, 11, tzinfo=UTC)
        assert len(fake.list_calls) == 1
        assert fake.stream_calls == []

    def test_server_error_retried(self, rsps: responses.RequestsMock, token_path: Path) -> None:
        """A 502 then a success is retried without sleeping."""
        fake = FakeStrava(rsps, history(3))
        fake.fail_next = [502]
        batches = run_fetch(make_source(token_path), first_state())
        assert len([a for b in batches for a in b.activities]) == 3

    def test_server_error_gives_up(self, rsps: responses.RequestsMock, token_path: Path) -> None:
        """Persistent 503s become SourceUnavailable after the bounded retries."""
        fake = FakeStrava(rsps, history(3))
        fake.fail_next = [503, 503, 503]
        with pytest.raises(SourceUnavailable, match="503"):
            run_fetch(make_source(token_path), first_state())
        assert len(fake.tokens_seen) == 3

    def test_timeout_gives_up(self, rsps: responses.RequestsMock, token_path: Path) -> None:
        """A timeout is retried, then reported as unavailable."""
        rsps.add(responses.GET, LIST_URL, body=requests.Timeout("read timed out"))
        with pytest.raises(SourceUnavailable, match="unreachable"):
            run_fetch(make_source(token_path), first_state())


class TestSecrets:
    """No token or client secret in any output, log line or error."""

    def test_nothing_leaks(
        self,
        rsps: responses.RequestsMock,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A connect, a refresh, a sync and a failure leave no secret in logs, output or errors."""
        caplog.set_level(logging.DEBUG)
        path = tmp_path / "me.json"
        rsps.add(responses.POST, TOKEN_URL, json=load("oauth_exchange.json"))
        errors: list[str] = []
        with capture_logs() as events:
            connect_strava(APP, path, code="the-code-123456")
            data = json.loads(path.read_text())
            data["expires_at"] = int((NOW - timedelta(minutes=1)).timestamp())
            path.write_text(json.dumps(data))
            TestTokens().refresh_response(rsps, 7)
            fake = FakeStrava(rsps, history(5))
            run_fetch(make_source(path), first_state())
            fake.fail_next = [500, 500, 500]
            try:
                run_fetch(make_source(path), first_state())
            except SourceUnavailable as e:
                errors.append(str(e))
            rsps.replace(
                responses.GET, LIST_URL, status=401, json={"message": "Authorization Error"}
            )
            try:
                run_fetch(make_source(path), first_state())
            except AuthRequired as e:
                errors.append(repr(e))
        out = capsys.readouterr()
        text = "\n".join([caplog.text, out.out, out.err, json.dumps(events, default=str), *errors])
        assert len(errors) == 2
        assert events, "structlog events were captured"
        for secret in (
            CLIENT_SECRET,
            "the-code-123456",
            "ACCESS-first-0123456789abcdef",
            "REFRESH-first-0123456789abcdef",
            "ACCESS-rotated-7-abcdefabcdef",
            "REFRESH-rotated-7-abcdefabcdef",
        ):
            assert secret not in text


class TestOddAnswers:
    """Odd answers from Strava cost at most one activity's profile or one poll, never a token."""

    def test_refresh_answer_without_expiry_keeps_the_rotated_token(
        self, rsps: responses.RequestsMock, tmp_path: Path
    ) -> None:
        """A refresh answer with a null expiry still gets its new refresh token written."""
        path = tmp_path / "me.json"
        write_tokens(path, expires_at=NOW - timedelta(minutes=1))
        rsps.add(
            responses.POST,
            TOKEN_URL,
            json={
                "token_type": "Bearer",
                "access_token": "ACCESS-odd-abcdefabcdef",
                "refresh_token": "REFRESH-odd-abcdefabcdef",
                "expires_at": None,
            },
        )
        with pytest.raises(SourceUnavailable, match="no usable access token"):
            run_fetch(make_source(path), first_state())
        assert json.loads(path.read_text())["refresh_token"] == "REFRESH-odd-abcdefabcdef"

    def test_refresh_answer_without_refresh_token(
        self, rsps: responses.RequestsMock, tmp_path: Path
    ) -> None:
        """An answer stravalib cannot read is a retry later, and the old token is kept."""
        path = tmp_path / "me.json"
        write_tokens(path, expires_at=NOW - timedelta(minutes=1))
        rsps.add(responses.POST, TOKEN_URL, json={"token_type": "Bearer"})
        with pytest.raises(SourceUnavailable):
            run_fetch(make_source(path), first_state())
        assert json.loads(path.read_text())["refresh_token"] == REFRESH

    def test_unreadable_streams_keep_the_summary(
        self, rsps: responses.RequestsMock, token_path: Path
    ) -> None:
        """A streams answer stravalib cannot parse leaves the run without a profile."""
        fake = FakeStrava(rsps, history(5))
        rsps.replace(responses.GET, STREAMS_RE, json={"altitude": None}, headers=fake.headers())
        batches = run_fetch(make_source(token_path), first_state())
        activities = [a for b in batches for a in b.activities]
        assert len(activities) == 5
        assert all(a.track is None for a in activities)

    def test_usage_header_without_limit(
        self, rsps: responses.RequestsMock, token_path: Path
    ) -> None:
        """A usage header without its limit header is ignored, not a crash."""
        rsps.add(
            responses.GET,
            LIST_URL,
            json=[],
            headers={"X-ReadRateLimit-Usage": "1,2"},
        )
        batches = run_fetch(make_source(token_path), first_state())
        assert [a for b in batches for a in b.activities] == []


class StravaWorld:
    """A Strava account behind the real stravalib client (HTTP mocked) for the contract."""

    def __init__(self, rsps: responses.RequestsMock, token_path: Path) -> None:
        self.fake = FakeStrava(rsps, [])
        self.token_path = token_path
        self.last_id = 5000

    def source(self) -> StravaSource:
        return make_source(self.token_path)

    def first_state(self) -> SourceState:
        return first_state()

    def _add(self, raw: dict[str, Any]) -> str:
        self.fake.activities.append(raw)
        self.fake.activities.sort(key=lambda a: a["start_date"])
        return str(raw["id"])

    def _next(self) -> tuple[int, datetime]:
        self.last_id += 1
        # Three days apart: Strava's 2-day listing overlap covers at most the newest run.
        return self.last_id, NOW - timedelta(days=40) + timedelta(days=3 * (self.last_id - 5000))

    def add_runs(self, count: int) -> list[str]:
        return [self._add(summary(*self._next())) for _ in range(count)]

    def add_bad(self) -> str:
        bad = summary(*self._next())
        # A name that is no text (an odd figure, like a distance of "a long way", is
        # dropped with a warning instead: test_summary_fuzz).
        bad["name"] = ["a", "list"]
        return self._add(bad)


class TestStravaContract(SourceContract):
    """The Strava source keeps the SourceContract."""

    caught_up_repeats = 1

    @pytest.fixture
    def world(self, rsps: responses.RequestsMock, token_path: Path) -> SourceWorld:
        return StravaWorld(rsps, token_path)


def visit_redirect(
    said: list[str], pages: list[tuple[int, str]], threads: list[threading.Thread], scope: str
) -> Callable[[str], None]:
    """A browser stand-in: follows the printed URL's redirect with `scope` granted."""

    def browser(text: str) -> None:
        said.append(text)
        url = next((w for w in text.split() if w.startswith("https://")), None)
        if url is None:
            return
        query = parse_qs(urlsplit(url).query)
        target = f"{query['redirect_uri'][0]}?state={query['state'][0]}&code=c0de&scope={scope}"

        def visit() -> None:
            try:
                with urllib.request.urlopen(target, timeout=10) as answer:
                    pages.append((answer.status, answer.read().decode()))
            except urllib.error.HTTPError as e:
                pages.append((e.code, e.read().decode()))

        thread = threading.Thread(target=visit, daemon=True)
        threads.append(thread)
        thread.start()

    return browser


class TestBrowserPage:
    """The listener's page answers after the exchange and the scope check, with their outcome."""

    def test_failed_scope(self, rsps: responses.RequestsMock, tmp_path: Path) -> None:
        """A grant without activity:read_all shows the terminal's message, not 'connected'."""
        rsps.add_passthru("http://127.0.0.1")
        said: list[str] = []
        pages: list[tuple[int, str]] = []
        threads: list[threading.Thread] = []
        with pytest.raises(AuthRequired, match="without activity:read_all") as caught:
            connect_strava(
                APP,
                tmp_path / "t.json",
                open_browser=False,
                port=0,
                timeout_s=10,
                say=visit_redirect(said, pages, threads, "read,activity:read"),
            )
        threads[0].join(10)
        status, body = pages[0]
        assert "hillsync could not connect" in body
        assert "hillsync is connected" not in body
        assert str(caught.value).replace("'", "&#x27;") in body
        assert [c.request.url for c in rsps.calls] == []  # no exchange for a short scope
        assert status == 200

    def test_failed_exchange(self, rsps: responses.RequestsMock, tmp_path: Path) -> None:
        """A code Strava refuses shows the refusal on the page, and no token file is written."""
        rsps.add_passthru("http://127.0.0.1")
        rsps.add(
            responses.POST,
            TOKEN_URL,
            status=400,
            json=CODE_INVALID,
        )
        pages: list[tuple[int, str]] = []
        threads: list[threading.Thread] = []
        with pytest.raises(AuthRequired, match="refused the authorization code"):
            connect_strava(
                APP,
                tmp_path / "t.json",
                open_browser=False,
                port=0,
                timeout_s=10,
                say=visit_redirect([], pages, threads, "read,activity:read_all"),
            )
        threads[0].join(10)
        assert "refused the authorization code" in pages[0][1]
        assert "hillsync is connected" not in pages[0][1]
        assert not (tmp_path / "t.json").exists()


def connect_without_browser(tmp_path: Path, **kwargs: Any) -> None:
    """`connect_strava` whose browser never comes back (a 50 ms wait, no port bound)."""
    connect_strava(
        APP,
        tmp_path / "t.json",
        open_browser=False,
        port=0,
        timeout_s=0.05,
        say=lambda _s: None,
        **kwargs,
    )


class TestAthleteLimit:
    """When Strava never redirects, the timeout says why when it can tell."""

    def test_limit_with_another_athlete(self, rsps: responses.RequestsMock, tmp_path: Path) -> None:
        """An application already used by anna: the message names the limit and the fix."""
        rsps.add(
            responses.POST,
            TOKEN_URL,
            status=400,
            json=CODE_INVALID,
        )
        with pytest.raises(AuthRequired) as caught:
            connect_without_browser(
                tmp_path,
                athlete="bo",
                command="hillsync connect strava --athlete bo",
                others_on_app=["anna"],
            )
        message = str(caught.value)
        assert "Limit of connected athletes exceeded" in message
        assert f"Application {CLIENT_ID} already connects anna" in message
        assert "[athletes.bo.sources.strava] client_id and client_secret" in message
        assert "hillsync connect strava --athlete bo" in message
        assert "\n" not in message
        assert CLIENT_SECRET not in message

    def test_limit_possible_without_other_athlete(
        self, rsps: responses.RequestsMock, tmp_path: Path
    ) -> None:
        """With no other athlete known here, the timeout still names the limit as a cause."""
        rsps.add(responses.POST, TOKEN_URL, status=400, json={"message": "Bad Request"})
        with pytest.raises(AuthRequired, match="no answer from the browser") as caught:
            connect_without_browser(tmp_path)
        assert "Limit of connected athletes exceeded" in str(caught.value)

    def test_inactive_application(self, rsps: responses.RequestsMock, tmp_path: Path) -> None:
        """An inactive application (403 Application Inactive) is named as the reason."""
        rsps.add(
            responses.POST,
            TOKEN_URL,
            status=403,
            json=APP_INACTIVE,
        )
        with pytest.raises(AuthRequired) as caught:
            connect_without_browser(tmp_path)
        assert "inactive (403 Application Inactive)" in str(caught.value)
        assert "paid Strava subscription" in str(caught.value)
        probe = rsps.calls[0].request.body
        assert "hillsync-application-probe" in str(probe)

    def test_429_at_exchange(self, rsps: responses.RequestsMock, tmp_path: Path) -> None:
        """A 429 at the token exchange says Strava is rate limiting and for how long."""
        rsps.add(
            responses.POST,
            TOKEN_URL,
            status=429,
            json={"message": "Rate Limit Exceeded"},
            headers={"X-RateLimit-Usage": "201,300", "X-RateLimit-Limit": "200,2000"},
        )
        with pytest.raises(RateLimited, match=r"Strava is rate limiting; try again in \d+ minutes"):
            connect_strava(APP, tmp_path / "t.json", code="abc", say=lambda _s: None)


class TestApiBase:
    """`api_base` moves every call: the API, the token refresh, the exchange and the revocation."""

    BASE = "https://www.api-v3.strava.example/v3"

    def test_every_call_uses_api_base(self, rsps: responses.RequestsMock, tmp_path: Path) -> None:
        """A refresh, a listing and a revocation all go to the configured host."""
        path = tmp_path / "me.json"
        write_tokens(path, expires_at=NOW - timedelta(minutes=1))
        host = "https://www.api-v3.strava.example"
        rsps.add(
            responses.POST,
            f"{host}/oauth/token",
            json={
                "access_token": "ACCESS-new-host-0000",
                "refresh_token": "REFRESH-new-host-0000",
                "expires_at": int((NOW + timedelta(hours=6)).timestamp()),
            },
        )
        rsps.add(responses.GET, f"{self.BASE}/athlete/activities", json=[])
        rsps.add(responses.POST, f"{host}/oauth/revoke", json={})
        run_fetch(make_source(path, api_base=self.BASE), first_state())
        app = StravaApp(CLIENT_ID, Secret(CLIENT_SECRET), api_base=self.BASE)
        assert disconnect_strava(app, path, now=NOW).endpoint == "revoke"
        urls = [str(c.request.url).split("?")[0] for c in rsps.calls]
        assert urls == [
            f"{host}/oauth/token",
            f"{self.BASE}/athlete/activities",
            f"{host}/oauth/revoke",
        ]

    def test_exchange_uses_api_base(self, rsps: responses.RequestsMock, tmp_path: Path) -> None:
        """The code exchange goes to the configured host too."""
        rsps.add(
            responses.POST,
            "https://www.api-v3.strava.example/oauth/token",
            json=load("oauth_exchange.json"),
        )
        app = StravaApp(CLIENT_ID, Secret(CLIENT_SECRET), api_base=self.BASE)
        account = connect_strava(app, tmp_path / "t.json", code="abc", say=lambda _s: None)
        assert account.remote_id == "134815"

    def test_http_api_base_refused(self, tmp_path: Path) -> None:
        """An api_base that is not https is a config error naming the key."""
        with pytest.raises(ConfigError, match=r"sources\.strava\.api_base"):
            make_source(tmp_path / "t.json", api_base="http://insecure.example/api")


class TestRevoke:
    """Revocation: `oauth/revoke` first, `oauth/deauthorize` where revoke does not exist yet."""

    def test_falls_back_to_deauthorize(
        self, rsps: responses.RequestsMock, token_path: Path
    ) -> None:
        """A 404 from oauth/revoke is followed by oauth/deauthorize with the same token."""
        rsps.add(responses.POST, REVOKE_URL, status=404, json={"message": "Record Not Found"})
        rsps.add(responses.POST, DEAUTH_URL, json={"access_token": ACCESS})
        result = disconnect_strava(APP, token_path, now=NOW)
        assert result == Disconnected(revoked=True, endpoint="deauthorize")
        assert [c.request.url for c in rsps.calls] == [REVOKE_URL, DEAUTH_URL]
        assert all(c.request.headers["Authorization"] == f"Bearer {ACCESS}" for c in rsps.calls)
        assert not token_path.exists()

    def test_expired_token_refreshed_first(
        self, rsps: responses.RequestsMock, tmp_path: Path
    ) -> None:
        """An expired access token is refreshed so that the revocation carries a live one."""
        path = tmp_path / "me.json"
        write_tokens(path, expires_at=NOW - timedelta(hours=1))
        TestTokens().refresh_response(rsps)
        rsps.add(responses.POST, REVOKE_URL, json={})
        assert disconnect_strava(APP, path, now=NOW).revoked
        assert rsps.calls[1].request.headers["Authorization"] == (
            "Bearer ACCESS-rotated-1-abcdefabcdef"
        )

    def test_unreachable_still_deletes_tokens(
        self, rsps: responses.RequestsMock, token_path: Path
    ) -> None:
        """Strava unreachable: the tokens are deleted anyway and the result says not revoked."""
        rsps.add(responses.POST, REVOKE_URL, body=requests.ConnectionError("down"))
        assert disconnect_strava(APP, token_path, now=NOW) == Disconnected(revoked=False)
        assert [c.request.url for c in rsps.calls] == [REVOKE_URL]
        assert not token_path.exists()


class TestSecretsInNewPaths:
    """The timeout diagnosis, revocation and a revoked 401 leak no secret anywhere."""

    def test_nothing_leaks(
        self,
        rsps: responses.RequestsMock,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Client secret, access and refresh tokens stay out of logs, output and errors."""
        caplog.set_level(logging.DEBUG)
        errors: list[str] = []
        rsps.add(
            responses.POST,
            TOKEN_URL,
            status=403,
            json=APP_INACTIVE,
        )
        path = tmp_path / "me.json"
        with capture_logs() as events:
            try:
                connect_strava(
                    APP, path, open_browser=False, port=0, timeout_s=0.05, say=lambda _s: None
                )
            except AuthRequired as e:
                errors.append(str(e))
            write_tokens(path, expires_at=NOW + timedelta(hours=5))
            rsps.replace(responses.POST, TOKEN_URL, status=400, json=REFRESH_INVALID)
            rsps.add(responses.GET, LIST_URL, status=401, json=UNAUTHORIZED)
            try:
                run_fetch(make_source(path), first_state())
            except AccessRevoked as e:
                errors.append(str(e))
            rsps.add(responses.POST, REVOKE_URL, status=404, json={"message": "Not Found"})
            rsps.add(responses.POST, DEAUTH_URL, status=401, json=UNAUTHORIZED)
            disconnect_strava(APP, path, now=NOW)
        out = capsys.readouterr()
        text = "\n".join([caplog.text, repr(events), *errors, out.out, out.err])
        assert len(errors) == 2
        for secret in (CLIENT_SECRET, ACCESS, REFRESH):
            assert secret not in text


class TestTokenLock:
    """Waiting for another process's refresh never holds up a shutdown."""

    def test_busy_lock_gives_up_after_the_timeout(self, tmp_path: Path) -> None:
        """With the lock held elsewhere, the refresh gives up after a few seconds of fake time."""
        import fcntl
        import os

        path = tmp_path / "me.json"
        write_tokens(path, expires_at=NOW - timedelta(minutes=1))
        fd = os.open(path.with_name("me.json.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        elapsed = [0.0]

        def sleep(seconds: float) -> None:
            elapsed[0] += seconds

        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            source = make_source(path, sleep=sleep, monotonic=lambda: elapsed[0])
            with pytest.raises(SourceUnavailable, match="another hillsync process"):
                run_fetch(source, first_state())
        finally:
            os.close(fd)
        assert 0 < elapsed[0] <= 10
