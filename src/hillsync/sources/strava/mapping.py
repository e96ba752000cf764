"""Strava payloads -> hillsync values: sports, summaries, streams, fingerprints."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import structlog
from pydantic import ValidationError
from stravalib import model as strava_model

from hillsync.model import Activity, Track

log = structlog.get_logger(__name__)


KIND = "strava"

STRAVA_SPORTS: Mapping[str, str] = {
    "Run": "run",
    "TrailRun": "trail_run",
    "VirtualRun": "virtual_run",
    "Walk": "walk",
    "Hike": "hike",
    "Swim": "swim",
    "Ride": "ride",
    "GravelRide": "ride",
    "MountainBikeRide": "ride",
    "EBikeRide": "ride",
    "EMountainBikeRide": "ride",
    "VirtualRide": "ride",
    "Velomobile": "ride",
    "Handcycle": "ride",
}

#: Summary fields whose change means the activity was edited (kudos and comments are not).
_FINGERPRINT_FIELDS = (
    "name",
    "sport_type",
    "type",
    "distance",
    "moving_time",
    "elapsed_time",
    "total_elevation_gain",
    "elev_high",
    "elev_low",
    "start_date",
    "start_latlng",
    "end_latlng",
    "trainer",
    "manual",
    "external_id",
)


def map_sport(sport_type: str | None, trainer: bool = False) -> str:
    """hillsync's sport for a Strava `sport_type` (a run on a trainer is a treadmill run)."""
    sport = STRAVA_SPORTS.get(sport_type or "", "other")
    if trainer and sport in ("run", "trail_run"):
        return "treadmill"
    return sport


def fingerprint(raw: Mapping[str, Any]) -> str:
    picked = {k: raw.get(k) for k in _FINGERPRINT_FIELDS}
    digest = hashlib.sha1(
        json.dumps(picked, sort_keys=True, default=str).encode(), usedforsecurity=False
    )
    return digest.hexdigest()[:16]


def _latlng(value: Any) -> tuple[float, float] | None:
    root = getattr(value, "root", value)
    if isinstance(root, list | tuple) and len(root) == 2:
        return (float(root[0]), float(root[1]))
    return None


def epoch(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp())


def activity_from_summary(raw: Mapping[str, Any], source: str = KIND) -> Activity:
    """An Activity from one summary of Strava's activity list (the payload kept as `raw`).

    Raises ValueError (pydantic's ValidationError included) when the payload lacks an id
    or a start date or is otherwise unreadable.
    """
    summary = strava_model.SummaryActivity.model_validate(dict(raw))
    if summary.id is None or summary.start_date is None:
        raise ValueError("the summary has no id or no start date")
    start = summary.start_date
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    sport_type = getattr(summary.sport_type, "root", None) or getattr(summary.type, "root", None)
    trainer = bool(summary.trainer)
    sport = map_sport(sport_type, trainer)
    indoor = trainer or sport in ("treadmill", "virtual_run") or sport_type in ("VirtualRide",)
    elev_range = None
    if summary.elev_high is not None and summary.elev_low is not None:
        elev_range = float(summary.elev_high) - float(summary.elev_low)
    return Activity(
        source=source,
        source_id=str(summary.id),
        sport=sport,
        start_time=start.astimezone(UTC),
        name=summary.name,
        distance_m=None if summary.distance is None else float(summary.distance),
        moving_time_s=None if summary.moving_time is None else float(summary.moving_time),
        elapsed_time_s=None if summary.elapsed_time is None else float(summary.elapsed_time),
        reported_gain_m=(
            None if summary.total_elevation_gain is None else float(summary.total_elevation_gain)
        ),
        elevation_range_m=elev_range,
        start_latlng=_latlng(summary.start_latlng),
        end_latlng=_latlng(summary.end_latlng),
        indoor=indoor,
        external_id=summary.external_id,
        raw=json.loads(json.dumps(dict(raw), default=str)),
        elevation_source="strava",
    )


def track_from_streams(streams: Mapping[str, Any]) -> Track | None:
    """A Track from Strava streams (altitude, distance, latlng); None without altitude.

    Streams of unequal length (Strava's are equal, but a payload may not be) are cut to the
    shortest, so every array of the Track has the same length.
    """

    def data(key: str) -> list[Any] | None:
        stream = streams.get(key)
        values = getattr(stream, "data", None)
        return list(values) if values else None

    altitude = data("altitude")
    if not altitude:
        return None
    distance = data("distance")
    latlng = data("latlng")
    n = min(len(x) for x in (altitude, distance, latlng) if x is not None)

    def floats(values: list[Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.array([np.nan if v is None else float(v) for v in values[:n]], dtype=np.float64)

    lat = lon = None
    if latlng is not None:
        pairs = [p if isinstance(p, list | tuple) and len(p) == 2 else (None, None) for p in latlng]
        lat = floats([p[0] for p in pairs])
        lon = floats([p[1] for p in pairs])
    return Track(
        altitude_m=floats(altitude),
        distance_m=None if distance is None else floats(distance),
        lat=lat,
        lon=lon,
    )


def reason(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        details = error.errors()
        if details:
            where = ".".join(str(p) for p in details[0]["loc"])
            return f"unreadable Strava summary: {where}: {details[0]['msg']}"
        return "unreadable Strava summary"
    return f"unreadable Strava summary: {error}"
