"""`hillsync connect` and `disconnect` through cli.main, with the APIs mocked over HTTP."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses

import helpers
from test_garmin import ACCESS_TOKEN as GARMIN_ACCESS
from test_garmin import REFRESH_TOKEN, SETTINGS_URL, SOCIAL_URL, add_profile, token_json

pytestmark = pytest.mark.usefixtures("garmin_offline")

TOKEN_URL = "https://www.strava.com/oauth/token"
REVOKE_URL = "https://www.strava.com/oauth/revoke"
DEAUTH_URL = "https://www.strava.com/oauth/deauthorize"
EXCHANGE = json.loads(
    (Path(__file__).parent / "data" / "strava" / "oauth_exchange.json").read_text()
)
CLIENT_SECRET = "CLIENT-SECRET-connect-0f1e2d3c4b5a"
SECRET_ENV = "HILLSYNC_TEST_STRAVA_SECRET"


class Cli(helpers.Cli):
    """The CLI harness with a config holding a Strava application (secret from the env)."""

    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
        super().__init__(tmp, capsys)
        self.env[SECRET_ENV] = CLIENT_SECRET
        self.write_strava_config(strava=True)

    def write_strava_config(self, *, strava: bool) -> None:
        text = f'[database]\nurl = "sqlite:///{self.tmp / "hillsync.db"}"\n'
        if strava:
            text += f'\n[sources.strava]\nclient_id = 4242\nclient_secret = "env:{SECRET_ENV}"\n'
        self.write_config(text)

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.json("status")
        return doc

    @property
    def strava_tokens(self) -> Path:
        return self.state_dir / "tokens" / "me" / "strava.json"

    @property
    def garmin_tokens(self) -> Path:
        return self.state_dir / "tokens" / "me" / "garmin" / "garmin_tokens.json"


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path, capsys)


class TestConnectStrava:
    """`connect strava --no-browser --code CODE` and `disconnect strava`."""

    def test_code_connects(
        self, cli: Cli, rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Exit 0, the account is listed, tokens 0600 in 0700, no secret in any output."""
        rsps.add(responses.POST, TOKEN_URL, json=EXCHANGE)
        code, out, err = cli("-v", "connect", "strava", "--no-browser", "--code", "abc123")
        assert code == 0, err
        assert "Anna Berg" in out
        assert "code=abc123" in str(rsps.calls[0].request.body)
        stored = json.loads(cli.strava_tokens.read_text())
        assert stored["refresh_token"] == EXCHANGE["refresh_token"]
        assert stat.S_IMODE(cli.strava_tokens.stat().st_mode) == 0o600
        assert stat.S_IMODE(cli.strava_tokens.parent.stat().st_mode) == 0o700
        status = cli.status()
        assert [(s["name"], s["kind"], s["state"]) for s in status["sources"]] == [
            ("strava", "strava", "never_synced")
        ]
        seen = out + err + caplog.text
        for secret in (CLIENT_SECRET, EXCHANGE["access_token"], EXCHANGE["refresh_token"]):
            assert secret not in seen

    def test_without_client_id(self, cli: Cli) -> None:
        """Without [sources.strava] the command says which key is missing, exit 2."""
        cli.write_strava_config(strava=False)
        code, _out, err = cli("connect", "strava", "--no-browser", "--code", "abc123")
        assert code == 2
        assert "sources.strava.client_id" in err
        assert "Traceback" not in err
        assert not cli.strava_tokens.exists()

    def test_refused_code(self, cli: Cli, rsps: responses.RequestsMock) -> None:
        """A refused code is one line on stderr, exit 3, no account and no traceback."""
        rsps.add(
            responses.POST,
            TOKEN_URL,
            status=400,
            json={"message": "Bad Request", "errors": [{"resource": "AuthorizationCode"}]},
        )
        code, _out, err = cli("connect", "strava", "--no-browser", "--code", "used")
        assert code == 3
        assert len(err.strip().splitlines()) == 1
        assert "Traceback" not in err
        assert cli.status()["sources"] == []

    def test_disconnect(self, cli: Cli, rsps: responses.RequestsMock) -> None:
        """`disconnect strava` revokes, deletes the token file and forgets the account."""
        rsps.add(responses.POST, TOKEN_URL, json=EXCHANGE)
        rsps.add(responses.POST, REVOKE_URL, status=404, json={"message": "Record Not Found"})
        rsps.add(responses.POST, DEAUTH_URL, json={})
        assert cli("connect", "strava", "--no-browser", "--code", "abc123")[0] == 0
        code, out, err = cli("disconnect", "strava")
        assert code == 0, err
        assert "disconnected strava for me: access revoked on Strava" in out
        assert "deleted 0 Strava activities" in out
        assert not cli.strava_tokens.exists()
        assert cli.status()["sources"] == []
        deauth = [c for c in rsps.calls if c.request.url == DEAUTH_URL]
        assert len(deauth) == 1


class TestConnectGarmin:
    """`connect garmin --tokens FILE` imports a token file made elsewhere."""

    def test_import_records_account(
        self, cli: Cli, rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The tokens are verified, copied 0600 and the account is listed; no token is shown."""
        add_profile(rsps)
        made = cli.tmp / "elsewhere" / "garmin_tokens.json"
        made.parent.mkdir()
        made.write_text(token_json())
        code, out, err = cli("-v", "connect", "garmin", "--tokens", str(made))
        assert code == 0, err
        assert "hill-runner" in out
        assert [c.request.url for c in rsps.calls] == [SOCIAL_URL, SETTINGS_URL]
        assert json.loads(cli.garmin_tokens.read_text())["di_refresh_token"] == REFRESH_TOKEN
        assert stat.S_IMODE(cli.garmin_tokens.stat().st_mode) == 0o600
        assert stat.S_IMODE(cli.garmin_tokens.parent.stat().st_mode) == 0o700
        assert [(s["name"], s["kind"]) for s in cli.status()["sources"]] == [("garmin", "garmin")]
        seen = out + err + caplog.text
        assert REFRESH_TOKEN not in seen
        assert GARMIN_ACCESS not in seen

    @pytest.mark.parametrize(
        ("content", "codes"),
        [('{"oauth_token": "x"}', {3}), ("not json at all", {2, 3}), (None, {2})],
        ids=["garth-file", "garbage", "missing"],
    )
    def test_bad_token_file(self, cli: Cli, content: str | None, codes: set[int]) -> None:
        """A bad or missing token file is one line on stderr, exit 2 or 3, no account."""
        path = cli.tmp / "oauth1_token.json"
        if content is not None:
            path.write_text(content)
        code, _out, err = cli("connect", "garmin", "--tokens", str(path))
        assert code in codes, err
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith("hillsync: ")
        assert "Traceback" not in err
        assert not cli.garmin_tokens.exists()
        assert cli.status()["sources"] == []

    def test_disconnect(self, cli: Cli, rsps: responses.RequestsMock) -> None:
        """`disconnect garmin` deletes the token file and forgets the account."""
        add_profile(rsps)
        made = cli.tmp / "garmin_tokens.json"
        made.write_text(token_json())
        assert cli("connect", "garmin", "--tokens", str(made))[0] == 0
        code, _out, err = cli("disconnect", "garmin")
        assert code == 0, err
        assert not cli.garmin_tokens.exists()
        assert cli.status()["sources"] == []


ANNA_ENV = "HILLSYNC_TEST_ANNA_SECRET"
ANNA_SECRET = "ANNA-SECRET-5151-aabbccddeeff"


class TestSecondAthleteOwnApplication:
    """A second athlete connects through their own Strava application."""

    def test_connect_and_status(self, cli: Cli, rsps: responses.RequestsMock) -> None:
        """Each athlete's exchange uses their application; status names it; no secret shows."""
        cli.write_strava_config(strava=True)
        with cli.config.open("a") as f:
            f.write("\n[athletes.anna.sources.strava]\nclient_id = 5151\n")
            f.write(f'client_secret = "env:{ANNA_ENV}"\n')
        cli.env[ANNA_ENV] = ANNA_SECRET
        rsps.add(responses.POST, TOKEN_URL, json=EXCHANGE)
        outputs = []
        for args in ([], ["--athlete", "anna"]):
            code, out, err = cli("connect", "strava", *args, "--no-browser", "--code", "abc123")
            assert code == 0, err
            outputs += [out, err]
        assert "for anna (application 5151)" in outputs[2]
        sent = [parse_qs(str(c.request.body)) for c in rsps.calls if c.request.url == TOKEN_URL]
        assert [(s["client_id"], s["client_secret"]) for s in sent] == [
            (["4242"], [CLIENT_SECRET]),
            (["5151"], [ANNA_SECRET]),
        ]
        sources = {(s["name"], s["application"]) for s in cli.status()["sources"]}
        assert sources == {("strava", 4242), ("anna/strava", 5151)}
        code, out, err = cli("status")
        assert code == 0, err
        assert "anna/strava uses Strava application 5151" in out
        for text in [*outputs, out, err]:
            assert CLIENT_SECRET not in text
            assert ANNA_SECRET not in text
            assert EXCHANGE["refresh_token"] not in text
