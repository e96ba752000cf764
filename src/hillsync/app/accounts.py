"""`hillsync connect` and `hillsync disconnect`: linking and forgetting remote accounts.

The interactive parts (printing the authorize URL, prompting for a password or MFA code)
are callbacks, so the CLI and the web app each bring their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hillsync import paths
from hillsync.app.context import AppContext
from hillsync.config import DEFAULT_ATHLETE
from hillsync.errors import ConfigError
from hillsync.model import SourceKind
from hillsync.registry import reconnect_command, source_full_name, strava_app

if TYPE_CHECKING:
    from hillsync.store.deletion import Deleted


@dataclass(frozen=True)
class Connected:
    """An account linked to an athlete."""

    athlete: str
    kind: SourceKind
    remote_id: str | None
    display_name: str | None
    #: The Strava application (client id) it connected through; None for other kinds.
    application: int | None = None


def record_account(
    ctx: AppContext,
    athlete: str,
    kind: SourceKind,
    *,
    remote_id: str | None,
    display_name: str | None,
    token_path: Path,
    scope: str | None,
) -> Connected:
    """Record a (re)connected account; its source is due at once with a clean record.

    Raises StoreError when the database fails.
    """
    from hillsync.store import repo

    with ctx.db.session() as session:
        row = repo.ensure_athlete(session, athlete)
        repo.upsert_account(
            session, row, kind.value, remote_id, display_name, str(token_path), scope, ctx.clock()
        )
        repo.clear_needs_auth(session, source_full_name(athlete, kind))
    return Connected(athlete, kind, remote_id, display_name)


def _athlete_name(ctx: AppContext, athlete: str | None) -> str:
    return ctx.athlete(athlete).name


def connect_strava(
    ctx: AppContext,
    athlete: str | None,
    *,
    code: str | None,
    redirect_url: str | None,
    open_browser: bool,
    say: Callable[[str], None],
) -> Connected:
    """Link a Strava account through OAuth (a browser, or a pasted code or redirect URL),
    with the athlete's own Strava application or else the top-level one.

    Raises ConfigError when no Strava application is configured for the athlete,
    UsageError for an unknown athlete, AuthRequired when Strava refuses (the message says
    when the application's athlete limit or an inactive application is the likely cause),
    RateLimited, SourceUnavailable, StoreError.
    """
    from hillsync.sources.strava import connect_strava as connect

    name = _athlete_name(ctx, athlete)
    app = strava_app(ctx.settings, name)
    if app is None:
        key, also = "sources.strava", ""
        if name != DEFAULT_ATHLETE:
            key, also = f"athletes.{name}.sources.strava", " (or in [sources.strava])"
        problems = [
            f"{key}.{k}: required to connect Strava{also}" for k in ("client_id", "client_secret")
        ]
        raise ConfigError(problems[0], problems)
    token_path = paths.token_path(ctx.environ, name, SourceKind.STRAVA)
    account = connect(
        app,
        token_path,
        code=code,
        redirect_url=redirect_url,
        open_browser=open_browser,
        say=say,
        athlete=name,
        command=reconnect_command(SourceKind.STRAVA, name),
        others_on_app=others_on_app(ctx, name, app.client_id),
    )
    connected = record_account(
        ctx,
        name,
        SourceKind.STRAVA,
        remote_id=account.remote_id,
        display_name=account.display_name,
        token_path=token_path,
        scope=account.scope,
    )
    return replace(connected, application=app.client_id)


def others_on_app(ctx: AppContext, athlete: str, client_id: int) -> list[str]:
    """The other athletes whose Strava account is connected here through `client_id`.
    Raises StoreError."""
    from hillsync.store import repo

    with ctx.db.session(readonly=True) as session:
        names = [a for a, k in repo.connected_kinds(session) if k == SourceKind.STRAVA.value]
    return [
        n
        for n in names
        if n != athlete and (own := strava_app(ctx.settings, n)) and own.client_id == client_id
    ]


def connect_garmin(
    ctx: AppContext,
    athlete: str | None,
    *,
    tokens_file: Path | None,
    email: str | None,
    password_prompt: Callable[[], str],
    mfa_prompt: Callable[[], str],
    say: Callable[[str], None] = lambda _line: None,
) -> Connected:
    """Link a Garmin Connect account: log in once (the password is never stored; a refused
    MFA code may be typed again, `say` tells so), or import a garminconnect token file
    made elsewhere.

    Raises UsageError for an unknown athlete, ConfigError (unreadable token file),
    AuthRequired, RateLimited or SourceUnavailable, StoreError.
    """
    from hillsync.sources.garmin import connect_garmin as connect
    from hillsync.sources.garmin import import_garmin_tokens

    name = _athlete_name(ctx, athlete)
    token_dir = paths.token_dir(ctx.environ, name, SourceKind.GARMIN)
    if tokens_file is not None:
        account = import_garmin_tokens(tokens_file, token_dir)
    else:
        account = connect(
            token_dir,
            email=email,
            password_prompt=password_prompt,
            mfa_prompt=mfa_prompt,
            environ=ctx.environ,
            say=say,
        )
    return record_account(
        ctx,
        name,
        SourceKind.GARMIN,
        remote_id=account.remote_id,
        display_name=account.display_name,
        token_path=token_dir,
        scope=None,
    )


@dataclass(frozen=True)
class DisconnectResult:
    """What `disconnect` did: whose account, whether Strava confirmed the revocation, and
    what was deleted with it (None: the data was kept)."""

    athlete: str
    revoked: bool
    deleted: Deleted | None


def disconnect(
    ctx: AppContext, kind: SourceKind, athlete: str | None, *, delete_data: bool = False
) -> DisconnectResult:
    """Forget an account: revoke what the API allows, delete the tokens, drop the record.

    Strava's API Agreement: a Strava account's activities are deleted with it (a run also
    seen from Garmin or a file keeps those sources and its figures from them); a Garmin
    account's only with `delete_data`. Raises OSError when a token file cannot be deleted,
    StoreError.
    """
    from hillsync.store import repo
    from hillsync.store.deletion import delete_source_data

    name = athlete or ctx.athlete(None).name
    revoked = False
    if kind is SourceKind.STRAVA:
        from hillsync.sources.strava import disconnect_strava

        token_path = paths.token_path(ctx.environ, name, SourceKind.STRAVA)
        revoked = disconnect_strava(strava_app(ctx.settings, name), token_path).revoked
    else:
        from hillsync.sources.garmin import disconnect_garmin

        disconnect_garmin(paths.token_dir(ctx.environ, name, SourceKind.GARMIN))
    deleted: Deleted | None = None
    with ctx.db.session() as session:
        if kind is SourceKind.STRAVA or delete_data:
            deleted = delete_source_data(session, name, kind.value)
        repo.delete_account(session, name, kind.value)
    return DisconnectResult(name, revoked, deleted)
