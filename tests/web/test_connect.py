"""Connecting accounts in the browser: Garmin's form with MFA, a token upload, disconnect."""

from __future__ import annotations

import json
import stat

import responses

from hillsync.app.web import WebUseCases
from hillsync.store import repo
from test_garmin import PASSWORD as GARMIN_PASSWORD
from test_garmin import REFRESH_TOKEN, FakeMfaGarmin, add_profile, mfa_factory, token_json
from web.websupport import Site, csrf_of


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
