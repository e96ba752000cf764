"""Strava's push-subscription callback: the validation handshake and event shapes.

Only Strava's documented shapes are accepted: a validation GET with `hub.mode=subscribe`,
`hub.challenge` and the configured `hub.verify_token`; event POSTs of JSON objects with
`object_type` (activity|athlete), integer ids, `aspect_type` (create|update|delete),
`event_time` and string `updates`. Anything else is a 4xx with a short reason.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hillsync.model import Secret
from hillsync.web.backend import StravaEvent

MAX_CHALLENGE = 256


class WebhookError(Exception):
    """A request that is not one of Strava's: `status` and a short `reason` for the answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    object_type: Literal["activity", "athlete"]
    object_id: int = Field(ge=0)
    aspect_type: Literal["create", "update", "delete"]
    owner_id: int = Field(ge=0)
    subscription_id: int = Field(ge=0)
    event_time: int = Field(ge=0)
    updates: dict[str, str] = Field(default_factory=dict, max_length=20)


def validation_answer(params: Mapping[str, str], verify_token: Secret) -> dict[str, str]:
    """The answer to Strava's validation GET: `{"hub.challenge": ...}`.

    Raises WebhookError (400 for a malformed request, 403 for a wrong verify token).
    """
    if params.get("hub.mode") != "subscribe":
        raise WebhookError(400, "hub.mode must be subscribe")
    challenge = params.get("hub.challenge", "")
    if not challenge or len(challenge) > MAX_CHALLENGE:
        raise WebhookError(400, "hub.challenge is missing or too long")
    given = params.get("hub.verify_token", "")
    if not hmac.compare_digest(given.encode(), verify_token.reveal().encode()):
        raise WebhookError(403, "hub.verify_token does not match")
    return {"hub.challenge": challenge}


def parse_event(body: bytes) -> StravaEvent:
    """One push event from a POST body.

    Raises WebhookError (400) for anything that is not a Strava event.
    """
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookError(400, "the body is not JSON") from None
    if not isinstance(raw, dict):
        raise WebhookError(400, "the body is not a JSON object")
    try:
        event = _Event.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise WebhookError(400, f"not a Strava event: {where}: {first['msg']}") from None
    if event.object_type == "athlete" and event.aspect_type != "update":
        raise WebhookError(400, "not a Strava event: athlete events are updates")
    return StravaEvent(
        object_type=event.object_type,
        object_id=event.object_id,
        aspect_type=event.aspect_type,
        owner_id=event.owner_id,
        subscription_id=event.subscription_id,
        event_time=event.event_time,
        updates=dict(event.updates),
    )
