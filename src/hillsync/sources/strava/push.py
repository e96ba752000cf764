"""Managing a Strava application's push subscription (`hillsync webhook`), with stravalib.

One subscription per application: Strava sends its events to `callback_url` (served by
`hillsync serve` at /strava/webhook), after validating it with `verify_token` while the
subscribe request waits. Listing sends the client secret in the query string (Strava's only
documented form); creating and deleting send it in the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import requests
from stravalib.client import Client

from hillsync.errors import AuthRequired, ConfigError, SourceUnavailable
from hillsync.model import Secret
from hillsync.sources.strava.client import fault_status, make_client, new_session

CALLBACK_PATH = "/strava/webhook"


@dataclass(frozen=True)
class Subscription:
    """An application's push subscription as Strava reports it."""

    id: int
    callback_url: str
    created_at: datetime | None = None


def callback_url(public_url: str) -> str:
    """The callback address for a server reached at `public_url`.

    Raises ConfigError when `public_url` is not an https:// (or loopback http://) address.
    """
    url = public_url.rstrip("/")
    if not url.endswith(CALLBACK_PATH):
        url += CALLBACK_PATH
    if not url.startswith("https://") and not url.startswith("http://127.0.0.1"):
        raise ConfigError(
            f"{public_url}: Strava calls back over the internet: give the server's https:// address"
        )
    return url


def _strava_message(error: requests.HTTPError) -> str:
    try:
        body = error.response.json() if error.response is not None else {}
    except ValueError:
        body = {}
    parts = []
    for item in body.get("errors") or []:
        if isinstance(item, dict):
            text = " ".join(str(item.get(k)) for k in ("field", "code") if item.get(k))
            if text:
                parts.append(text)
    message = str(body.get("message") or "")
    return "; ".join(p for p in [message, *parts] if p) or f"HTTP {fault_status(error)}"


def _call_failed(error: requests.RequestException, what: str) -> Exception:
    if isinstance(error, requests.HTTPError):
        status = fault_status(error)
        detail = _strava_message(error)
        if status == 401:
            return ConfigError(
                f"strava refused to {what} ({detail}): check sources.strava.client_id and"
                " client_secret"
            )
        if status == 403:
            return AuthRequired(f"strava refused to {what} ({detail})", source="strava")
        return SourceUnavailable(f"strava could not {what}: {detail}", source="strava")
    return SourceUnavailable(
        f"strava is unreachable ({type(error).__name__}): try again later", source="strava"
    )


class PushSubscriptions:
    """The push subscription of one Strava application."""

    def __init__(
        self,
        client_id: int,
        client_secret: Secret,
        *,
        session: requests.Session | None = None,
        client: Client | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.client = client or make_client(session or new_session(), None, None)

    def show(self) -> list[Subscription]:
        """The application's subscriptions (none or one).

        Raises ConfigError (refused credentials), AuthRequired or SourceUnavailable.
        """
        try:
            found = list(
                self.client.list_subscriptions(self.client_id, self.client_secret.reveal())
            )
        except requests.RequestException as e:
            raise _call_failed(e, "list the push subscriptions") from None
        return [
            Subscription(int(s.id), str(s.callback_url or ""), getattr(s, "created_at", None))
            for s in found
            if s.id is not None
        ]

    def subscribe(self, url: str, verify_token: Secret) -> Subscription:
        """Create the subscription; Strava validates `url` before it answers.

        Raises ConfigError, AuthRequired or SourceUnavailable (with Strava's reason: the
        callback was not reachable or did not echo the challenge, one exists already).
        """
        try:
            made = self.client.create_subscription(
                self.client_id, self.client_secret.reveal(), url, verify_token.reveal()
            )
        except requests.RequestException as e:
            raise _call_failed(e, "create the push subscription") from None
        if made.id is None:
            raise SourceUnavailable("strava answered without a subscription id", source="strava")
        return Subscription(int(made.id), url, getattr(made, "created_at", None))

    def unsubscribe(self) -> list[int]:
        """Delete every subscription of the application; returns their ids.

        Raises ConfigError, AuthRequired or SourceUnavailable.
        """
        gone = []
        for sub in self.show():
            try:
                self.client.delete_subscription(sub.id, self.client_id, self.client_secret.reveal())
            except requests.RequestException as e:
                raise _call_failed(e, "delete the push subscription") from None
            gone.append(sub.id)
        return gone
