"""Contract tests of the Garmin Connect source, through the real garminconnect client.

HTTP is mocked with `responses`; garminconnect's login/refresh posts go through requests
because HAS_CFFI is switched off. No test touches the network or sleeps.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import stat
import time
import zipfile
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import responses
import structlog
import tenacity
from garminconnect import (
    Garmin,
    GarminConnectAuthenticationError,
    GarminConnectConnectionError,
    GarminConnectTooManyRequestsError,
)

from hillsync.errors import AuthRequired, BadActivity, RateLimited, SourceUnavailable, UsageError
from hillsync.model import OTHER_SPORTS, RUN_SPORTS, Activity, Batch
from hillsync.paths import write_private_file
from hillsync.sources.base import SourceState
from hillsync.sources.garmin import (
    GARMIN_SPORTS,
    GarminAccount,
    GarminSource,
    LoggedInClients,
    activity_from_summary,
    connect_garmin,
    disconnect_garmin,
    import_garmin_tokens,
)
from source_contract import SourceContract, SourceWorld

pytestmark = pytest.mark.usefixtures("garmin_offline")

API = "https://connectapi.garmin.com"
LIST_URL = f"{API}/activitylist-service/activities/search/activities"
SOCIAL_URL = f"{API}/userprofile-service/socialProfile"
SETTINGS_URL = f"{API}/userprofile-service/userprofile/user-settings"
DOWNLOAD_URL = f"{API}/download-service/files/activity"
TOKEN_URL = "https://diauth.garmin.com/di-oauth2-service/oauth/token"

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
REFRESH_TOKEN = "refresh-token-super-secret-0001"
NEW_REFRESH_TOKEN = "refresh-token-super-secret-0002"
PASSWORD = "correct horse battery staple"
FIT_FILE = Path(__file__).parent / "data" / "fit" / "activity-small-fenix2-run.fit"


def make_jwt(exp: float, marker: str = "a") -> str:
    """A structurally valid, unsigned-looking JWT with the given expiry."""

    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    payload = {"exp": int(exp), "client_id": "GARMIN_CONNECT_MOBILE_ANDROID_DI", "m": marker}
    return f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(payload)}.c2lnbmF0dXJl{marker}"


ACCESS_TOKEN = make_jwt(time.time() + 86_400, "live")
EXPIRED_TOKEN = make_jwt(time.time() - 3_600, "dead")
NEW_ACCESS_TOKEN = make_jwt(time.time() + 86_400, "fresh")


def token_json(access: str = ACCESS_TOKEN) -> str:
    """A garminconnect token file's content."""
    return json.dumps(
        {
            "di_token": access,
            "di_refresh_token": REFRESH_TOKEN,
            "di_client_id": "GARMIN_CONNECT_MOBILE_ANDROID_DI",
        }
    )


def summary(
    aid: int,
    start: datetime,
    *,
    type_key: str = "running",
    gain: float | None = 120.0,
    loss: float | None = 118.0,
    distance: float = 10_000.0,
) -> dict[str, Any]:
    """One entry of Garmin's activity list, shaped like the real payload."""
    return {
        "activityId": aid,
        "activityName": f"Run {aid}",
        "startTimeLocal": (start + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S"),
        "startTimeGMT": start.strftime("%Y-%m-%d %H:%M:%S"),
        "activityType": {"typeId": 1, "typeKey": type_key, "parentTypeId": 17},
        "distance": distance,
        "duration": 3_000.5,
        "elapsedDuration": 3_100.0,
        "movingDuration": 2_950.0,
        "elevationGain": gain,
        "elevationLoss": loss,
        "minElevation": 200.0,
        "maxElevation": 320.0,
        "startLatitude": 46.5,
        "startLongitude": 6.6,
        "endLatitude": 46.5005,
        "endLongitude": 6.6004,
        "beginTimestamp": int(start.timestamp() * 1000),
    }


class FakeGarminServer:
    """Garmin's activity list and download endpoints over an in-memory history."""

    def __init__(self, rsps: responses.RequestsMock, history: list[dict[str, Any]]) -> None:
        self.history = history
        self.list_calls: list[dict[str, str]] = []
        self.downloads: list[str] = []
        rsps.add_callback(responses.GET, LIST_URL, callback=self._list)
        rsps.add_callback(
            responses.GET, re.compile(rf"{DOWNLOAD_URL}/\d+"), callback=self._download
        )

    def _list(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        params = {k: v[0] for k, v in parse_qs(urlparse(request.url or "").query).items()}
        self.list_calls.append(params)
        items = sorted(self.history, key=lambda s: s["startTimeGMT"], reverse=True)
        if "startDate" in params:
            lo, hi = params["startDate"], params.get("endDate", "9999-12-31")
            items = [s for s in items if lo <= s["startTimeGMT"][:10] <= hi]
        start, limit = int(params.get("start", 0)), int(params.get("limit", 20))
        return 200, {"Content-Type": "application/json"}, json.dumps(items[start : start + limit])

    def _download(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        aid = (request.url or "").rstrip("/").rsplit("/", 1)[-1]
        self.downloads.append(aid)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(f"{aid}_ACTIVITY.fit", FIT_FILE.read_bytes())
        return 200, {"Content-Type": "application/zip"}, buf.getvalue()


def add_profile(rsps: responses.RequestsMock, status: int = 200) -> None:
    """The two endpoints a token login verifies itself against."""
    body: dict[str, Any] = (
        {"displayName": "hill-runner", "fullName": "Hill Runner", "profileId": 987654}
        if status == 200
        else {"message": "Token is not active"}
    )
    rsps.add(responses.GET, SOCIAL_URL, json=body, status=status)
    rsps.add(
        responses.GET,
        SETTINGS_URL,
        json={"userData": {"measurementSystem": "metric"}},
        status=status,
    )


def no_wait() -> tenacity.Retrying:
    """Three attempts, no waiting."""
    return tenacity.Retrying(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none())


@pytest.fixture
def token_dir(tmp_path: Path) -> Path:
    """A connected account's token folder (0700) holding a live token file (0600)."""
    folder = tmp_path / "state" / "garmin"
    write_private_file(folder / "garmin_tokens.json", token_json().encode())
    return folder


def make_source(
    token_dir: Path,
    *,
    streams: str = "auto",
    needs_profile: Callable[[Activity], bool] = lambda a: False,
    page_size: int = 100,
    factory: Callable[..., Garmin] = Garmin,
    clients: LoggedInClients | None = None,
) -> GarminSource:
    """A source with a fixed clock and a no-wait retry policy."""
    return GarminSource(
        "garmin",
        token_dir=token_dir,
        streams=streams,  # type: ignore[arg-type]
        needs_profile=needs_profile,
        clock=lambda: NOW,
        retrying=no_wait(),
        garmin_factory=factory,
        page_size=page_size,
        clients=clients,
    )


def history(
    n: int, *, days: int = 365, newest: datetime = NOW - timedelta(hours=3)
) -> list[dict[str, Any]]:
    """`n` runs spread evenly over the last `days` days."""
    step = timedelta(days=days) / n
    return [summary(1000 + i, newest - i * step) for i in range(n)]


def first_state() -> SourceState:
    """The state of a first sync with a 365-day backfill."""
    return SourceState(since=NOW - timedelta(days=365))


def drain(batches: Iterator[Batch]) -> list[Batch]:
    """Every batch a fetch yields."""
    return list(batches)


def ids(batches: list[Batch]) -> list[str]:
    """Source ids of every activity in the batches, in order."""
    return [a.source_id for b in batches for a in b.activities]


def last_cursor(batches: list[Batch], before: dict[str, Any] | None = None) -> dict[str, Any]:
    """The cursor the worker holds after committing `batches`."""
    cur = dict(before or {})
    for b in batches:
        if b.cursor is not None:
            cur = dict(b.cursor)
    return cur


class TestSportMapping:
    """Garmin typeKeys become hillsync sports."""

    @pytest.mark.parametrize(
        ("type_key", "sport"),
        [
            ("running", "run"),
            ("street_running", "run"),
            ("ultra_run", "run"),
            ("trail_running", "trail_run"),
            ("track_running", "track_run"),
            ("treadmill_running", "treadmill"),
            ("indoor_running", "treadmill"),
            ("virtual_run", "virtual_run"),
            ("road_biking", "ride"),
            ("lap_swimming", "swim"),
            ("walking", "walk"),
            ("hiking", "hike"),
        ],
    )
    def test_type_keys(self, type_key: str, sport: str) -> None:
        """Each known typeKey maps to its hillsync sport."""
        act = activity_from_summary(summary(1, NOW, type_key=type_key))
        assert act.sport == sport

    def test_every_target_is_a_hillsync_sport(self) -> None:
        """The mapping only produces hillsync's own sport names."""
        assert set(GARMIN_SPORTS.values()) <= set(RUN_SPORTS) | set(OTHER_SPORTS)

    def test_unknown_type_key_is_other(self) -> None:
        """A typeKey hillsync does not know is 'other', not a run."""
        assert activity_from_summary(summary(1, NOW, type_key="pickleball")).sport == "other"

    @pytest.mark.parametrize("type_key", ["treadmill_running", "indoor_running", "virtual_run"])
    def test_indoor_runs_are_flagged(self, type_key: str) -> None:
        """Treadmill, indoor and virtual runs are indoor."""
        assert activity_from_summary(summary(1, NOW, type_key=type_key)).indoor is True

    def test_outdoor_run_is_not_indoor(self) -> None:
        """A road run is not indoor."""
        assert activity_from_summary(summary(1, NOW)).indoor is False


class TestSummary:
    """A list entry becomes an Activity with Garmin's own elevation totals."""

    def test_fields(self) -> None:
        """Ids, UTC start, distance, times, gain/loss, ends and the raw payload are kept."""
        raw = summary(42, datetime(2026, 5, 1, 6, 30, tzinfo=UTC))
        act = activity_from_summary(raw)
        assert act.source_id == "42"
        assert act.start_time == datetime(2026, 5, 1, 6, 30, tzinfo=UTC)
        assert act.distance_m == 10_000.0
        assert act.moving_time_s == 2_950.0
        assert act.elapsed_time_s == 3_100.0
        assert (act.reported_gain_m, act.reported_loss_m) == (120.0, 118.0)
        assert act.elevation_range_m == pytest.approx(120.0)
        assert act.start_latlng == (46.5, 6.6)
        assert act.end_latlng == (46.5005, 6.6004)
        assert act.elevation_source == "garmin"
        assert act.raw == raw

    def test_start_time_is_gmt_not_local(self) -> None:
        """startTimeGMT is used, never startTimeLocal."""
        raw = summary(1, datetime(2026, 5, 1, 23, 30, tzinfo=UTC))
        assert activity_from_summary(raw).start_time.hour == 23

    def test_null_entry_is_rejected(self) -> None:
        """A null where an activity belongs is a BadActivity, not an AttributeError."""
        with pytest.raises(BadActivity, match="NoneType"):
            activity_from_summary(None)  # type: ignore[arg-type]

    def test_nulls_are_tolerated(self) -> None:
        """Missing or null figures become None rather than failing."""
        raw = summary(7, NOW, gain=None, loss=None)
        raw.update({"distance": None, "startLatitude": None, "activityType": None})
        act = activity_from_summary(raw)
        assert act.reported_gain_m is None
        assert act.distance_m is None
        assert act.start_latlng is None
        assert act.sport == "other"

    def test_missing_id_is_bad(self) -> None:
        """A summary without an activityId is rejected with a reason."""
        raw = summary(1, NOW)
        del raw["activityId"]
        with pytest.raises(BadActivity, match="activityId"):
            activity_from_summary(raw)

    def test_missing_start_is_bad(self) -> None:
        """A summary without any start time is rejected with a reason."""
        raw = summary(3, NOW)
        del raw["startTimeGMT"], raw["beginTimestamp"]
        with pytest.raises(BadActivity, match="start time"):
            activity_from_summary(raw)


class FakeMfaGarmin:
    """A stand-in for the password login, whose SSO flow cannot be mocked sensibly."""

    def __init__(self, *, needs_mfa: bool = True, error: Exception | None = None) -> None:
        self.needs_mfa = needs_mfa
        self.error = error
        self.codes: list[str] = []
        self.kwargs: dict[str, Any] = {}
        self.tokenstores: list[str | None] = []
        self.client = self

    def login(self, tokenstore: str | None = None) -> tuple[str | None, Any]:
        """Return the MFA state, or fail as configured."""
        self.tokenstores.append(tokenstore)
        if self.error is not None:
            raise self.error
        return ("needs_mfa", {"flow": "mobile"}) if self.needs_mfa else (None, None)

    def resume_login(self, state: dict[str, Any], code: str) -> tuple[None, None]:
        """Record the MFA code."""
        assert state == {"flow": "mobile"}
        self.codes.append(code)
        return None, None

    def dumps(self) -> str:
        """The tokens the login obtained."""
        return token_json()


def mfa_factory(fake: FakeMfaGarmin) -> Callable[..., Any]:
    """The fake for the password login, the real client for the token login after it."""

    def factory(**kwargs: Any) -> Any:
        if "email" in kwargs:
            fake.kwargs = kwargs
            return fake
        return Garmin(**kwargs)

    return factory


class TestConnect:
    """`connect garmin`: password and MFA once, then a token file in the state folder."""

    def test_mfa_flow_writes_private_token_file(
        self, tmp_path: Path, rsps: responses.RequestsMock
    ) -> None:
        """The MFA code is prompted and passed to resume_login; tokens land 0600 in 0700."""
        add_profile(rsps)
        fake = FakeMfaGarmin()
        folder = tmp_path / "state" / "garmin"
        account = connect_garmin(
            folder,
            email="me@example.org",
            password_prompt=lambda: PASSWORD,
            mfa_prompt=lambda: " 123456 ",
            environ={},
            garmin_factory=mfa_factory(fake),
        )
        assert account == GarminAccount(remote_id="987654", display_name="hill-runner")
        assert fake.codes == ["123456"]
        assert fake.kwargs["return_on_mfa"] is True
        token_file = folder / "garmin_tokens.json"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert json.loads(token_file.read_text())["di_refresh_token"] == REFRESH_TOKEN

    def test_password_is_never_written(self, tmp_path: Path, rsps: responses.RequestsMock) -> None:
        """No file in the state folder holds the password."""
        add_profile(rsps)
        folder = tmp_path / "state"
        connect_garmin(
            folder,
            email="me@example.org",
            password_prompt=lambda: PASSWORD,
            mfa_prompt=lambda: "1",
            environ={},
            garmin_factory=mfa_factory(FakeMfaGarmin(needs_mfa=False)),
        )
        contents = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
        assert PASSWORD.encode() not in contents

    def test_environment_gives_email_and_password(
        self, tmp_path: Path, rsps: responses.RequestsMock
    ) -> None:
        """HILLSYNC_GARMIN_EMAIL / _PASSWORD are used and nothing is prompted."""
        add_profile(rsps)
        fake = FakeMfaGarmin(needs_mfa=False)

        def no_prompt() -> str:
            raise AssertionError("prompted")

        connect_garmin(
            tmp_path,
            email=None,
            password_prompt=no_prompt,
            mfa_prompt=no_prompt,
            environ={"HILLSYNC_GARMIN_EMAIL": "env@example.org", "HILLSYNC_GARMIN_PASSWORD": "pw"},
            garmin_factory=mfa_factory(fake),
        )
        assert fake.kwargs["email"] == "env@example.org"
        assert fake.kwargs["password"] == "pw"

    def test_no_email_is_a_usage_error(self, tmp_path: Path) -> None:
        """Without --email or HILLSYNC_GARMIN_EMAIL the command says what to pass."""
        with pytest.raises(UsageError, match="--email"):
            connect_garmin(
                tmp_path,
                email=None,
                password_prompt=lambda: PASSWORD,
                mfa_prompt=lambda: "1",
                environ={},
                garmin_factory=mfa_factory(FakeMfaGarmin()),
            )

    def test_wrong_password_is_auth_required(self, tmp_path: Path) -> None:
        """A refused login raises AuthRequired and writes no token file."""
        fake = FakeMfaGarmin(error=GarminConnectAuthenticationError("401 Unauthorized"))
        with pytest.raises(AuthRequired, match="password") as info:
            connect_garmin(
                tmp_path / "g",
                email="me@example.org",
                password_prompt=lambda: PASSWORD,
                mfa_prompt=lambda: "1",
                environ={},
                garmin_factory=mfa_factory(fake),
            )
        assert PASSWORD not in str(info.value)
        assert not (tmp_path / "g" / "garmin_tokens.json").exists()

    def test_login_429_suggests_importing_tokens(self, tmp_path: Path) -> None:
        """A 429 at login says Garmin refuses this network and names --tokens FILE."""
        fake = FakeMfaGarmin(error=GarminConnectTooManyRequestsError("Too many login attempts"))
        before = datetime.now(UTC)
        with pytest.raises(RateLimited, match="--tokens FILE") as info:
            connect_garmin(
                tmp_path,
                email="me@example.org",
                password_prompt=lambda: PASSWORD,
                mfa_prompt=lambda: "1",
                environ={},
                garmin_factory=mfa_factory(fake),
            )
        assert "refusing logins from this network" in str(info.value)
        assert info.value.resume_at >= before + timedelta(minutes=30)

    def test_login_blocked_suggests_importing_tokens(self, tmp_path: Path) -> None:
        """A 403 at login (Cloudflare) says what failed and suggests a token file."""
        fake = FakeMfaGarmin(error=GarminConnectConnectionError("Login failed: API Error 403"))
        with pytest.raises(SourceUnavailable, match="HTTP 403") as info:
            connect_garmin(
                tmp_path,
                email="me@example.org",
                password_prompt=lambda: PASSWORD,
                mfa_prompt=lambda: "1",
                environ={},
                garmin_factory=mfa_factory(fake),
            )
        assert "--tokens FILE" in str(info.value)

    def test_empty_mfa_code_is_refused(self, tmp_path: Path) -> None:
        """An empty MFA code stops the login with AuthRequired and no token file."""
        fake = FakeMfaGarmin()
        with pytest.raises(AuthRequired, match="MFA"):
            connect_garmin(
                tmp_path / "g",
                email="me@example.org",
                password_prompt=lambda: PASSWORD,
                mfa_prompt=lambda: "  ",
                environ={},
                garmin_factory=mfa_factory(fake),
            )
        assert fake.codes == []
        assert not (tmp_path / "g" / "garmin_tokens.json").exists()


class TestImportTokens:
    """`connect garmin --tokens FILE` imports a token file made elsewhere and verifies it."""

    def test_import_copies_and_verifies(self, tmp_path: Path, rsps: responses.RequestsMock) -> None:
        """The file is copied 0600 into a 0700 folder and a token login checks the profile."""
        add_profile(rsps)
        src = tmp_path / "elsewhere.json"
        src.write_text(token_json())
        folder = tmp_path / "state" / "garmin"
        account = import_garmin_tokens(src, folder)
        assert account.display_name == "hill-runner"
        assert stat.S_IMODE((folder / "garmin_tokens.json").stat().st_mode) == 0o600
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert [c.request.url for c in rsps.calls] == [SOCIAL_URL, SETTINGS_URL]

    def test_refused_tokens_are_removed(self, tmp_path: Path, rsps: responses.RequestsMock) -> None:
        """Tokens the API rejects (even after a refresh) raise AuthRequired and are removed."""
        add_profile(rsps, status=401)
        rsps.add(responses.POST, TOKEN_URL, json={"error": "invalid_grant"}, status=401)
        src = tmp_path / "elsewhere.json"
        src.write_text(token_json())
        folder = tmp_path / "g"
        with pytest.raises(AuthRequired, match="refused the imported tokens"):
            import_garmin_tokens(src, folder)
        assert not (folder / "garmin_tokens.json").exists()

    def test_not_a_token_file(self, tmp_path: Path) -> None:
        """A file that is not garminconnect's token JSON is refused with a reason."""
        src = tmp_path / "oauth1_token.json"
        src.write_text('{"oauth_token": "x"}')
        with pytest.raises(AuthRequired, match="not a garminconnect token file"):
            import_garmin_tokens(src, tmp_path / "g")

    def test_missing_file(self, tmp_path: Path) -> None:
        """A token file that does not exist is a usage error naming it."""
        with pytest.raises(UsageError, match="cannot read"):
            import_garmin_tokens(tmp_path / "nope.json", tmp_path / "g")


class TestDisconnect:
    """`disconnect garmin` forgets the tokens."""

    def test_deletes_tokens(self, token_dir: Path) -> None:
        """The token file is gone, and a second disconnect is harmless."""
        disconnect_garmin(token_dir)
        disconnect_garmin(token_dir)
        assert not (token_dir / "garmin_tokens.json").exists()

    def test_source_then_needs_auth(self, token_dir: Path) -> None:
        """A disconnected source raises AuthRequired naming the connect command."""
        disconnect_garmin(token_dir)
        with pytest.raises(AuthRequired, match="garmin is not connected: run hillsync connect"):
            drain(make_source(token_dir).fetch(first_state()))


class TestBackfill:
    """The first sync lists the backfill window by dates, resumably, in few requests."""

    def test_first_sync_lists_everything_once(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """Every activity of the window arrives once; the request count is one per page."""
        add_profile(rsps)
        hist = history(250)
        server = FakeGarminServer(rsps, hist)
        batches = drain(make_source(token_dir, page_size=20).fetch(first_state()))
        got = ids(batches)
        assert sorted(got) == sorted(str(s["activityId"]) for s in hist)
        assert len(got) == len(set(got))
        # One request per full page plus the short one that ends each 90-day window.
        expected = 0
        end = NOW.date() + timedelta(days=1)  # the local date may be ahead of UTC
        since = (NOW - timedelta(days=365)).date()
        while end >= since:
            lo = max(since, end - timedelta(days=89))
            n = sum(lo.isoformat() <= s["startTimeGMT"][:10] <= end.isoformat() for s in hist)
            expected += n // 20 + 1
            end = lo - timedelta(days=1)
        assert len(server.list_calls) == expected
        assert len(server.list_calls) < 250 / 20 + 6
        cursor = last_cursor(batches)
        assert cursor["backfill"] is None
        assert cursor["covered_since"] == since.isoformat()
        assert (
            cursor["newest_start"]
            == max(a.start_time for b in batches for a in b.activities).isoformat()
        )

    def test_backfill_resumes_after_interruption(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """Stopping after two batches and fetching again with the cursor loses nothing."""
        add_profile(rsps)
        hist = history(120)
        FakeGarminServer(rsps, hist)
        it = make_source(token_dir, page_size=10).fetch(first_state())
        first = [next(it), next(it)]
        assert isinstance(it, Generator)  # closing the generator ends the fetch
        it.close()
        cursor = last_cursor(first)
        assert cursor["backfill"] is not None
        rest = drain(
            make_source(token_dir, page_size=10).fetch(
                SourceState(since=NOW - timedelta(days=365), cursor=cursor)
            )
        )
        got = ids(first) + ids(rest)
        assert sorted(set(got)) == sorted(str(s["activityId"]) for s in hist)
        assert last_cursor(rest, cursor)["backfill"] is None

    def test_earlier_since_backfills_only_the_gap(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """--since before the covered window lists only the dates not yet covered."""
        add_profile(rsps)
        server = FakeGarminServer(rsps, history(50, days=700))
        batches = drain(make_source(token_dir).fetch(first_state()))
        cursor = last_cursor(batches)
        server.list_calls.clear()
        since = NOW - timedelta(days=500)
        more = drain(make_source(token_dir).fetch(SourceState(since=since, cursor=cursor)))
        dated = [c for c in server.list_calls if "startDate" in c]
        assert dated
        assert all(c["endDate"] <= cursor["covered_since"] for c in dated)
        assert all(
            a.start_time.date() >= since.date() for a in (x for b in more for x in b.activities)
        )
        assert last_cursor(more, cursor)["covered_since"] == since.date().isoformat()

    def test_default_page_size_year_costs_few_requests(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """A year of 300 activities costs one request per 90-day window (5) at 100 a page."""
        add_profile(rsps)
        server = FakeGarminServer(rsps, history(300))
        batches = drain(make_source(token_dir).fetch(first_state()))
        assert len(ids(batches)) == 300
        assert len(server.list_calls) == 5
        assert all(c["limit"] == "100" for c in server.list_calls)

    def test_full_relists_the_window(self, token_dir: Path, rsps: responses.RequestsMock) -> None:
        """state.full lists every activity of the window again, known or not."""
        add_profile(rsps)
        hist = history(40, days=200)
        FakeGarminServer(rsps, hist)
        cursor = last_cursor(drain(make_source(token_dir).fetch(first_state())))
        again = drain(
            make_source(token_dir).fetch(
                SourceState(since=NOW - timedelta(days=365), cursor=cursor, full=True)
            )
        )
        assert sorted(ids(again)) == sorted(str(s["activityId"]) for s in hist)
        assert last_cursor(again, cursor)["backfill"] is None


class TestPoll:
    """Later syncs list newest first and stop at the known activities."""

    clients: LoggedInClients

    def _synced(
        self, token_dir: Path, rsps: responses.RequestsMock, n: int = 30
    ) -> tuple[FakeGarminServer, dict[str, Any]]:
        add_profile(rsps)
        server = FakeGarminServer(rsps, history(n, days=60))
        self.clients = LoggedInClients()
        cursor = last_cursor(
            drain(make_source(token_dir, clients=self.clients).fetch(first_state()))
        )
        rsps.calls.reset()
        server.list_calls.clear()
        return server, cursor

    def test_quiet_poll_costs_one_request(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """With nothing new, a poll (by a freshly built source) is one request and no batch."""
        _, cursor = self._synced(token_dir, rsps)
        state = SourceState(since=NOW - timedelta(days=365), cursor=cursor)
        batches = drain(make_source(token_dir, clients=self.clients).fetch(state))
        assert ids(batches) == []
        assert len(rsps.calls) == 1
        assert rsps.calls[0].request.url.startswith(LIST_URL)  # type: ignore[union-attr]

    def test_new_activities_arrive(self, token_dir: Path, rsps: responses.RequestsMock) -> None:
        """New activities are yielded once and move the cursor's newest start."""
        server, cursor = self._synced(token_dir, rsps)
        server.history.extend(
            [summary(5000, NOW - timedelta(hours=2)), summary(5001, NOW - timedelta(hours=1))]
        )
        state = SourceState(since=NOW - timedelta(days=365), cursor=cursor)
        batches = drain(make_source(token_dir).fetch(state))
        assert sorted(ids(batches)) == ["5000", "5001"]
        assert len(server.list_calls) == 1
        assert (
            last_cursor(batches, cursor)["newest_start"] == (NOW - timedelta(hours=1)).isoformat()
        )

    def test_late_upload_within_overlap(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """A run uploaded late, older than the newest but within 2 days, is still found."""
        server, cursor = self._synced(token_dir, rsps)
        newest = datetime.fromisoformat(cursor["newest_start"])
        server.history.append(summary(6000, newest - timedelta(days=1)))
        state = SourceState(since=NOW - timedelta(days=365), cursor=cursor)
        assert ids(drain(make_source(token_dir).fetch(state))) == ["6000"]

    def test_pages_until_known(self, token_dir: Path, rsps: responses.RequestsMock) -> None:
        """More new activities than a page are listed page by page, the cursor set last."""
        server, cursor = self._synced(token_dir, rsps)
        server.history.extend(summary(7000 + i, NOW - timedelta(minutes=i + 1)) for i in range(25))
        state = SourceState(since=NOW - timedelta(days=365), cursor=cursor)
        batches = drain(make_source(token_dir, page_size=10).fetch(state))
        assert sorted(ids(batches)) == sorted(str(7000 + i) for i in range(25))
        assert [b.cursor is None for b in batches] == [True, True, False]
        assert len(server.list_calls) == 3

    def test_bad_summary_is_rejected_not_fatal(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """A summary without a start time is rejected; the rest still arrive."""
        server, cursor = self._synced(token_dir, rsps)
        bad = summary(8000, NOW)
        del bad["startTimeGMT"], bad["beginTimestamp"]
        server.history.extend([summary(8001, NOW - timedelta(minutes=5))])
        server.history.insert(0, {**bad, "startTimeGMT": "9999-12-31 00:00:00"})
        server.history[0]["startTimeGMT"] = "garbage"
        state = SourceState(since=NOW - timedelta(days=365), cursor=cursor)
        batches = drain(make_source(token_dir).fetch(state))
        assert ids(batches) == ["8001"]
        assert [r.key for b in batches for r in b.rejected] == ["garmin:8000"]


class TestStreams:
    """The original FIT is downloaded only when the label needs it."""

    def test_auto_downloads_nothing_when_summary_suffices(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """With needs_profile False and elevation in the summaries, no file is fetched."""
        add_profile(rsps)
        server = FakeGarminServer(rsps, history(5, days=10))
        drain(make_source(token_dir).fetch(first_state()))
        assert server.downloads == []

    def test_auto_downloads_what_needs_a_profile(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """Only the run needs_profile names is downloaded, and it carries the file's track."""
        add_profile(rsps)
        server = FakeGarminServer(rsps, history(5, days=10))
        batches = drain(
            make_source(token_dir, needs_profile=lambda a: a.source_id == "1002").fetch(
                first_state()
            )
        )
        assert server.downloads == ["1002"]
        by_id = {a.source_id: a for b in batches for a in b.activities}
        assert by_id["1002"].track is not None
        assert len(by_id["1002"].track) > 100
        assert by_id["1002"].elevation_source == "file"
        assert by_id["1002"].reported_gain_m == 120.0
        assert by_id["1001"].track is None

    def test_missing_elevation_downloads_outdoor_run(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """An outdoor run whose summary lacks elevation is downloaded, a treadmill run is not."""
        add_profile(rsps)
        server = FakeGarminServer(
            rsps,
            [
                summary(1, NOW - timedelta(hours=5), gain=None, loss=None),
                summary(2, NOW - timedelta(hours=4), gain=None, type_key="treadmill_running"),
            ],
        )
        drain(make_source(token_dir).fetch(first_state()))
        assert server.downloads == ["1"]

    def test_always_downloads_every_outdoor_run(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """streams="always" downloads every outdoor run but never indoor runs or rides."""
        add_profile(rsps)
        server = FakeGarminServer(
            rsps,
            [
                summary(1, NOW - timedelta(hours=5)),
                summary(2, NOW - timedelta(hours=4), type_key="trail_running"),
                summary(3, NOW - timedelta(hours=3), type_key="virtual_run"),
                summary(4, NOW - timedelta(hours=2), type_key="road_biking"),
            ],
        )
        drain(make_source(token_dir, streams="always").fetch(first_state()))
        assert sorted(server.downloads) == ["1", "2"]

    def test_missing_file_keeps_summary(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """A 404 on the download leaves the summary activity and goes on."""
        add_profile(rsps)
        rsps.add(responses.GET, LIST_URL, json=[summary(9, NOW - timedelta(hours=1))])
        rsps.add(responses.GET, LIST_URL, json=[])
        rsps.add(responses.GET, f"{DOWNLOAD_URL}/9", status=404, json={"message": "gone"})
        batches = drain(make_source(token_dir, streams="always").fetch(first_state()))
        assert [a.track for b in batches for a in b.activities] == [None]


class TestTokens:
    """Token login, refresh and write-back."""

    def test_expired_token_is_refreshed_and_written_back(
        self, tmp_path: Path, rsps: responses.RequestsMock
    ) -> None:
        """An expired access token is refreshed at login and the rotated file stays 0600."""
        folder = tmp_path / "g"
        write_private_file(folder / "garmin_tokens.json", token_json(EXPIRED_TOKEN).encode())
        rsps.add(
            responses.POST,
            TOKEN_URL,
            json={"access_token": NEW_ACCESS_TOKEN, "refresh_token": NEW_REFRESH_TOKEN},
        )
        add_profile(rsps)
        FakeGarminServer(rsps, history(3, days=5))
        drain(make_source(folder).fetch(first_state()))
        saved = json.loads((folder / "garmin_tokens.json").read_text())
        assert saved["di_token"] == NEW_ACCESS_TOKEN
        assert saved["di_refresh_token"] == NEW_REFRESH_TOKEN
        assert stat.S_IMODE((folder / "garmin_tokens.json").stat().st_mode) == 0o600
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700

    def test_new_token_file_means_new_login(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """A token file replaced (a reconnect) is logged in again instead of reusing the client."""
        add_profile(rsps)
        FakeGarminServer(rsps, history(3, days=5))
        clients = LoggedInClients()
        drain(make_source(token_dir, clients=clients).fetch(first_state()))
        rsps.calls.reset()
        drain(make_source(token_dir, clients=clients).fetch(first_state()))
        assert rsps.calls[0].request.url != SOCIAL_URL  # the logged-in client was reused
        write_private_file(token_dir / "garmin_tokens.json", token_json().encode())
        rsps.calls.reset()
        drain(make_source(token_dir, clients=clients).fetch(first_state()))
        assert rsps.calls[0].request.url == SOCIAL_URL


class TestErrors:
    """Garmin's failures become hillsync's errors."""

    def test_401_after_refresh_is_auth_required(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """A 401 that survives garminconnect's own refresh asks to reconnect."""
        add_profile(rsps)
        rsps.add(responses.GET, LIST_URL, status=401, json={"message": "Token is not active"})
        rsps.add(responses.POST, TOKEN_URL, status=400, json={"error": "invalid_grant"})
        with pytest.raises(AuthRequired) as info:
            drain(make_source(token_dir).fetch(first_state()))
        assert "hillsync connect garmin" in str(info.value)
        assert info.value.command == "hillsync connect garmin"
        assert sum(1 for c in rsps.calls if c.request.url == TOKEN_URL) == 1

    def test_refused_at_login_is_auth_required(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """Tokens the profile check refuses at login ask to reconnect."""
        add_profile(rsps, status=401)
        rsps.add(responses.POST, TOKEN_URL, status=400, json={"error": "invalid_grant"})
        with pytest.raises(AuthRequired, match="hillsync connect garmin"):
            drain(make_source(token_dir).fetch(first_state()))

    def test_429_parks_for_at_least_30_minutes(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """A 429 raises RateLimited resuming no sooner than 30 minutes later, without retry."""
        add_profile(rsps)
        rsps.add(responses.GET, LIST_URL, status=429, json={"message": "slow down"})
        with pytest.raises(RateLimited) as info:
            drain(make_source(token_dir).fetch(first_state()))
        assert info.value.resume_at >= NOW + timedelta(minutes=30)
        assert sum(1 for c in rsps.calls if (c.request.url or "").startswith(LIST_URL)) == 1

    def test_connection_error_retried_then_unavailable(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """A connection error is retried by the policy, then raises SourceUnavailable."""
        add_profile(rsps)
        rsps.add(responses.GET, LIST_URL, body=requests.ConnectionError("connection refused"))
        with pytest.raises(SourceUnavailable, match="could not be reached"):
            drain(make_source(token_dir).fetch(first_state()))
        assert sum(1 for c in rsps.calls if (c.request.url or "").startswith(LIST_URL)) == 3

    def test_server_error_then_success(self, token_dir: Path, rsps: responses.RequestsMock) -> None:
        """A 503 followed by an answer is retried transparently."""
        add_profile(rsps)
        rsps.add(responses.GET, LIST_URL, status=503, json={"message": "busy"})
        rsps.add(responses.GET, LIST_URL, json=[summary(1, NOW - timedelta(hours=1))])
        rsps.add(responses.GET, LIST_URL, json=[])
        assert ids(drain(make_source(token_dir).fetch(first_state()))) == ["1"]

    def test_network_down_at_login_is_unavailable(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """A network failure while the login checks the profile is not mistaken for auth."""
        rsps.add(responses.GET, SOCIAL_URL, body=requests.ConnectionError("no route"))
        with pytest.raises(SourceUnavailable):
            drain(make_source(token_dir).fetch(first_state()))


class TestSecrets:
    """Tokens and passwords never reach logs, output or error messages."""

    def test_tokens_never_logged(
        self,
        tmp_path: Path,
        rsps: responses.RequestsMock,
        caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A refresh, a sync and a refused call log no token, at any level."""
        folder = tmp_path / "g"
        write_private_file(folder / "garmin_tokens.json", token_json(EXPIRED_TOKEN).encode())
        rsps.add(
            responses.POST,
            TOKEN_URL,
            json={"access_token": NEW_ACCESS_TOKEN, "refresh_token": NEW_REFRESH_TOKEN},
        )
        add_profile(rsps)
        rsps.add(responses.GET, LIST_URL, json=[summary(1, NOW - timedelta(hours=1))])
        rsps.add(responses.GET, LIST_URL, status=401, json={"message": "Token is not active"})
        rsps.add(responses.POST, TOKEN_URL, status=400, json={"error": "invalid_grant"})
        caplog.set_level(logging.DEBUG)
        with structlog.testing.capture_logs() as events, pytest.raises(AuthRequired) as info:
            drain(make_source(folder, page_size=1).fetch(first_state()))
        out = capsys.readouterr()
        text = "\n".join([caplog.text, repr(events), str(info.value), out.out, out.err])
        assert events  # the source did log something
        assert [c.request.url for c in rsps.calls].count(TOKEN_URL) == 2
        for secret in (EXPIRED_TOKEN, NEW_ACCESS_TOKEN, REFRESH_TOKEN, NEW_REFRESH_TOKEN):
            assert secret not in text
        for jwt in (EXPIRED_TOKEN, NEW_ACCESS_TOKEN):
            assert jwt.split(".")[1] not in text

    def test_login_errors_hold_no_password(self, tmp_path: Path) -> None:
        """A login failure whose library text holds the password does not repeat it."""
        fake = FakeMfaGarmin(error=GarminConnectAuthenticationError(f"bad {PASSWORD}"))
        with pytest.raises(AuthRequired) as info:
            connect_garmin(
                tmp_path,
                email="me@example.org",
                password_prompt=lambda: PASSWORD,
                mfa_prompt=lambda: "1",
                environ={},
                garmin_factory=mfa_factory(fake),
            )
        assert PASSWORD not in str(info.value)
        assert info.value.__cause__ is None


class TestOneProcessAtATime:
    """An account's tokens are used by one hillsync process at a time."""

    def test_second_process_waits_its_turn(self, token_dir: Path) -> None:
        """While another process holds the account's lock, a fetch is a retry-later."""
        import fcntl
        import os

        fd = os.open(token_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with pytest.raises(SourceUnavailable, match="another hillsync process"):
                list(make_source(token_dir).fetch(SourceState(since=NOW - timedelta(days=30))))
        finally:
            os.close(fd)


class GarminWorld:
    """A Garmin Connect account behind the real garminconnect client (HTTP mocked)."""

    def __init__(self, rsps: responses.RequestsMock, token_dir: Path) -> None:
        add_profile(rsps)
        self.server = FakeGarminServer(rsps, [])
        self.token_dir = token_dir
        self.last_id = 9000

    def source(self) -> GarminSource:
        return make_source(self.token_dir, page_size=2)

    def first_state(self) -> SourceState:
        return first_state()

    def _next(self) -> tuple[int, datetime]:
        self.last_id += 1
        # Three days apart: Garmin's 2-day listing overlap covers at most the newest run.
        return self.last_id, NOW - timedelta(days=40) + timedelta(days=3 * (self.last_id - 9000))

    def add_runs(self, count: int) -> list[str]:
        added = [summary(*self._next()) for _ in range(count)]
        self.server.history.extend(added)
        return [str(s["activityId"]) for s in added]

    def add_bad(self) -> str:
        bad = summary(*self._next())
        bad["activityId"] = ""
        self.server.history.append(bad)
        return "garmin:"


class TestGarminContract(SourceContract):
    """The Garmin source keeps the SourceContract."""

    caught_up_repeats = 1

    @pytest.fixture
    def world(self, rsps: responses.RequestsMock, token_dir: Path) -> SourceWorld:
        return GarminWorld(rsps, token_dir)


class Outage:
    """Garmin's token service down: the API answers 401 and a refresh answers 503, until
    `healed`; then both answer normally."""

    def __init__(self, rsps: responses.RequestsMock, history_: list[dict[str, Any]]) -> None:
        self.healed = False
        self.token_posts = 0
        server = FakeGarminServer(rsps, history_)
        self.server = server

        def profile(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
            if not self.healed:
                return 401, {}, json.dumps({"message": "Token is not active"})
            if "socialProfile" in str(request.url):
                body = {"displayName": "hill-runner", "fullName": "H R", "profileId": 987654}
                return 200, {}, json.dumps(body)
            return 200, {}, json.dumps({"userData": {"measurementSystem": "metric"}})

        def token(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
            self.token_posts += 1
            if not self.healed:
                return 503, {}, "<html>Service Unavailable</html>"
            body = {"access_token": NEW_ACCESS_TOKEN, "refresh_token": NEW_REFRESH_TOKEN}
            return 200, {}, json.dumps(body)

        rsps.add_callback(responses.GET, SOCIAL_URL, callback=profile)
        rsps.add_callback(responses.GET, SETTINGS_URL, callback=profile)
        rsps.add_callback(responses.POST, TOKEN_URL, callback=token)


class TestRefreshOutage:
    """A 401 after a failed refresh heals by itself; only a sustained one asks to reconnect."""

    def source(self, token_dir: Path, now: list[datetime]) -> GarminSource:
        return GarminSource(
            "garmin",
            token_dir=token_dir,
            needs_profile=lambda a: False,
            clock=lambda: now[0],
            retrying=no_wait(),
        )

    def test_two_hours_of_401_then_recovery(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """Polls during two hours of refusals are retry-laters, never AuthRequired; then syncs."""
        outage = Outage(rsps, history(3, days=5))
        now = [NOW]
        cursor: dict[str, Any] = {}
        for minutes in (0, 30, 60, 90, 120):
            now[0] = NOW + timedelta(minutes=minutes)
            batches: list[Batch] = []
            fetching = self.source(token_dir, now).fetch(first_state_with(cursor))
            with pytest.raises(SourceUnavailable, match="HTTP 401; token refresh: HTTP 503"):
                batches.extend(fetching)
            cursor = last_cursor(batches, cursor)
            assert cursor["auth_failing_since"] == NOW.isoformat()
        assert outage.token_posts >= 5
        outage.healed = True
        now[0] = NOW + timedelta(minutes=135)
        batches = drain(self.source(token_dir, now).fetch(first_state_with(cursor)))
        assert sorted(ids(batches)) == ["1000", "1001", "1002"]
        assert "auth_failing_since" not in last_cursor(batches, cursor)

    def test_sustained_refusal_asks_to_reconnect(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """Refusals that began six hours ago give AuthRequired naming the command."""
        Outage(rsps, [])
        since = NOW - timedelta(hours=6, minutes=1)
        state = first_state_with({"auth_failing_since": since.isoformat()})
        with pytest.raises(AuthRequired, match=r"since .* run hillsync connect garmin"):
            drain(self.source(token_dir, [NOW]).fetch(state))

    def test_revoked_refresh_is_immediate(
        self, token_dir: Path, rsps: responses.RequestsMock
    ) -> None:
        """A refresh Garmin refuses (400 invalid_grant) means revoked: AuthRequired at once."""
        add_profile(rsps, status=401)
        rsps.add(responses.POST, TOKEN_URL, status=400, json={"error": "invalid_grant"})
        with pytest.raises(AuthRequired) as info:
            drain(self.source(token_dir, [NOW]).fetch(first_state()))
        assert not isinstance(info.value, SourceUnavailable)


def first_state_with(cursor: dict[str, Any]) -> SourceState:
    """A first-sync state carrying `cursor`."""
    return SourceState(since=NOW - timedelta(days=365), cursor=cursor)


MFA_VERIFY = "https://sso.garmin.com/portal/api/mfa/verifyCode"
MFA_VERIFY_ALT = "https://sso.garmin.com/mobile/api/mfa/verifyCode"
#: What garminconnect's login(return_on_mfa=True) hands back after the password step.
MFA_STATE: dict[str, Any] = {
    "domain": "garmin.com",
    "flow": "portal",
    "method": "email",
    "login_params": {},
    "post_headers": {},
    "service_url": None,
    "csrf_token": None,
    "impersonate": None,
    "cookies": [],
}


class PasswordStepDone(Garmin):
    """The real client, its password step (an SSO flow not worth mocking) already done."""

    def login(self, /, tokenstore: str | None = None) -> tuple[str | None, Any]:
        """Garmin wants an MFA code."""
        return "needs_mfa", MFA_STATE


class TestMfaRetry:
    """A mistyped MFA code is retried on the same login session, up to three codes."""

    def mfa(self, rsps: responses.RequestsMock, good: str) -> list[str]:
        codes: list[str] = []

        def verify(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
            code = json.loads(request.body or b"{}")["mfaVerificationCode"]
            codes.append(code)
            if code == good:
                body = {"responseStatus": {"type": "SUCCESSFUL"}, "serviceTicketId": "ST-1"}
                return 200, {}, json.dumps(body)
            return 200, {}, json.dumps({"responseStatus": {"type": "INVALID_MFA_CODE"}})

        rsps.add_callback(responses.POST, MFA_VERIFY, callback=verify)
        rsps.add_callback(responses.POST, MFA_VERIFY_ALT, callback=verify)
        rsps.add(
            responses.POST,
            TOKEN_URL,
            json={"access_token": ACCESS_TOKEN, "refresh_token": REFRESH_TOKEN},
        )
        add_profile(rsps)
        return codes

    def connect(self, tmp_path: Path, typed: list[str], said: list[str]) -> GarminAccount:
        def factory(**kwargs: Any) -> Garmin:
            return PasswordStepDone(**kwargs) if "email" in kwargs else Garmin(**kwargs)

        return connect_garmin(
            tmp_path / "g",
            email="me@example.org",
            password_prompt=lambda: PASSWORD,
            mfa_prompt=lambda: typed.pop(0),
            environ={},
            garmin_factory=factory,
            say=said.append,
        )

    def test_third_code_works(self, tmp_path: Path, rsps: responses.RequestsMock) -> None:
        """Two wrong codes, then the right one: connected, and told twice to try again."""
        verified = self.mfa(rsps, good="123456")
        said: list[str] = []
        account = self.connect(tmp_path, ["111111", "222222", "123456"], said)
        assert account.display_name == "hill-runner"
        assert [c for c in verified if c != "123456"] == ["111111"] * 2 + ["222222"] * 2
        assert said == [
            "Garmin refused that MFA code; try again (2 left)",
            "Garmin refused that MFA code; try again (1 left)",
        ]
        assert json.loads((tmp_path / "g" / "garmin_tokens.json").read_text())["di_token"]

    def test_three_wrong_codes(self, tmp_path: Path, rsps: responses.RequestsMock) -> None:
        """Three refused codes end the login with one line and no token file."""
        self.mfa(rsps, good="999999")
        with pytest.raises(AuthRequired, match="refused the MFA code 3 times"):
            self.connect(tmp_path, ["1", "2", "3"], [])
        assert not (tmp_path / "g" / "garmin_tokens.json").exists()


class TestTokenPath:
    """hillsync's own token path: resolved to its real path, GARMINTOKENS never read."""

    def test_symlinked_state_directory(self, tmp_path: Path, rsps: responses.RequestsMock) -> None:
        """A token folder reached through a symlink not owned by root still logs in."""
        real = tmp_path / "real-home"
        real.mkdir()
        link = tmp_path / "home"
        link.symlink_to(real)
        os.lchown(link, 4321, 4321)  # as a user's own link would be: garminconnect refuses it
        folder = link / "state" / "garmin"
        write_private_file(folder / "garmin_tokens.json", token_json().encode())
        add_profile(rsps)
        FakeGarminServer(rsps, history(2, days=5))
        assert sorted(ids(drain(make_source(folder).fetch(first_state())))) == ["1000", "1001"]

    def test_garmintokens_is_ignored(
        self, tmp_path: Path, rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With GARMINTOKENS set, connect still logs in with the password (a path is given)."""
        monkeypatch.setenv("GARMINTOKENS", token_json())
        add_profile(rsps)
        fake = FakeMfaGarmin(needs_mfa=False)
        connect_garmin(
            tmp_path / "g",
            email="me@example.org",
            password_prompt=lambda: PASSWORD,
            mfa_prompt=lambda: "1",
            environ={},
            garmin_factory=mfa_factory(fake),
        )
        assert fake.tokenstores
        assert all(t is not None for t in fake.tokenstores)
        assert not Path(fake.tokenstores[0] or "").exists()
