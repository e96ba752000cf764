"""`hillsync connect` and `hillsync disconnect`: linking and forgetting remote accounts.

The interactive parts (printing the authorize URL, prompting for a password or MFA code)
are callbacks, so the CLI and the web app each bring their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hillsync import paths
from hillsync.app.context import AppContext
from hillsync.errors import ConfigError
from hillsync.model import SourceKind
from hillsync.registry import source_full_name


@dataclass(frozen=True)
class Connected:
    """An account linked to an athlete."""

    athlete: str
    kind: SourceKind
    remote_id: str | None
    display_name: str | None


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
    """Link a Strava account through OAuth (a browser, or a pasted code or redirect URL).

    Raises ConfigError when the Strava application is not configured, UsageError for an
    unknown athlete, AuthRequired when Strava refuses, StoreError.
    """
    from hillsync.sources.strava import connect_strava as connect

    name = _athlete_name(ctx, athlete)
    strava = ctx.settings.strava
    problems: list[str] = []
    if strava.client_id is None:
        problems.append("sources.strava.client_id: required to connect Strava")
    if strava.client_secret is None:
        problems.append("sources.strava.client_secret: required to connect Strava")
    if strava.client_id is None or strava.client_secret is None:
        raise ConfigError(problems[0], problems)
    token_path = paths.token_path(ctx.environ, name, SourceKind.STRAVA)
    account = connect(
        strava.client_id,
        strava.client_secret,
        token_path,
        code=code,
        redirect_url=redirect_url,
        open_browser=open_browser,
        say=say,
    )
    return record_account(
        ctx,
        name,
        SourceKind.STRAVA,
        remote_id=account.remote_id,
        display_name=account.display_name,
        token_path=token_path,
        scope=account.scope,
    )


def connect_garmin(
    ctx: AppContext,
    athlete: str | None,
    *,
    tokens_file: Path | None,
    email: str | None,
    password_prompt: Callable[[], str],
    mfa_prompt: Callable[[], str],
) -> Connected:
    """Link a Garmin Connect account: log in once (the password is never stored), or import
    a garminconnect token file made elsewhere.

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


def disconnect(ctx: AppContext, kind: SourceKind, athlete: str | None) -> str:
    """Forget an account: revoke what the API allows, delete the tokens, drop the record.
    Returns the athlete's name. Raises OSError when a token file cannot be deleted,
    StoreError."""
    from hillsync.store import repo

    name = athlete or ctx.athlete(None).name
    if kind is SourceKind.STRAVA:
        from hillsync.sources.strava import disconnect_strava

        strava = ctx.settings.strava
        token_path = paths.token_path(ctx.environ, name, SourceKind.STRAVA)
        if strava.client_id is not None and strava.client_secret is not None:
            disconnect_strava(strava.client_id, strava.client_secret, token_path)
        else:
            token_path.unlink(missing_ok=True)
    else:
        from hillsync.sources.garmin import disconnect_garmin

        disconnect_garmin(paths.token_dir(ctx.environ, name, SourceKind.GARMIN))
    with ctx.db.session() as session:
        repo.delete_account(session, name, kind.value)
    return name
