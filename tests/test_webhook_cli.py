"""`hillsync webhook subscribe | show | unsubscribe` through stravalib, HTTP mocked."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from responses import matchers

from hillsync.cli import main
from hillsync.store import pages
from hillsync.store.db import open_database

URL = "https://www.strava.com/api/v3/push_subscriptions"
SECRET = "app-client-secret-0123456789"
VERIFY = "push-verify-token-abcdef"


class Env:
    """A config with a Strava application and a verify token, and a way to run commands."""

    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp = tmp
        self.capsys = capsys
        self.db_url = f"sqlite:///{tmp / 'h.db'}"
        self.config = tmp / "config.toml"
        self.config.write_text(
            f'[database]\nurl = "{self.db_url}"\n'
            "[sources.strava]\nclient_id = 4242\n"
            'client_secret = "env:HS_SECRET"\nwebhook_verify_token = "env:HS_VERIFY"\n'
        )
        self.env = {
            "XDG_STATE_HOME": str(tmp / "state"),
            "HOME": str(tmp),
            "HS_SECRET": SECRET,
            "HS_VERIFY": VERIFY,
        }

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = main(["--config", str(self.config), *args], environ=self.env)
        out, err = self.capsys.readouterr()
        return code, out, err

    def stored(self) -> set[int]:
        db = open_database(self.db_url)
        try:
            with db.session(readonly=True) as session:
                return pages.push_client_ids(session)
        finally:
            db.close()


@pytest.fixture
def env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Env:
    return Env(tmp_path, capsys)


class TestWebhookCommand:
    """The application's one push subscription is created, listed and deleted."""

    def test_subscribe(self, env: Env, rsps: responses.RequestsMock) -> None:
        """subscribe posts the callback and verify token in the body and remembers the id."""
        rsps.post(
            URL,
            json={"id": 120475, "callback_url": "https://hills.example.org/strava/webhook",
                  "created_at": "2026-12-06T10:00:00Z", "updated_at": "2026-12-06T10:00:00Z"},
            match=[matchers.urlencoded_params_matcher({
                "client_id": "4242", "client_secret": SECRET, "verify_token": VERIFY,
                "callback_url": "https://hills.example.org/strava/webhook",
            })],
        )  # fmt: skip
        code, out, err = env("webhook", "subscribe", "https://hills.example.org")
        assert code == 0, err
        assert "120475" in out
        assert "6 hours" in out
        assert SECRET not in out + err
        assert VERIFY not in out + err
        assert urlsplit(rsps.calls[0].request.url).query == ""  # the secret stays out of the URL
        assert env.stored() == {4242}

    def test_show_and_unsubscribe(self, env: Env, rsps: responses.RequestsMock) -> None:
        """show lists the subscription; unsubscribe deletes it and forgets it here."""
        listing = [{"id": 7, "callback_url": "https://hills.example.org/strava/webhook"}]
        rsps.get(URL, json=listing)
        code, out, _ = env("webhook", "show")
        assert code == 0
        assert "subscription 7: https://hills.example.org/strava/webhook" in out
        assert env.stored() == {4242}
        query = parse_qs(urlsplit(str(rsps.calls[0].request.url)).query)
        assert query["client_id"] == ["4242"]
        rsps.delete(f"{URL}/7", status=204)
        code, out, _ = env("webhook", "unsubscribe")
        assert code == 0
        assert "unsubscribed 7" in out
        assert env.stored() == set()

    def test_strava_refuses_the_callback(self, env: Env, rsps: responses.RequestsMock) -> None:
        """When Strava cannot verify the callback, its reason is shown in one line, exit 3."""
        rsps.post(
            URL,
            status=400,
            json={"message": "Bad Request",
                  "errors": [{"resource": "PushSubscription", "field": "callback url",
                              "code": "not verifiable"}]},
        )  # fmt: skip
        code, _out, err = env("webhook", "subscribe", "https://hills.example.org")
        assert code == 3
        assert "callback url not verifiable" in err
        assert "Traceback" not in err
        assert env.stored() == set()

    def test_needs_https_and_a_verify_token(self, env: Env) -> None:
        """A plain-http public address, or no verify token, is a config error (exit 2)."""
        code, _, err = env("webhook", "subscribe", "http://hills.example.org")
        assert code == 2
        assert "https://" in err
        env.config.write_text(
            f'[database]\nurl = "{env.db_url}"\n[sources.strava]\nclient_id = 4242\n'
            'client_secret = "env:HS_SECRET"\n'
        )
        code, _, err = env("webhook", "subscribe", "https://hills.example.org")
        assert code == 2
        assert "webhook_verify_token" in err
