"""Connecting and disconnecting a Strava account (OAuth on 127.0.0.1, or a pasted redirect)."""

from __future__ import annotations

import contextlib
import json
import secrets
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import requests
import structlog
from stravalib import exc as strava_exc
from stravalib.protocol import Scope

from hillsync.errors import AuthRequired, ConfigError, SourceUnavailable
from hillsync.model import Secret
from hillsync.paths import write_private_file
from hillsync.sources.oauth import RedirectListener
from hillsync.sources.strava.client import error_codes, fault_status, make_client, new_session
from hillsync.sources.strava.mapping import KIND
from hillsync.sources.strava.tokens import Tokens, read_tokens

log = structlog.get_logger(__name__)


SCOPE = "activity:read_all"
_SCOPES: list[Scope] = ["read", "activity:read_all"]
DEFAULT_PORT = 8721
#: A pending authorization (the `state` of a printed URL) is accepted this long.
PENDING_TTL = timedelta(hours=1)


@dataclass(frozen=True)
class ConnectedAccount:
    """The Strava account a `connect` linked: its athlete id, name and granted scope."""

    remote_id: str
    display_name: str | None
    scope: str


# --- connect / disconnect ------------------------------------------------------------------


def _pending_path(token_path: Path) -> Path:
    return token_path.with_name(token_path.name + ".pending")


def _code_from_redirect(redirect_url: str, token_path: Path) -> tuple[str, str]:
    """The code and granted scope of a pasted redirect URL, after checking its state.

    Raises AuthRequired (denied, state mismatch, nothing pending) or ConfigError (no code).
    """
    params = dict(parse_qsl(urlsplit(redirect_url).query, keep_blank_values=True))
    try:
        pending = json.loads(_pending_path(token_path).read_bytes())
        created = datetime.fromisoformat(pending["created"])
        expected = str(pending["state"])
    except (OSError, ValueError, KeyError, TypeError):
        raise AuthRequired(
            "no strava authorization is pending here: run hillsync connect strava --no-browser"
            " first, then paste the address the browser ends on",
            source=KIND,
        ) from None
    if datetime.now(UTC) - created > PENDING_TTL:
        raise AuthRequired(
            "the pending strava authorization is too old: run hillsync connect strava again",
            source=KIND,
        )
    if not secrets.compare_digest(params.get("state", ""), expected):
        raise AuthRequired(
            "the pasted address does not match the pending authorization (state mismatch): refused",
            source=KIND,
        )
    return _check_params(params)


def _check_params(params: Mapping[str, str]) -> tuple[str, str]:
    if params.get("error"):
        raise AuthRequired(
            "the strava authorization was denied: run hillsync connect strava again and"
            " press Authorize",
            source=KIND,
        )
    code = params.get("code")
    if not code:
        raise ConfigError("the redirect address holds no authorization code")
    scope = params.get("scope", "")
    if SCOPE not in scope.split(","):
        raise AuthRequired(
            f"strava granted '{scope}' without {SCOPE}: run hillsync connect strava again"
            " and tick 'View data about your private activities'",
            source=KIND,
        )
    return code, scope


def connect_strava(
    client_id: int,
    client_secret: Secret,
    token_path: Path,
    *,
    code: str | None = None,
    redirect_url: str | None = None,
    open_browser: bool = True,
    port: int = DEFAULT_PORT,
    timeout_s: float = 300,
    say: Callable[[str], None] = print,
    session: requests.Session | None = None,
) -> ConnectedAccount:
    """Link a Strava account: authorize, exchange the code, store the tokens (0600).

    Without `code` or `redirect_url`, prints (and with `open_browser` opens) the
    authorize URL and waits on 127.0.0.1:`port` for the one redirect; the URL's `state`
    is also saved so that the address the browser ends on can be pasted later with
    `redirect_url`. A bare `code` cannot be checked for state or scope.

    Raises ConfigError (both code and URL, bad client id/secret), AuthRequired (denied,
    state mismatch, scope without activity:read_all, timeout, code refused) or
    SourceUnavailable (Strava unreachable).
    """
    if code and redirect_url:
        raise ConfigError("give either --code or --redirect-url, not both")
    session = session or new_session()
    client = make_client(session, None, None)
    scope = ""
    if redirect_url:
        code, scope = _code_from_redirect(redirect_url, token_path)
    elif code:
        say("note: a bare code does not show the granted scope; hillsync needs activity:read_all")
    else:
        state = secrets.token_urlsafe(24)
        try:
            listener = RedirectListener(state, port=port)
        except OSError as e:
            raise ConfigError(
                f"cannot listen on 127.0.0.1:{port} ({e.strerror}): free the port, or use"
                " --no-browser with --redirect-url or --code"
            ) from None
        with listener:
            url = client.authorization_url(
                client_id=client_id,
                redirect_uri=listener.redirect_uri,
                scope=_SCOPES,
                state=state,
            )
            write_private_file(
                _pending_path(token_path),
                json.dumps({"state": state, "created": datetime.now(UTC).isoformat()}).encode(),
            )
            say(f"Open this address to let hillsync read your Strava activities:\n{url}")
            if not open_browser:
                say(
                    "On another machine, the browser ends on an address that does not load:"
                    " copy it and run  hillsync connect strava --redirect-url 'ADDRESS'"
                )
            elif not webbrowser.open(url):
                say("(no browser could be opened: open the address yourself)")
            params = listener.wait(timeout_s)
        code, scope = _check_params(params)
    try:
        exchanged = client.exchange_code_for_token(
            client_id=client_id,
            client_secret=client_secret.reveal(),
            code=code,
            return_athlete=True,
        )
    except strava_exc.ApplicationInactive:
        raise AuthRequired(
            "the Strava API application is inactive: its owner needs a Strava subscription"
            " (reactivate it at strava.com/settings/api)",
            source=KIND,
        ) from None
    except requests.HTTPError as e:
        status = fault_status(e)
        if any(err.get("resource") == "Application" for err in error_codes(e)) or status == 401:
            raise ConfigError(
                "strava refused the client id or secret: check sources.strava.client_id and"
                " client_secret"
            ) from None
        raise AuthRequired(
            f"strava refused the authorization code (HTTP {status}; it may be used or"
            " expired): run hillsync connect strava again",
            source=KIND,
        ) from None
    except requests.RequestException as e:
        raise SourceUnavailable(
            f"strava is unreachable ({type(e).__name__}): try again later", source=KIND
        ) from None
    info, athlete = exchanged if isinstance(exchanged, tuple) else (exchanged, None)
    athlete_id = str(getattr(athlete, "id", "") or "")
    names = [getattr(athlete, "firstname", None), getattr(athlete, "lastname", None)]
    display = " ".join(n for n in names if n) or None
    tokens = Tokens(
        access_token=Secret(info["access_token"]),
        refresh_token=Secret(info["refresh_token"]),
        expires_at=int(info["expires_at"]),
        athlete_id=athlete_id,
        scope=scope,
        display_name=display,
    )
    write_private_file(token_path, tokens.to_json())
    with contextlib.suppress(FileNotFoundError):
        _pending_path(token_path).unlink()
    log.info("strava_connected", athlete_id=athlete_id, scope=scope)
    return ConnectedAccount(remote_id=athlete_id, display_name=display, scope=scope)


def disconnect_strava(
    client_id: int,
    client_secret: Secret,
    token_path: Path,
    *,
    session: requests.Session | None = None,
) -> None:
    """Revoke the app's access (best effort) and delete the token file.

    Raises OSError only when the token file exists but cannot be deleted.
    """
    del client_id, client_secret  # deauthorization needs only the access token
    try:
        tokens = read_tokens(token_path, "hillsync connect strava")
    except AuthRequired:
        tokens = None
    if tokens is not None:
        client = make_client(session or new_session(), tokens.access_token.reveal(), None)
        try:
            client.deauthorize()
        except requests.RequestException as e:
            log.warning("strava_deauthorize_failed", error=type(e).__name__)
    for path in (token_path, _pending_path(token_path)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    log.info("strava_disconnected")
