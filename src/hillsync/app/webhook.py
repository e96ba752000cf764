"""`hillsync webhook subscribe | show | unsubscribe`: the Strava application's push
subscription, kept in the store so that the worker polls its sources only at the safety
interval while it exists."""

from __future__ import annotations

from typing import Any

from hillsync.app.context import AppContext
from hillsync.errors import ConfigError
from hillsync.sources.strava.push import PushSubscriptions, Subscription, callback_url


def _push(ctx: AppContext, session: Any = None) -> tuple[PushSubscriptions, int]:
    strava = ctx.settings.strava
    if strava.client_id is None or strava.client_secret is None:
        raise ConfigError(
            "sources.strava.client_id and client_secret: required to manage the push subscription"
        )
    return PushSubscriptions(strava.client_id, strava.client_secret, session=session), (
        strava.client_id
    )


def subscribe(ctx: AppContext, public_url: str, *, session: Any = None) -> Subscription:
    """Subscribe the Strava application to push events at PUBLIC_URL/strava/webhook.

    `hillsync serve` must answer there already: Strava validates the address before it
    answers. Raises ConfigError (no verify token, no application, bad URL), AuthRequired,
    SourceUnavailable, StoreError.
    """
    from hillsync.store import pages

    token = ctx.settings.strava.webhook_verify_token
    if token is None:
        raise ConfigError(
            "sources.strava.webhook_verify_token: required to subscribe (the same value"
            " `hillsync serve` checks)"
        )
    url = callback_url(public_url)
    push, client_id = _push(ctx, session)
    made = push.subscribe(url, token)
    with ctx.db.session() as s:
        pages.save_push_subscription(s, client_id, made.id, url, ctx.clock())
    return made


def show(ctx: AppContext, *, session: Any = None) -> list[Subscription]:
    """The application's subscriptions as Strava lists them (the store follows Strava).

    Raises ConfigError, AuthRequired, SourceUnavailable, StoreError.
    """
    from hillsync.store import pages

    push, client_id = _push(ctx, session)
    found = push.show()
    with ctx.db.session() as s:
        if found:
            pages.save_push_subscription(
                s, client_id, found[0].id, found[0].callback_url, ctx.clock()
            )
        else:
            pages.forget_push_subscription(s, client_id)
    return found


def unsubscribe(ctx: AppContext, *, session: Any = None) -> list[int]:
    """Delete the application's subscription; polling returns to `poll_minutes`.

    Raises ConfigError, AuthRequired, SourceUnavailable, StoreError.
    """
    from hillsync.store import pages

    push, client_id = _push(ctx, session)
    gone = push.unsubscribe()
    with ctx.db.session() as s:
        pages.forget_push_subscription(s, client_id)
    return gone
