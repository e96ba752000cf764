"""Connecting accounts in the browser: Garmin's form with MFA, a token upload, disconnect."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from starlette.testclient import TestClient

from hillsync.app.web import WebUseCases
from hillsync.store import repo
from test_garmin import PASSWORD as GARMIN_PASSWORD
from test_garmin import REFRESH_TOKEN, FakeMfaGarmin, add_profile, mfa_factory, token_json
from web.websupport import STRAVA_APP, STRAVA_SECRET, Site, csrf_of


def garmin_site(site: Site, fake: FakeMfaGarmin) -> Site:
    site.backend = WebUseCases(site.ctx, garmin_factory=mfa_factory(fake))
    return site


class TestGarminForm:
    """The form logs in once (password never stored), asks for the MFA code when Garmin does."""

    def test_login_with_mfa(
        self, site: Site, rsps: responses.RequestsMock, garmin_offline: list[float]
    ) -> None:
        """Password, then the MFA code on a second page: the account is connected."""
        add_profile(rsps)
        fake = FakeMfaGarmin()
        client = garmin_site(site, fake).client()
        form = client.get("/connect/garmin?athlete=me")
        assert form.status_code == 200
        token = csrf_of(form.text)
        first = client.post(
            "/connect/garmin",
            data={"csrf": token, "athlete": "me", "email": "me@example.org",
                  "password": GARMIN_PASSWORD},
        )  # fmt: skip
        assert first.status_code == 200
        assert 'id="garmin-mfa"' in first.text
        assert GARMIN_PASSWORD not in first.text
        done = client.post("/connect/garmin/mfa", data={"csrf": token, "code": "123456"})
        assert done.status_code == 200
        assert "Garmin hill-runner is connected for me" in done.text
        assert fake.codes == ["123456"]
        token_file = site.tmp / "state" / "hillsync" / "tokens" / "me" / "garmin"
        stored = token_file / "garmin_tokens.json"
        assert json.loads(stored.read_text())["di_refresh_token"] == REFRESH_TOKEN
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        for path in site.tmp.rglob("*"):
            if path.is_file():
                assert GARMIN_PASSWORD.encode() not in path.read_bytes(), path
        with site.db.session(readonly=True) as session:
            account = repo.get_account(session, "me", "garmin")
            assert account is not None
            assert account.display_name == "hill-runner"

    def test_refused_login_says_so(
        self, site: Site, rsps: responses.RequestsMock, garmin_offline: list[float]
    ) -> None:
        """A refused password is shown as Garmin's refusal, and nothing is connected."""
        from garminconnect import GarminConnectAuthenticationError

        fake = FakeMfaGarmin(error=GarminConnectAuthenticationError("401 Unauthorized"))
        client = garmin_site(site, fake).client()
        token = csrf_of(client.get("/connect/garmin?athlete=me").text)
        r = client.post(
            "/connect/garmin",
            data={"csrf": token, "athlete": "me", "email": "me@example.org", "password": "bad"},
        )
        assert r.status_code == 200
        assert "Not connected" in r.text
        assert "Garmin refused the login" in r.text
        with site.db.session(readonly=True) as session:
            assert repo.get_account(session, "me", "garmin") is None

    def test_token_upload(
        self, site: Site, rsps: responses.RequestsMock, garmin_offline: list[float]
    ) -> None:
        """An uploaded garminconnect token file is verified and connects the account."""
        add_profile(rsps)
        client = garmin_site(site, FakeMfaGarmin()).client()
        token = csrf_of(client.get("/connect/garmin?athlete=me").text)
        r = client.post(
            "/connect/garmin/tokens",
            data={"csrf": token, "athlete": "me"},
            files={"tokens": ("garmin_tokens.json", token_json().encode(), "application/json")},
        )
        assert r.status_code == 200
        assert "is connected for me (token file imported)" in r.text
        assert REFRESH_TOKEN not in r.text

    def test_upload_that_is_not_a_token_file(
        self, site: Site, rsps: responses.RequestsMock, garmin_offline: list[float]
    ) -> None:
        """A file that is not a token file is refused with the reason; nothing is connected."""
        client = garmin_site(site, FakeMfaGarmin()).client()
        token = csrf_of(client.get("/connect/garmin?athlete=me").text)
        r = client.post(
            "/connect/garmin/tokens",
            data={"csrf": token, "athlete": "me"},
            files={"tokens": ("x.json", b"not json at all", "application/json")},
        )
        assert r.status_code == 200
        assert "Not connected" in r.text
        with site.db.session(readonly=True) as session:
            assert repo.get_account(session, "me", "garmin") is None

    def test_forms_need_csrf(self, site: Site) -> None:
        """Without the CSRF token, neither the login nor the upload is tried."""
        client = site.client()
        r = client.post(
            "/connect/garmin",
            data={"athlete": "me", "email": "me@example.org", "password": "x"},
        )
        assert r.status_code == 403
        r = client.post("/connect/garmin/mfa", data={"code": "1"})
        assert r.status_code == 403


TOKEN_URL = "https://www.strava.com/oauth/token"
SCOPE = "read,activity:read_all"


@pytest.fixture
def strava_site(tmp_path: Path, synced_db: Path) -> Iterator[Site]:
    """A site whose config has a Strava application."""
    s = Site(tmp_path, synced_db, STRAVA_APP)
    yield s
    s.db.close()


def start(client: TestClient) -> dict[str, str]:
    """Press Connect Strava; returns the authorize URL's query."""
    page = client.get("/sources")
    r = client.post(
        "/connect/strava", data={"csrf": csrf_of(page.text), "athlete": "me"},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303
    url = urlsplit(r.headers["location"])
    assert url.netloc == "www.strava.com"
    assert url.path == "/oauth/authorize"
    return {k: v[0] for k, v in parse_qs(url.query).items()}


def exchange(rsps: responses.RequestsMock) -> None:
    rsps.post(
        TOKEN_URL,
        json={"token_type": "Bearer", "access_token": "strava-access-0001",
              "refresh_token": "strava-refresh-0001", "expires_at": 1_900_000_000,
              "athlete": {"id": 5551234, "firstname": "Ann", "lastname": "Runner",
                          "resource_state": 2}},
    )  # fmt: skip


class TestStravaConnect:
    """Strava's OAuth redirect comes back to the server; state and scope are checked."""

    def test_connect(self, strava_site: Site, rsps: responses.RequestsMock) -> None:
        """Authorize, come back with code and scope: tokens stored 0600, account recorded."""
        client = strava_site.client()
        query = start(client)
        assert query["redirect_uri"] == "http://127.0.0.1:8722/connect/strava/callback"
        assert "activity:read_all" in query["scope"].split(",")
        assert query["client_id"] == "4242"
        exchange(rsps)
        r = client.get(
            "/connect/strava/callback",
            params={"state": query["state"], "code": "the-code", "scope": SCOPE},
        )
        assert r.status_code == 200
        assert "Strava athlete Ann Runner is connected for me" in r.text
        for secret in ("strava-access-0001", "strava-refresh-0001", STRAVA_SECRET):
            assert secret not in r.text
        token = strava_site.tmp / "state" / "hillsync" / "tokens" / "me" / "strava.json"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        with strava_site.db.session(readonly=True) as session:
            account = repo.get_account(session, "me", "strava")
            assert account is not None
            assert account.remote_id == "5551234"

    def test_public_url_is_the_redirect(
        self, strava_site: Site, rsps: responses.RequestsMock
    ) -> None:
        """Behind a reverse proxy, Strava is sent back to [web] public_url (the session
        cookie is then Secure: the proxy speaks https)."""
        client = strava_site.client(
            base_url="https://hills.example.org", public_url="https://hills.example.org"
        )
        assert start(client)["redirect_uri"] == (
            "https://hills.example.org/connect/strava/callback"
        )

    def test_state_mismatch_is_refused(
        self, strava_site: Site, rsps: responses.RequestsMock
    ) -> None:
        """An answer with another state is refused and no code is exchanged."""
        client = strava_site.client()
        start(client)
        r = client.get(
            "/connect/strava/callback", params={"state": "forged", "code": "c", "scope": SCOPE}
        )
        assert r.status_code == 400
        assert "state mismatch" in r.text
        assert not rsps.calls

    def test_missing_scope_is_said(self, strava_site: Site, rsps: responses.RequestsMock) -> None:
        """Authorizing without private activities says what to tick; nothing is stored."""
        client = strava_site.client()
        query = start(client)
        r = client.get(
            "/connect/strava/callback",
            params={"state": query["state"], "code": "c", "scope": "read,activity:read"},
        )
        assert "Not connected" in r.text
        assert "activity:read_all" in r.text
        with strava_site.db.session(readonly=True) as session:
            assert repo.get_account(session, "me", "strava") is None

    def test_denied(self, strava_site: Site, rsps: responses.RequestsMock) -> None:
        """Pressing Cancel on Strava's page comes back as access_denied: not connected."""
        client = strava_site.client()
        query = start(client)
        r = client.get(
            "/connect/strava/callback",
            params={"state": query["state"], "error": "access_denied"},
        )
        assert "Not connected" in r.text
        assert "not granted" in r.text

    def test_callback_without_a_start(self, strava_site: Site) -> None:
        """A callback that no Connect press of this session started is refused."""
        r = strava_site.client().get(
            "/connect/strava/callback", params={"state": "s", "code": "c", "scope": SCOPE}
        )
        assert r.status_code == 400

    def test_disconnect_deletes_the_strava_data(
        self, strava_site: Site, rsps: responses.RequestsMock
    ) -> None:
        """Disconnect revokes on Strava, deletes the tokens, the account and its activities."""
        strava_site.add_strava()
        rsps.post("https://www.strava.com/oauth/revoke", json={})
        rsps.post("https://www.strava.com/oauth/deauthorize", json={})
        client = strava_site.client()
        page = client.get("/sources")
        r = client.post(
            "/disconnect", data={"csrf": csrf_of(page.text), "athlete": "me", "kind": "strava"}
        )
        assert r.status_code == 200
        assert "strava disconnected for me" in r.text
        assert strava_site.strava_activity() is None
        assert not strava_site.token_file.exists()
        with strava_site.db.session(readonly=True) as session:
            assert repo.get_account(session, "me", "strava") is None
