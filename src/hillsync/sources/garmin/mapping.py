"""Garmin payloads -> hillsync values: sports, summaries, the original-file download."""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from hillsync.errors import (
    BadActivity,
)
from hillsync.model import INDOOR_SPORTS, Activity
from hillsync.sources.figures import Figures

log = structlog.get_logger(__name__)


#: Garmin typeKey -> hillsync sport.
GARMIN_SPORTS: Mapping[str, str] = {
    "running": "run",
    "street_running": "run",
    "ultra_run": "run",
    "obstacle_run": "run",
    "trail_running": "trail_run",
    "track_running": "track_run",
    "treadmill_running": "treadmill",
    "indoor_running": "treadmill",
    "virtual_run": "virtual_run",
    "cycling": "ride",
    "road_biking": "ride",
    "mountain_biking": "ride",
    "gravel_cycling": "ride",
    "cyclocross": "ride",
    "indoor_cycling": "ride",
    "virtual_ride": "ride",
    "track_cycling": "ride",
    "e_bike_fitness": "ride",
    "e_bike_mountain": "ride",
    "bmx": "ride",
    "recumbent_cycling": "ride",
    "hand_cycling": "ride",
    "swimming": "swim",
    "lap_swimming": "swim",
    "open_water_swimming": "swim",
    "walking": "walk",
    "casual_walking": "walk",
    "speed_walking": "walk",
    "indoor_walking": "walk",
    "hiking": "hike",
    "mountaineering": "hike",
    "rucking": "hike",
}

#: typeKeys recorded without terrain under the feet (or the wheels).
_INDOOR_TYPE_KEYS = frozenset(
    {
        "treadmill_running",
        "indoor_running",
        "virtual_run",
        "indoor_cycling",
        "virtual_ride",
        "indoor_walking",
        "lap_swimming",
    }
)


def _num(summary: Mapping[str, Any], key: str) -> float | None:
    value = summary.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _latlng(figures: Figures, lat_key: str, lon_key: str) -> tuple[float, float] | None:
    lat = figures.number(lat_key, low=-math.inf)
    lon = figures.number(lon_key, low=-math.inf)
    if lat == 0 and lon == 0:
        return None  # Garmin's "no position"
    return figures.latlng(lat, lon, f"{lat_key}/{lon_key}")


def _start_time(summary: Mapping[str, Any]) -> datetime | None:
    gmt = summary.get("startTimeGMT")
    if isinstance(gmt, str) and gmt:
        try:
            parsed = datetime.fromisoformat(gmt.strip().replace(" ", "T"))
        except ValueError:
            parsed = None
        if parsed is not None:
            # startTimeGMT is UTC without a zone; startTimeLocal must never be used here.
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    ms = _num(summary, "beginTimestamp")
    if ms is not None:
        try:
            return datetime.fromtimestamp(ms / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _type_key(summary: Mapping[str, Any]) -> str | None:
    atype = summary.get("activityType")
    if isinstance(atype, Mapping):
        key = atype.get("typeKey")
        if isinstance(key, str):
            return key
    return None


def activity_from_summary(summary: Mapping[str, Any], *, source: str = "garmin") -> Activity:
    """Build an Activity from one entry of Garmin's activity list.

    A figure that is not a plausible number is dropped, with the reason in the activity's
    `warning` (figures.py). Raises BadActivity when the summary is not an object, or has no
    activityId or no start time.
    """
    if not isinstance(summary, Mapping):
        raise BadActivity(f"Garmin listed a {type(summary).__name__} where an activity belongs")
    aid = summary.get("activityId")
    if isinstance(aid, bool) or not isinstance(aid, int | str) or not str(aid).strip():
        raise BadActivity("Garmin activity without an activityId")
    start = _start_time(summary)
    if start is None:
        raise BadActivity(f"Garmin activity {aid} has no start time")
    type_key = _type_key(summary)
    sport = GARMIN_SPORTS.get(type_key or "", "other")
    indoor = sport in INDOOR_SPORTS or (type_key in _INDOOR_TYPE_KEYS)
    figures = Figures(summary)
    elapsed = figures.number("elapsedDuration")
    if elapsed is None:
        elapsed = figures.number("duration")
    name = summary.get("activityName")
    return Activity(
        source=source,
        source_id=str(aid),
        sport=sport,
        start_time=start,
        name=name if isinstance(name, str) else None,
        distance_m=figures.number("distance"),
        moving_time_s=figures.number("movingDuration"),
        elapsed_time_s=elapsed,
        reported_gain_m=figures.number("elevationGain"),
        reported_loss_m=figures.number("elevationLoss"),
        elevation_range_m=figures.elevation_range("maxElevation", "minElevation"),
        start_latlng=_latlng(figures, "startLatitude", "startLongitude"),
        end_latlng=_latlng(figures, "endLatitude", "endLongitude"),
        indoor=indoor,
        raw=dict(summary),
        elevation_source="garmin",
        warning=figures.warning(),
    )


def fit_from_download(data: bytes, activity_id: str) -> tuple[bytes, str]:
    """The activity file inside Garmin's "original" download (a zip, or the bare file).

    Raises BadActivity when the zip holds no activity file.
    """
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return data, f"{activity_id}.fit"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        for ext in (".fit", ".tcx", ".gpx"):
            for member in names:
                if member.lower().endswith(ext):
                    return zf.read(member), Path(member).name
    raise BadActivity(f"Garmin's download of activity {activity_id} holds no activity file")


def summary_key(summary: Any) -> str:
    if isinstance(summary, Mapping) and summary.get("activityId") is not None:
        return f"garmin:{summary.get('activityId')}"
    return "garmin:?"
