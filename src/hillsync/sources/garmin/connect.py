"""Logging in to Garmin Connect once (with MFA), or importing a token file made elsewhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from garminconnect import Garmin, GarminConnectAuthenticationError

from hillsync.errors import (
    AuthRequired,
    RateLimited,
    SourceUnavailable,
    UsageError,
)
from hillsync.sources.garmin.errors import (
    CONNECT_COMMAND,
    GARMIN_ERRORS,
    http_status,
    is_transient,
    reason,
    translate,
)
from hillsync.sources.garmin.tokens import (
    TOKEN_FILE,
    disconnect_garmin,
    fresh_login_store,
    real_dir,
    write_tokens,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class GarminAccount:
    """Who the connected Garmin account belongs to."""

    remote_id: str | None
    display_name: str | None


def _account(garmin: Garmin) -> GarminAccount:
    pid = getattr(garmin, "profile_id", None)
    name = getattr(garmin, "display_name", None)
    return GarminAccount(
        remote_id=None if pid is None else str(pid),
        display_name=name if isinstance(name, str) and name else None,
    )


def verify_token_login(
    token_dir: Path, garmin_factory: Callable[..., Garmin], *, during: str
) -> GarminAccount:
    """Log in from the token folder (the library checks the profile endpoints).

    Raises AuthRequired, RateLimited or SourceUnavailable.
    """
    garmin = garmin_factory(retry_attempts=0)
    try:
        garmin.login(str(real_dir(token_dir)))
    except GARMIN_ERRORS as exc:
        raise translate(
            exc, source="garmin", command=CONNECT_COMMAND, now=datetime.now(UTC), during=during
        ) from None
    return _account(garmin)


#: MFA codes tried on one login session before the login starts over.
MFA_TRIES = 3


def _finish_mfa(
    garmin: Garmin, mfa_state: Any, mfa_prompt: Callable[[], str], say: Callable[[str], None]
) -> None:
    """Ask for the MFA code until Garmin takes one, at most MFA_TRIES times.

    Raises AuthRequired (no code, or every code refused) and what the library raises for
    anything but a refused code.
    """
    for attempt in range(1, MFA_TRIES + 1):
        code = mfa_prompt().strip()
        if not code:
            raise AuthRequired(
                "no MFA code given: run hillsync connect garmin again",
                source="garmin",
                command=CONNECT_COMMAND,
            )
        try:
            garmin.resume_login(mfa_state, code)
        except GarminConnectAuthenticationError:
            left = MFA_TRIES - attempt
            if not left:
                raise AuthRequired(
                    f"Garmin refused the MFA code {MFA_TRIES} times: run hillsync connect"
                    " garmin again for a new code",
                    source="garmin",
                    command=CONNECT_COMMAND,
                ) from None
            say(f"Garmin refused that MFA code; try again ({left} left)")
            continue
        return


def connect_garmin(
    token_dir: Path,
    *,
    email: str | None,
    password_prompt: Callable[[], str],
    mfa_prompt: Callable[[], str],
    environ: Mapping[str, str],
    garmin_factory: Callable[..., Garmin] = Garmin,
    say: Callable[[str], None] = lambda _line: None,
) -> GarminAccount:
    """Log in to Garmin Connect once and keep garminconnect's token file in `token_dir`.

    The email comes from `email`, else HILLSYNC_GARMIN_EMAIL; the password from
    HILLSYNC_GARMIN_PASSWORD, else `password_prompt()`. The MFA code is asked for only
    when Garmin wants one, up to MFA_TRIES times on the same login session (a mistyped code
    does not cost a new login); `say` tells the runner a code was refused. The password is
    never written anywhere; GARMINTOKENS in the environment is never read. The saved tokens are
    then verified with a token login, which is what every sync does.

    Raises UsageError (no email), AuthRequired (wrong password, MFA code refused),
    RateLimited (Garmin refuses logins from this network for now) or SourceUnavailable.
    """
    email = email or environ.get("HILLSYNC_GARMIN_EMAIL") or None
    if not email:
        raise UsageError(
            "connect garmin needs the account's email: pass --email or set HILLSYNC_GARMIN_EMAIL"
        )
    password = environ.get("HILLSYNC_GARMIN_PASSWORD") or password_prompt()
    if not password:
        raise UsageError("connect garmin needs the account's password")
    garmin = garmin_factory(email=email, password=password, return_on_mfa=True)
    del password
    now = datetime.now(UTC)
    try:
        # A token path that holds nothing: a reconnect must log in afresh, not reuse tokens
        # that were refused (nor GARMINTOKENS, which the library reads when given no path).
        status, mfa_state = garmin.login(fresh_login_store(token_dir))
        if status == "needs_mfa":
            _finish_mfa(garmin, mfa_state, mfa_prompt, say)
        tokens = garmin.client.dumps()
    except GARMIN_ERRORS as exc:
        err = translate(exc, source="garmin", command=CONNECT_COMMAND, now=now, during="at login")
        if isinstance(err, RateLimited):
            raise RateLimited(
                "Garmin is refusing logins from this network for now; try later or import a "
                "token file made on another machine with hillsync connect garmin --tokens FILE",
                resume_at=err.resume_at,
                source="garmin",
            ) from None
        if isinstance(err, AuthRequired):
            raise AuthRequired(
                "Garmin refused the login: check the email, the password and the MFA code, "
                "then run hillsync connect garmin again",
                source="garmin",
                command=CONNECT_COMMAND,
            ) from None
        http = http_status(exc)
        if http == 403:
            what = "Garmin blocked the login from this network or client (HTTP 403)"
        elif is_transient(exc):
            what = f"Garmin Connect could not be reached at login ({reason(exc)})"
        else:
            what = f"the Garmin login failed ({reason(exc)})"
        raise SourceUnavailable(
            f"{what}; try again later, or import a token file made on another machine "
            "with hillsync connect garmin --tokens FILE",
            source="garmin",
        ) from None
    write_tokens(token_dir, tokens.encode())
    account = verify_token_login(token_dir, garmin_factory, during="verifying the new login")
    log.info("garmin_connected", account=account.display_name)
    return account


def import_garmin_tokens(
    token_file: Path, token_dir: Path, *, garmin_factory: Callable[..., Garmin] = Garmin
) -> GarminAccount:
    """Copy a garminconnect token file made elsewhere into `token_dir`, then verify it.

    `token_file` is the JSON file or the folder holding garmin_tokens.json. A token file
    Garmin refuses is removed again, so the account does not look connected.

    Raises ConfigError (the file cannot be read), AuthRequired (not a token file, or
    refused), RateLimited or SourceUnavailable.
    """
    src = token_file / TOKEN_FILE if token_file.is_dir() else token_file
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the token file {src}: {exc.strerror}") from None
    write_tokens(token_dir, data)
    try:
        account = verify_token_login(token_dir, garmin_factory, during="verifying the tokens")
    except AuthRequired:
        disconnect_garmin(token_dir)
        raise AuthRequired(
            "Garmin refused the imported tokens: make a fresh token file, or run "
            "hillsync connect garmin",
            source="garmin",
            command=CONNECT_COMMAND,
        ) from None
    log.info("garmin_tokens_imported", account=account.display_name)
    return account
