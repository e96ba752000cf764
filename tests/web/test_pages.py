"""hillsync serve through Starlette's TestClient: pages, login, CSRF, share links, webhook."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from hillsync.cli import main
from hillsync.errors import ConfigError
from hillsync.model import Activity, Batch, Secret
from hillsync.store import repo
from hillsync.store.tables import ActivityRow
from hillsync.web.app import WebOptions, create_app
from hillsync.web.server import check_options
from web.websupport import NOW, PASSWORD, PUBLIC, STRAVA_ATHLETE, VERIFY, Site, csrf_of


def event(**overrides: Any) -> dict[str, Any]:
    """A push event in Strava's documented shape."""
    body: dict[str, Any] = {
        "aspect_type": "create",
        "event_time": 1764590000,
        "object_id": 888,
        "object_type": "activity",
        "owner_id": STRAVA_ATHLETE,
        "subscription_id": 120475,
        "updates": {},
    }
    body.update(overrides)
    return body


class TestPages:
    """Every page answers with what a runner needs to see."""

    def test_home_goes_to_the_only_athlete(self, site: Site) -> None:
        """With one athlete, / leads to their dashboard."""
        r = site.client().get("/", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/a/me"

    def test_dashboard(self, site: Site) -> None:
        """The dashboard shows the status, band, advice, window figures, both charts and runs."""
        r = site.client().get("/a/me")
        assert r.status_code == 200
        page = r.text
        assert "30 %–55 %" in page  # DESIGN's trail band
        assert 'src="/a/me/charts/shares.svg"' in page
        assert 'src="/a/me/charts/weekly.svg"' in page
        assert "Rosskopf loop" in page  # a bundled run's name
        assert "climbed in the window" in page
        assert re.search(
            r'class="status status-(ok|low|high|downhill_high|insufficient_data)"', page
        )
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
        assert "<script" not in page

    def test_charts_are_svg(self, site: Site) -> None:
        """Both dashboard charts are SVG images."""
        client = site.client()
        for name in ("shares.svg", "weekly.svg"):
            r = client.get(f"/a/me/charts/{name}")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("image/svg+xml")
            assert r.text.lstrip().startswith("<?xml")
        assert client.get("/a/me/charts/other.svg").status_code == 404

    def test_run_page_with_profile(self, site: Site) -> None:
        """A run page shows its label, figures and a profile coloured by segment."""
        client = site.client()
        found = False
        for run_id in site.run_ids():
            r = client.get(f"/a/me/runs/{run_id}")
            assert r.status_code == 200
            if f"/a/me/runs/{run_id}/profile.svg" in r.text:
                svg = client.get(f"/a/me/runs/{run_id}/profile.svg")
                assert svg.status_code == 200
                assert "#c0392b" in svg.text or "#2e86c1" in svg.text
                found = True
                break
        assert found, "no bundled run has a stored profile"

    def test_unknown_things_are_404_with_a_reason(self, site: Site) -> None:
        """An unknown athlete, run or path is a 404 with a short reason, no traceback."""
        client = site.client()
        for path in ("/a/nobody", "/a/me/runs/999999", "/a/me/runs/abc", "/nothing"):
            r = client.get(path)
            assert r.status_code == 404, path
            assert "Traceback" not in r.text
            assert len(r.text) < 5000

    def test_sources_page(self, site: Site) -> None:
        """The sources page lists the configured sources with their state and connect forms."""
        site.add_strava()
        r = site.client().get("/sources")
        assert r.status_code == 200
        assert "strava" in r.text
        assert "Connect Garmin" in r.text
        assert VERIFY not in r.text

    def test_stylesheet_is_local(self, site: Site) -> None:
        """The stylesheet is served by the app itself."""
        r = site.client().get("/static/style.css")
        assert r.status_code == 200
        assert "font-family" in r.text

    def test_unexpected_error_is_short(self, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
        """A failure inside a page is a 500 with one sentence, never a traceback."""

        def boom(athlete: str) -> Any:
            raise RuntimeError("secret internals")

        monkeypatch.setattr(site.backend, "dashboard", boom)
        r = site.client().get("/a/me")
        assert r.status_code == 500
        assert "secret internals" not in r.text
        assert "Traceback" not in r.text


class TestLogin:
    """With a password, every operator page needs a login; forms need the CSRF token."""

    def test_pages_need_a_login(self, site: Site) -> None:
        """Without a session, pages redirect to the login and POSTs are refused."""
        client = site.client(password=Secret(PASSWORD), host=PUBLIC)
        r = client.get("/a/me", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login")
        assert client.get("/sources", follow_redirects=False).status_code == 303
        assert client.get("/a/me/charts/weekly.svg", follow_redirects=False).status_code == 303
        assert client.post("/a/me/share", data={"csrf": "x"}).status_code == 401

    def test_login_and_logout(self, site: Site) -> None:
        """The right password gives an HttpOnly SameSite session; a wrong one does not."""
        client = site.client(password=Secret(PASSWORD), host=PUBLIC)
        form = client.get("/login?next=/sources")
        assert form.status_code == 200
        token = csrf_of(form.text)
        wrong = client.post("/login", data={"csrf": token, "password": "nope", "next": "/"})
        assert wrong.status_code == 403
        assert "Wrong password" in wrong.text
        ok = client.post(
            "/login",
            data={"csrf": token, "password": PASSWORD, "next": "/sources"},
            follow_redirects=False,
        )
        assert ok.status_code == 303
        assert ok.headers["location"] == "/sources"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=lax" in cookie
        page = client.get("/sources")
        assert page.status_code == 200
        assert PASSWORD not in page.text
        out = client.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
        assert out.status_code == 303
        assert client.get("/sources", follow_redirects=False).status_code == 303

    def test_login_without_csrf_is_refused(self, site: Site) -> None:
        """A login form posted from elsewhere (no CSRF token) is refused."""
        client = site.client(password=Secret(PASSWORD), host=PUBLIC)
        r = client.post("/login", data={"password": PASSWORD})
        assert r.status_code == 403

    def test_next_is_never_another_site(self, site: Site) -> None:
        """After login, only a local path is followed (no open redirect)."""
        client = site.client(password=Secret(PASSWORD), host=PUBLIC)
        token = csrf_of(client.get("/login").text)
        r = client.post(
            "/login",
            data={"csrf": token, "password": PASSWORD, "next": "//evil.example/x"},
            follow_redirects=False,
        )
        assert r.headers["location"] == "/"

    def test_login_is_rate_limited(self, site: Site) -> None:
        """Guessing the password is slowed down: the 11th try within a minute gets 429."""
        client = site.client(password=Secret(PASSWORD), host=PUBLIC)
        token = csrf_of(client.get("/login").text)
        codes = [
            client.post("/login", data={"csrf": token, "password": "guess"}).status_code
            for _ in range(11)
        ]
        assert codes[:10] == [403] * 10
        assert codes[10] == 429

    def test_forms_need_csrf(self, site: Site) -> None:
        """A form POST without the session's CSRF token is refused with 403."""
        client = site.client()
        client.get("/a/me/share")
        assert client.post("/a/me/share", data={}).status_code == 403
        assert client.post("/a/me/share", data={"csrf": "forged-token-value"}).status_code == 403
        r = client.post("/a/me/share/revoke", data={"link": "1"})
        assert r.status_code == 403

    def test_non_loopback_needs_a_password(self) -> None:
        """Serving on any address but loopback without [web] password is refused."""
        with pytest.raises(ConfigError, match=r"web\.password"):
            check_options(WebOptions(host=PUBLIC))
        check_options(WebOptions(host="127.0.0.1"))
        check_options(WebOptions(host="::1"))
        check_options(WebOptions(host=PUBLIC, password=Secret(PASSWORD)))

    def test_serve_command_refuses_public_address(self, tmp_path: Path) -> None:
        """`hillsync serve --host 0.0.0.0` without a password exits 2 with the key to set."""
        config = tmp_path / "config.toml"
        config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "h.db"}"\n')
        env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
        assert main(["--config", str(config), "serve", "--host", PUBLIC], environ=env) == 2


class TestShareLinks:
    """A read-only link opens one athlete's pages and nothing else, until revoked."""

    def make_link(self, client: TestClient) -> tuple[str, str]:
        page = client.get("/a/me/share")
        created = client.post("/a/me/share", data={"csrf": csrf_of(page.text)})
        assert created.status_code == 200
        match = re.search(r"<code>http://127\.0\.0\.1:8722(/s/[A-Za-z0-9_-]+)</code>", created.text)
        assert match is not None
        return match.group(1), created.text

    def test_link_opens_the_dashboard_read_only(self, site: Site) -> None:
        """The link shows the dashboard and runs without login, with no operator navigation."""
        operator = site.client(password=Secret(PASSWORD), host=PUBLIC)
        token = csrf_of(operator.get("/login").text)
        operator.post("/login", data={"csrf": token, "password": PASSWORD})
        path, _ = self.make_link(operator)
        guest = site.client(password=Secret(PASSWORD), host=PUBLIC)
        r = guest.get(path)
        assert r.status_code == 200
        assert "Rosskopf loop" in r.text
        assert "/sources" not in r.text
        assert "Log out" not in r.text
        assert guest.get(path + "/charts/weekly.svg").status_code == 200
        run_id = site.run_ids()[-1]
        assert guest.get(f"{path}/runs/{run_id}").status_code == 200
        # ...and nothing of the operator's
        assert guest.get("/sources", follow_redirects=False).status_code == 303
        assert guest.get("/a/me", follow_redirects=False).status_code == 303

    def test_link_is_shown_once_and_revocable(self, site: Site) -> None:
        """The token is shown once; after revoking, the link is a 404."""
        client = site.client()
        path, _ = self.make_link(client)
        again = client.get("/a/me/share")
        assert path not in again.text
        link_id = re.search(r'name="link" value="(\d+)"', again.text)
        assert link_id is not None
        assert client.get(path).status_code == 200
        r = client.post(
            "/a/me/share/revoke", data={"csrf": csrf_of(again.text), "link": link_id.group(1)}
        )
        assert r.status_code == 200
        assert "revoked" in r.text
        assert client.get(path).status_code == 404
        assert client.get("/s/not-a-real-token-at-all").status_code == 404

    def test_link_only_opens_its_athlete(self, site: Site) -> None:
        """Another athlete's run is not reachable through a link."""
        with site.db.session() as session:
            other = repo.ensure_athlete(session, "anna")
            state = repo.ensure_sync_state(session, other, "anna/folder", "folder")
            activity = Activity(
                source="anna/folder",
                source_id="x.gpx",
                sport="run",
                start_time=NOW,
                distance_m=5000.0,
            )
            repo.save_batch(session, state, Batch(activities=[activity]), {}, ["run"], NOW)
            anna_run = session.query(ActivityRow).filter_by(source="anna/folder").one().run_id
        client = site.client()
        path, _ = self.make_link(client)
        assert client.get(f"{path}/runs/{anna_run}").status_code == 404


class TestWebhook:
    """Strava's push callback: the handshake, event shapes, effects, limits."""

    def test_validation_echoes_the_challenge(self, site: Site) -> None:
        """The matching verify token gets its challenge back as JSON."""
        r = site.client().get(
            "/strava/webhook",
            params={"hub.mode": "subscribe", "hub.challenge": "15f7d1a91c1f40f8a748fd134752feb3",
                    "hub.verify_token": VERIFY},
        )  # fmt: skip
        assert r.status_code == 200
        assert r.json() == {"hub.challenge": "15f7d1a91c1f40f8a748fd134752feb3"}

    def test_validation_refuses_wrong_requests(self, site: Site) -> None:
        """A wrong token is 403; a missing mode or challenge is 400; no token configured 404."""
        client = site.client()
        good = {"hub.mode": "subscribe", "hub.challenge": "abc", "hub.verify_token": VERIFY}
        assert (
            client.get("/strava/webhook", params={**good, "hub.verify_token": "x"}).status_code
            == 403
        )
        assert client.get("/strava/webhook", params={**good, "hub.mode": "x"}).status_code == 400
        assert (
            client.get("/strava/webhook", params={**good, "hub.challenge": ""}).status_code == 400
        )
        app = create_app(site.backend, WebOptions(), clock=lambda: NOW)
        assert TestClient(app).get("/strava/webhook", params=good).status_code == 404

    def test_create_makes_the_source_due_now(self, site: Site) -> None:
        """A new activity event answers 200 and leaves the athlete's Strava source due at once."""
        site.add_strava()
        before = site.strava_state()
        assert before is not None
        assert before.next_sync is not None
        assert before.next_sync > NOW
        r = site.client().post("/strava/webhook", json=event())
        assert r.status_code == 200
        after = site.strava_state()
        assert after is not None
        assert after.next_sync == NOW

    def test_event_of_another_subscription_is_ignored(self, site: Site) -> None:
        """With a subscription made here, an event naming another one changes nothing."""
        from hillsync.store import pages

        site.add_strava()
        with site.db.session() as session:
            pages.save_push_subscription(session, 4242, 999, "https://x/strava/webhook", NOW)
        r = site.client().post("/strava/webhook", json=event())  # subscription 120475
        assert r.status_code == 200
        state = site.strava_state()
        assert state is not None
        assert state.next_sync == NOW + timedelta(hours=6)
        site.client().post("/strava/webhook", json=event(subscription_id=999))
        state = site.strava_state()
        assert state is not None
        assert state.next_sync == NOW

    def test_update_of_a_stranger_changes_nothing(self, site: Site) -> None:
        """An event for a Strava athlete nobody here connected is acknowledged and ignored."""
        site.add_strava()
        r = site.client().post("/strava/webhook", json=event(owner_id=42, aspect_type="update"))
        assert r.status_code == 200
        state = site.strava_state()
        assert state is not None
        assert state.next_sync == NOW + timedelta(hours=6)

    def test_delete_removes_the_activity(self, site: Site) -> None:
        """A delete event marks the stored activity deleted and takes it out of its run."""
        site.add_strava()
        row = site.strava_activity()
        assert row is not None
        assert row.deleted_at is None
        assert row.run_id is not None
        r = site.client().post("/strava/webhook", json=event(aspect_type="delete", object_id=777))
        assert r.status_code == 200
        row = site.strava_activity()
        assert row is not None
        assert row.deleted_at is not None
        assert row.run_id is None

    def test_deauthorization_is_confirmed_by_a_sync(self, site: Site) -> None:
        """`authorized: false` makes the source due, so the sync confirms it with Strava
        (a forged event cannot delete anything); nothing is deleted by the event itself."""
        site.add_strava()
        r = site.client().post(
            "/strava/webhook",
            json=event(object_type="athlete", object_id=STRAVA_ATHLETE, aspect_type="update",
                       updates={"authorized": "false"}),
        )  # fmt: skip
        assert r.status_code == 200
        state = site.strava_state()
        assert state is not None
        assert state.next_sync == NOW
        assert site.strava_activity() is not None

    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            b"[1, 2]",
            b'{"object_type": "activity"}',
            b'{"aspect_type": "create", "event_time": 1, "object_id": "888", "object_type":'
            b' "activity", "owner_id": 1, "subscription_id": 1}',
            b'{"aspect_type": "explode", "event_time": 1, "object_id": 8, "object_type":'
            b' "activity", "owner_id": 1, "subscription_id": 1}',
            b'{"aspect_type": "create", "event_time": 1, "object_id": 8, "object_type":'
            b' "club", "owner_id": 1, "subscription_id": 1}',
            b'{"aspect_type": "update", "event_time": 1, "object_id": 8, "object_type":'
            b' "activity", "owner_id": 1, "subscription_id": 1, "updates": {"x": 1}}',
        ],
    )
    def test_only_strava_shapes(self, site: Site, body: bytes) -> None:
        """Anything but a Strava event is a 400 with a short JSON reason."""
        r = site.client().post(
            "/strava/webhook", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == 400
        assert set(r.json()) == {"error"}
        assert "Traceback" not in r.text

    def test_large_body_is_refused(self, site: Site) -> None:
        """A body far larger than any event is refused with 413."""
        r = site.client().post(
            "/strava/webhook", content=b"{" + b" " * 10_000 + b"}",
            headers={"content-type": "application/json"},
        )  # fmt: skip
        assert r.status_code == 413

    def test_rate_limited(self, site: Site) -> None:
        """Past 60 requests a minute from one address, the webhook answers 429; a minute later
        it answers again."""
        client = site.client()
        codes = [
            client.post("/strava/webhook", json=event(owner_id=1)).status_code for _ in range(61)
        ]
        assert codes[:60] == [200] * 60
        assert codes[60] == 429
        site.clock_now = NOW + timedelta(minutes=1, seconds=1)
        assert client.post("/strava/webhook", json=event(owner_id=1)).status_code == 200

    def test_no_login_needed(self, site: Site) -> None:
        """With a password set, Strava still reaches the webhook without a session."""
        client = site.client(password=Secret(PASSWORD), host=PUBLIC)
        assert client.post("/strava/webhook", json=event(owner_id=1)).status_code == 200
