"""Strava payloads -> hillsync values: sports, summaries, streams, fingerprints."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import structlog
from pydantic import ValidationError
from stravalib import model as strava_model

from hillsync.errors import BadActivity
from hillsync.model import Activity, Track
from hillsync.sources.figures import Figures

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


#: The figures of a summary that are distances or durations (never negative).
_FIGURES = ("distance", "moving_time", "elapsed_time", "total_elevation_gain")


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _checked(raw: Mapping[str, Any], figures: Figures) -> dict[str, Any]:
    """`raw` with each implausible figure nulled (noted in `figures`), so that stravalib's
    model never coerces one into another value (true into 1.0, "12" into 12.0)."""
    clean = dict(raw)
    for key in _FIGURES:
        clean[key] = figures.number(key)
    for key in ("elev_high", "elev_low"):
        clean[key] = figures.number(key, low=-math.inf)
    for key in ("start_latlng", "end_latlng"):
        value = raw.get(key)
        clean[key] = None
        if value is None or value == []:
            continue
        if not (isinstance(value, list) and len(value) == 2 and all(map(_real, value))):
            figures.problems.append(f"{key} is not a position")
            continue
        try:
            lat, lon = float(value[0]), float(value[1])
        except OverflowError:
            figures.problems.append(f"{key} is off the globe")
            continue
        position = figures.latlng(lat, lon, key)
        clean[key] = list(position) if position is not None else None
    return clean


def activity_from_summary(raw: Mapping[str, Any], source: str = KIND) -> Activity:
    """An Activity from one summary of Strava's activity list (the payload kept as `raw`).

    A figure that is not a plausible number is dropped, with the reason in the activity's
    `warning` (figures.py). Raises BadActivity when the payload lacks an id or a start date
    or is otherwise unreadable.
    """
    if not isinstance(raw, Mapping):
        raise BadActivity(f"unreadable Strava summary: a {type(raw).__name__}, not an object")
    if isinstance(raw.get("id"), bool):
        raise BadActivity("unreadable Strava summary: id is not a number")
    figures = Figures(raw)
    try:
        summary = strava_model.SummaryActivity.model_validate(_checked(raw, figures))
    except (ValidationError, ValueError, TypeError) as e:
        raise BadActivity(reason(e)) from None
    if summary.id is None or summary.start_date is None:
        raise BadActivity("unreadable Strava summary: it has no id or no start date")
    start = summary.start_date
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    sport_type = getattr(summary.sport_type, "root", None) or getattr(summary.type, "root", None)
    trainer = bool(summary.trainer)
    sport = map_sport(sport_type, trainer)
    indoor = trainer or sport in ("treadmill", "virtual_run") or sport_type in ("VirtualRide",)
    elev_range = None
    if summary.elev_high is not None and summary.elev_low is not None:
        elev_range = figures.elevation_range("elev_high", "elev_low")
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
        warning=figures.warning(),
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
    """Why a summary could not be read, in one line. Raises nothing."""
    if isinstance(error, ValidationError):
        details = error.errors()
        if details:
            where = ".".join(str(p) for p in details[0]["loc"])
            return _one_line(f"unreadable Strava summary: {where}: {details[0]['msg']}")
        return "unreadable Strava summary"
    return _one_line(f"unreadable Strava summary: {error}")


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else text
