"""The Strava source, by concern: `connect` (OAuth and disconnect), `tokens` (the token
file and its rotation), `mapping` (payloads to activities), `client` and `budget` (stravalib
with timeouts, retries and a rate budget that parks instead of sleeping), `source` (polling).

Built on stravalib's client (HTTP through `requests`), with three things done here rather
than inside stravalib: tokens are refreshed by hillsync (stravalib only does it from
environment variables), the rate budget is read from the response headers and turned into
`RateLimited` (stravalib's own limiter sleeps, which would block shutdown), and retries of
server errors are a tenacity policy passed in (so tests never sleep).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hillsync.sources.strava.connect import (
        ConnectedAccount,
        Disconnected,
        StravaApp,
        connect_strava,
        disconnect_strava,
    )
    from hillsync.sources.strava.mapping import (
        KIND,
        STRAVA_SPORTS,
        activity_from_summary,
        map_sport,
        track_from_streams,
    )
    from hillsync.sources.strava.source import StravaSource

#: Where each public name lives. Loaded on first use: `status` and `balance` read the
#: budget module's constants and must not pay for stravalib and numpy.
_HOME = {
    "ConnectedAccount": "connect",
    "Disconnected": "connect",
    "StravaApp": "connect",
    "connect_strava": "connect",
    "disconnect_strava": "connect",
    "KIND": "mapping",
    "STRAVA_SPORTS": "mapping",
    "activity_from_summary": "mapping",
    "map_sport": "mapping",
    "track_from_streams": "mapping",
    "StravaSource": "source",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "KIND",
    "STRAVA_SPORTS",
    "ConnectedAccount",
    "Disconnected",
    "StravaApp",
    "StravaSource",
    "activity_from_summary",
    "connect_strava",
    "disconnect_strava",
    "map_sport",
    "track_from_streams",
]
