"""Connecting and disconnecting a Strava account (OAuth on 127.0.0.1, or a pasted redirect)."""

from __future__ import annotations

import contextlib
import json
import secrets
import webbrowser
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import requests
import structlog
from stravalib import exc as strava_exc
from stravalib.client import Client
from stravalib.protocol import Scope

from hillsync.errors import AuthRequired, ConfigError, RateLimited, SourceUnavailable
from hillsync.model import Secret
from hillsync.paths import write_private_file
from hillsync.sources.oauth import NoRedirect, RedirectListener
from hillsync.sources.strava.client import (
    STRAVA_API_BASE,
    error_codes,
    fault_status,
    make_client,
    minutes_until_reset,
    new_session,
    oauth_url,
)
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

    def describe(self) -> str:
        """The athlete's name, else their Strava id."""
        return self.display_name or self.remote_id


@dataclass(frozen=True)
class StravaApp:
    """The Strava API application an athlete connects through, and where its API is.

    `key` is the config table it comes from (`sources.strava`, or
    `athletes.NAME.sources.strava`), for messages that say what to fix.
    """

    client_id: int
    client_secret: Secret = field(repr=False)
    api_base: str = STRAVA_API_BASE
    key: str = "sources.strava"


@dataclass(frozen=True)
class Disconnected:
    """What `disconnect_strava` did: whether Strava confirmed the revocation, and how."""

    revoked: bool
    endpoint: str | None = None


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
    app: StravaApp,
    token_path: Path,
    *,
    code: str | None = None,
    redirect_url: str | None = None,
    open_browser: bool = True,
    port: int = DEFAULT_PORT,
    timeout_s: float = 300,
    say: Callable[[str], None] = print,
    session: requests.Session | None = None,
    athlete: str = "me",
    command: str = "hillsync connect strava",
    others_on_app: Sequence[str] = (),
) -> ConnectedAccount:
    """Link a Strava account: authorize, exchange the code, store the tokens (0600).

    Without `code` or `redirect_url`, prints (and with `open_browser` opens) the
    authorize URL and waits on 127.0.0.1:`port` for the one redirect; the browser's page
    is answered only after the scope check and the token exchange, with their outcome.
    The URL's `state` is also saved so that the address the browser ends on can be pasted
    later with `redirect_url`. A bare `code` cannot be checked for state or scope.
    `others_on_app` names the athletes this application already connects here: when no
    redirect comes, the message then says that Strava's athlete limit is the likely cause.

    Raises ConfigError (both code and URL, bad client id/secret, bad api_base),
    AuthRequired (denied, state mismatch, scope without activity:read_all, no redirect,
    code refused, inactive application), RateLimited (Strava answered 429) or
    SourceUnavailable (Strava unreachable).
    """
    if code and redirect_url:
        raise ConfigError("give either --code or --redirect-url, not both")
    session = session or new_session()
    client = make_client(session, None, None, app.api_base)

    def finish(the_code: str, scope: str) -> ConnectedAccount:
        account = _exchange(client, app, the_code, scope, token_path, command)
        with contextlib.suppress(FileNotFoundError):
            _pending_path(token_path).unlink()
        return account

    if redirect_url:
        return finish(*_code_from_redirect(redirect_url, token_path))
    if code:
        say("note: a bare code does not show the granted scope; hillsync needs activity:read_all")
        return finish(code, "")
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
            client_id=app.client_id,
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
                f" copy it and run  {command} --redirect-url 'ADDRESS'"
            )
        elif not webbrowser.open(url):
            say("(no browser could be opened: open the address yourself)")

        def on_redirect(params: Mapping[str, str]) -> tuple[ConnectedAccount, str]:
            account = finish(*_check_params(params))
            return account, f"Strava athlete {account.describe()} is connected for {athlete}."

        try:
            return listener.complete(timeout_s, on_redirect)
        except NoRedirect as e:
            raise _why_no_redirect(client, app, e, athlete, command, others_on_app) from None


def _exchange(
    client: Client, app: StravaApp, code: str, scope: str, token_path: Path, command: str
) -> ConnectedAccount:
    """Exchange the code for tokens and store them.

    Raises ConfigError, AuthRequired, RateLimited or SourceUnavailable.
    """
    try:
        exchanged = client.exchange_code_for_token(
            client_id=app.client_id,
            client_secret=app.client_secret.reveal(),
            code=code,
            return_athlete=True,
        )
    except strava_exc.ApplicationInactive:
        raise _inactive(app, command) from None
    except requests.HTTPError as e:
        status = fault_status(e)
        if status == 429:
            minutes = minutes_until_reset(e.response, datetime.now(UTC))
            raise RateLimited(
                f"Strava is rate limiting; try again in {minutes} minutes",
                resume_at=datetime.now(UTC) + timedelta(minutes=minutes),
                source=KIND,
            ) from None
        if any(err.get("resource") == "Application" for err in error_codes(e)) or status == 401:
            raise ConfigError(
                f"strava refused the client id or secret: check {app.key}.client_id and"
                " client_secret"
            ) from None
        raise AuthRequired(
            f"strava refused the authorization code (HTTP {status}; it may be used or"
            f" expired): run {command} again",
            source=KIND,
            command=command,
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
        client_id=app.client_id,
    )
    write_private_file(token_path, tokens.to_json())
    log.info("strava_connected", athlete_id=athlete_id, scope=scope, client_id=app.client_id)
    return ConnectedAccount(remote_id=athlete_id, display_name=display, scope=scope)


def _inactive(app: StravaApp, command: str) -> AuthRequired:
    return AuthRequired(
        f"the Strava API application {app.client_id} is inactive (403 Application Inactive):"
        " its owner needs a paid Strava subscription, then reactivates it at"
        f" https://www.strava.com/settings/api; or give this athlete their own application"
        f" ({app.key}); then run {command}",
        source=KIND,
        command=command,
    )


#: A code Strava cannot know: the answer to exchanging it says whether the application works.
_PROBE_CODE = "hillsync-application-probe"


def application_inactive(client: Client, app: StravaApp) -> bool | None:
    """Whether Strava says the application is inactive (403 Application Inactive).

    Asks with a code that cannot be valid: an active application gets 400 (bad code).
    None when the answer says neither (Strava unreachable, another error). Raises nothing.
    """
    try:
        client.exchange_code_for_token(
            client_id=app.client_id, client_secret=app.client_secret.reveal(), code=_PROBE_CODE
        )
    except strava_exc.ApplicationInactive:
        return True
    except requests.HTTPError as e:
        return False if fault_status(e) == 400 else None
    except requests.RequestException:
        return None
    return False


def _why_no_redirect(
    client: Client,
    app: StravaApp,
    timeout: NoRedirect,
    athlete: str,
    command: str,
    others_on_app: Sequence[str],
) -> AuthRequired:
    """The timeout's message, with the reason Strava did not redirect when it can be told."""
    if application_inactive(client, app):
        return _inactive(app, command)
    own = f"[athletes.{athlete}.sources.strava] client_id and client_secret"
    if others_on_app:
        who = ", ".join(others_on_app)
        return AuthRequired(
            f"no answer from the browser: Strava most likely showed 'Limit of connected"
            f" athletes exceeded'. Application {app.client_id} already connects {who} here,"
            " and a Strava application connects 1 athlete (10 once its owner raises the limit"
            f" at https://www.strava.com/settings/api). Give {athlete} their own application"
            f" ({own}) or raise the limit, then run {command}",
            source=KIND,
            command=command,
        )
    return AuthRequired(
        f"{timeout}. If Strava showed 'Limit of connected athletes exceeded', application"
        f" {app.client_id} already connects its maximum (1 athlete, 10 once its owner raises"
        f" the limit): give {athlete} their own application ({own}) or raise the limit",
        source=KIND,
        command=command,
    )


#: Strava's announced revocation endpoint first, then today's.
_REVOKE_ENDPOINTS = ("revoke", "deauthorize")
#: Answers that mean "this endpoint does not exist here (yet)": try the next one.
_NO_SUCH_ENDPOINT = frozenset({404, 405, 410, 501})


def revoke(client: Client) -> str | None:
    """Revoke the client's access token: `oauth/revoke`, else `oauth/deauthorize`.

    Returns the endpoint that accepted it, or None when none did (each failure is
    logged by status only). Raises nothing.
    """
    for name in _REVOKE_ENDPOINTS:
        try:
            client.protocol.post(oauth_url(client, name))
        except requests.HTTPError as e:
            status = fault_status(e)
            log.info("strava_revoke_refused", endpoint=name, status=status)
            if status in _NO_SUCH_ENDPOINT:
                continue
            return None
        except requests.RequestException as e:
            log.warning("strava_revoke_failed", endpoint=name, error=type(e).__name__)
            return None
        return name
    return None


def disconnect_strava(
    app: StravaApp | None,
    token_path: Path,
    *,
    session: requests.Session | None = None,
    now: datetime | None = None,
) -> Disconnected:
    """Revoke the application's access (best effort) and delete the token file.

    An access token that has expired is refreshed first (with `app`), so that the
    revocation can be sent at all. Raises OSError only when the token file exists but
    cannot be deleted.
    """
    try:
        tokens = read_tokens(token_path, "hillsync connect strava")
    except AuthRequired:
        tokens = None
    result = Disconnected(revoked=False)
    if tokens is not None:
        api_base = app.api_base if app is not None else STRAVA_API_BASE
        client = make_client(session or new_session(), tokens.access_token.reveal(), None, api_base)
        moment = now or datetime.now(UTC)
        if app is not None and tokens.expires_at <= int(moment.timestamp()) + 60:
            _refresh_for_revoke(client, app, tokens)
        endpoint = revoke(client)
        result = Disconnected(revoked=endpoint is not None, endpoint=endpoint)
    for path in (token_path, _pending_path(token_path)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    log.info("strava_disconnected", revoked=result.revoked, endpoint=result.endpoint)
    return result


def _refresh_for_revoke(client: Client, app: StravaApp, tokens: Tokens) -> None:
    try:
        info = client.refresh_access_token(
            client_id=app.client_id,
            client_secret=app.client_secret.reveal(),
            refresh_token=tokens.refresh_token.reveal(),
        )
    except (requests.RequestException, KeyError, TypeError, ValueError) as e:
        log.info("strava_refresh_before_revoke_failed", error=type(e).__name__)
        return
    access = info.get("access_token")
    if isinstance(access, str) and access:
        client.access_token = access
