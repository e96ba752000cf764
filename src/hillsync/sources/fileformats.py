"""Readers of activity files: FIT (fitdecode), GPX and TCX (lxml), and their .gz forms.

Every reader turns one file into one `Activity` or raises `BadActivity` with a one-line
reason: a damaged file never shows a traceback and never stops the files beside it.
What a damaged FIT file held before the damage is kept, since devices that crash or run
out of battery leave exactly such files behind.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fitdecode
import numpy as np
import numpy.typing as npt
from lxml import etree

from hillsync.errors import BadActivity
from hillsync.model import RUN_SPORTS, Activity, Track

FloatArray = npt.NDArray[np.float64]

#: Extensions read, with or without a trailing ".gz".
ACTIVITY_SUFFIXES: tuple[str, ...] = (".fit", ".gpx", ".tcx")
#: An activity file bigger than this (after decompression) is refused: no device writes one,
#: and a zip or gzip bomb must not exhaust the memory of a small home server.
MAX_FILE_BYTES = 256 * 1024 * 1024

_FIT_EPOCH_S = 631065600  # 1989-12-31T00:00:00Z, where FIT timestamps count from
_FIT_DATETIME_MIN = 0x10000000  # below this a FIT timestamp counts from device power-on
_SEMICIRCLE_DEG = 180.0 / 2**31
_RECORD_MESG = 20
_SESSION_MESG = 18

# Raised by fitdecode (and the struct/decoding code under it) on damaged input.
_FIT_ERRORS = (
    fitdecode.FitError,
    AssertionError,  # fitdecode asserts on some impossible field layouts
    ValueError,
    KeyError,
    IndexError,
    struct.error,
    EOFError,
    UnicodeDecodeError,
)

# What building an activity from damaged content can raise after decoding succeeded.
_DAMAGE_ERRORS = (
    *_FIT_ERRORS,
    TypeError,
    OverflowError,
    ZeroDivisionError,
    ArithmeticError,
)

_SPORT_NAMES: Mapping[str, str] = {
    "run": "run",
    "running": "run",
    "street_running": "run",
    "road_running": "run",
    "trail_run": "trail_run",
    "trail_running": "trail_run",
    "trailrun": "trail_run",
    "track_run": "track_run",
    "track_running": "track_run",
    "treadmill": "treadmill",
    "treadmill_running": "treadmill",
    "indoor_running": "treadmill",
    "virtual_run": "virtual_run",
    "virtualrun": "virtual_run",
    "virtual_running": "virtual_run",
    "ride": "ride",
    "cycling": "ride",
    "biking": "ride",
    "road_biking": "ride",
    "mountain_biking": "ride",
    "gravel_cycling": "ride",
    "indoor_cycling": "ride",
    "virtual_ride": "ride",
    "virtualride": "ride",
    "e_bike_ride": "ride",
    "e_biking": "ride",
    "ebikeride": "ride",
    "swim": "swim",
    "swimming": "swim",
    "lap_swimming": "swim",
    "open_water_swimming": "swim",
    "walk": "walk",
    "walking": "walk",
    "hike": "hike",
    "hiking": "hike",
    "transition": "other",
    "workout": "other",
    "training": "other",
    "weight_training": "other",
    "strength_training": "other",
    "fitness_equipment": "other",
    "yoga": "other",
    "rowing": "other",
    "elliptical": "other",
    "alpine_ski": "other",
    "alpine_skiing": "other",
    "nordic_ski": "other",
    "cross_country_skiing": "other",
    "backcountry_ski": "other",
}
#: Strava's numeric GPX <type> codes (its old activity type enumeration).
_STRAVA_TYPE_CODES: Mapping[str, str] = {"1": "ride", "4": "hike", "9": "run", "10": "walk"}
_INDOOR_SPORTS = frozenset({"treadmill", "virtual_run"})
_FIT_INDOOR_SUB_SPORTS = frozenset(
    {"treadmill", "indoor_cycling", "spin", "virtual_activity", "indoor_running", "trainer"}
)


def map_sport(name: str | None) -> str:
    """Map a file's or export's sport name onto hillsync's; unknown or missing means "run".

    A runner's folder is where runs land, so a sport hillsync does not know is taken as a run.
    """
    if name is None:
        return "run"
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    if key in _STRAVA_TYPE_CODES:
        return _STRAVA_TYPE_CODES[key]
    return _SPORT_NAMES.get(key, "run")


def describe_file_error(exc: BaseException) -> str:
    """A one-line reason for a failure to read a file, fit to show a user."""
    if isinstance(exc, BadActivity):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, OSError):
        return f"cannot read file: {exc.strerror or type(exc).__name__}"
    return f"cannot read file: {type(exc).__name__}"


def is_activity_file(name: str) -> bool:
    """Whether a file name has one of the extensions read (.fit/.gpx/.tcx, optionally .gz)."""
    lower = name.lower()
    if lower.endswith(".gz"):
        lower = lower[:-3]
    return lower.endswith(ACTIVITY_SUFFIXES)


def read_activity(path: Path, *, source: str = "file", source_id: str | None = None) -> Activity:
    """Read one FIT/GPX/TCX file (or .fit.gz/.gpx.gz/.tcx.gz).

    Raises BadActivity with a one-line reason when the file cannot be read or holds no
    activity (also for a missing or unreadable file).
    """
    if not is_activity_file(path.name):
        raise BadActivity("unknown file type (expected .fit, .gpx or .tcx)")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BadActivity("file too large")
        data = path.read_bytes()
        mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError as exc:
        raise BadActivity(describe_file_error(exc)) from exc
    return read_activity_bytes(
        data,
        path.name,
        source=source,
        source_id=source_id if source_id is not None else str(path),
        fallback_time=mtime,
    )


def read_activity_bytes(
    data: bytes,
    filename: str,
    *,
    source: str = "file",
    source_id: str | None = None,
    fallback_time: datetime | None = None,
) -> Activity:
    """Read one activity from the bytes of a file; the filename's extension selects the format.

    `fallback_time` is the start time of a file that records no time at all (a GPX route
    drawn by hand); without it such a file gets the current time. Raises BadActivity with
    a one-line reason.
    """
    lower = filename.lower()
    if lower.endswith(".gz"):
        data = _gunzip(data)
        lower = lower[:-3]
    sid = source_id if source_id is not None else filename
    if not data:
        raise BadActivity("empty file")
    try:
        if lower.endswith(".fit"):
            return _read_fit(data, source=source, source_id=sid)
        if lower.endswith(".gpx"):
            return _read_gpx(data, source=source, source_id=sid, fallback_time=fallback_time)
        if lower.endswith(".tcx"):
            return _read_tcx(data, source=source, source_id=sid)
    except _DAMAGE_ERRORS as exc:
        # Damaged bytes can surface anywhere past the decoder (a field of the wrong type, an
        # empty array where one was promised): whatever the path, it is this file's fault.
        kind = lower.rsplit(".", 1)[-1].upper()
        raise BadActivity(f"damaged {kind} file ({type(exc).__name__})") from exc
    raise BadActivity("unknown file type (expected .fit, .gpx or .tcx)")


def activity_members(zf: zipfile.ZipFile) -> list[str]:
    """The names of the activity files inside a zip, in a stable (sorted) order."""
    return sorted(
        info.filename
        for info in zf.infolist()
        if not info.is_dir() and is_activity_file(info.filename)
    )


def read_zip_member(
    zf: zipfile.ZipFile, member: str, *, source: str = "file", source_id: str | None = None
) -> Activity:
    """Read one activity file held in a zip (a Garmin export or download).

    Raises BadActivity when the member is missing, too large, damaged or not an activity.
    """
    try:
        info = zf.getinfo(member)
        if info.file_size > MAX_FILE_BYTES:
            raise BadActivity("file too large")
        with zf.open(info) as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except KeyError as exc:
        raise BadActivity("not in the zip") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise BadActivity("damaged zip member") from exc
    fallback = datetime(*info.date_time, tzinfo=UTC) if info.date_time[0] >= 1980 else None
    return read_activity_bytes(
        data,
        member,
        source=source,
        source_id=source_id if source_id is not None else member,
        fallback_time=fallback,
    )


def read_activity_zip(
    data: bytes, *, source: str = "file", source_id: str | None = None
) -> Activity:
    """Read the activity file inside a zip (Garmin's "original" download holds one FIT).

    Raises BadActivity when the bytes are not a zip or it holds no activity file.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = activity_members(zf)
            if not members:
                raise BadActivity("zip holds no FIT, GPX or TCX file")
            return read_zip_member(zf, members[0], source=source, source_id=source_id)
    except zipfile.BadZipFile as exc:
        raise BadActivity("not a zip file") from exc


def _gunzip(data: bytes) -> bytes:
    """Decompress a .gz file's bytes. Raises BadActivity for a damaged or non-gzip file."""
    if not data:
        raise BadActivity("empty file")
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
            out = fh.read(MAX_FILE_BYTES + 1)
    except gzip.BadGzipFile as exc:
        raise BadActivity("not a gzip file") from exc
    except EOFError as exc:
        raise BadActivity("truncated gzip") from exc
    except zlib.error as exc:
        raise BadActivity("corrupt gzip") from exc
    if len(out) > MAX_FILE_BYTES:
        raise BadActivity("file too large")
    return out


def _arr(values: Sequence[float | None]) -> FloatArray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _opt_float(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _json_safe(value: object) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return str(value)


def _cumulative_distance(
    lat: FloatArray, lon: FloatArray, segment: npt.NDArray[np.int64] | None
) -> FloatArray:
    """Cumulative great-circle distance; no distance across a segment boundary or a gap."""
    n = lat.shape[0]
    out = np.zeros(n, dtype=np.float64)
    if n < 2:
        return out
    la, lo = np.radians(lat), np.radians(lon)
    h = (
        np.sin(np.diff(la) / 2) ** 2
        + np.cos(la[:-1]) * np.cos(la[1:]) * np.sin(np.diff(lo) / 2) ** 2
    )
    step = 2 * 6_371_008.8 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    step = np.where(np.isfinite(step), step, 0.0)
    if segment is not None:
        step = np.where(np.diff(segment) != 0, 0.0, step)
    out[1:] = np.cumsum(step)
    return out


# --------------------------------------------------------------------------- FIT


@dataclass
class _Session:
    fields: dict[str, Any]

    @property
    def sport(self) -> str | None:
        value = self.fields.get("sport")
        return value if isinstance(value, str) else None

    @property
    def sub_sport(self) -> str | None:
        value = self.fields.get("sub_sport")
        return value if isinstance(value, str) else None

    @property
    def hillsync_sport(self) -> str:
        return _fit_sport(self.sport, self.sub_sport)


def _fit_sport(sport: str | None, sub_sport: str | None) -> str:
    if sport in ("running", None, "generic") or map_sport(sport) == "run":
        sub = {
            "trail": "trail_run",
            "treadmill": "treadmill",
            "indoor_running": "treadmill",
            "track": "track_run",
            "virtual_activity": "virtual_run",
        }
        return sub.get(sub_sport or "", "run")
    return map_sport(sport)


_SESSION_FIELDS = (
    "start_time",
    "timestamp",
    "sport",
    "sub_sport",
    "total_distance",
    "total_timer_time",
    "total_elapsed_time",
    "total_ascent",
    "total_descent",
    "start_position_lat",
    "start_position_long",
    "end_position_lat",
    "end_position_long",
)
_RECORD_FIELDS = (
    "timestamp",
    "position_lat",
    "position_long",
    "distance",
    "enhanced_altitude",
    "altitude",
    "enhanced_speed",
    "speed",
)


class _FitData:
    """What one pass over a FIT file collects, in column lists (cheap appends)."""

    def __init__(self) -> None:
        self.ts: list[float | None] = []
        self.lat: list[float | None] = []
        self.lon: list[float | None] = []
        self.dist: list[float | None] = []
        self.alt: list[float | None] = []
        self.speed: list[float | None] = []
        self.sessions: list[_Session] = []
        self.sports: list[tuple[str | None, str | None]] = []
        self.file_id: dict[str, Any] = {}
        self.activity: dict[str, Any] = {}
        self.damaged: str | None = None


def _collect_fit(data: bytes) -> _FitData:
    """One pass over every frame of a FIT file (chained files included), tolerating damage.

    The processor is switched off and the wanted record fields are located once per
    message definition: per-record Python work is what makes FIT imports slow.
    """
    out = _FitData()
    # Index of each wanted record field in a definition's field list, by definition.
    layouts: dict[int, tuple[object, tuple[int, ...]]] = {}
    ts, lat, lon, dist, alt, speed = out.ts, out.lat, out.lon, out.dist, out.alt, out.speed
    reader = fitdecode.FitReader(
        io.BytesIO(data),
        processor=None,
        check_crc=fitdecode.CrcCheck.DISABLED,
        error_handling=fitdecode.ErrorHandling.IGNORE,
    )
    data_message = fitdecode.FitDataMessage
    try:
        for frame in reader:
            if type(frame) is not data_message:
                continue
            d = frame.def_mesg
            num = d.global_mesg_num
            if num == _RECORD_MESG:
                entry = layouts.get(id(d))
                if entry is None or entry[0] is not d:
                    names = [f.name for f in frame.fields]
                    idx = tuple(names.index(n) if n in names else -1 for n in _RECORD_FIELDS)
                    entry = (d, idx)
                    layouts[id(d)] = entry
                fields = frame.fields
                i_ts, i_lat, i_lon, i_dist, i_ealt, i_alt, i_espd, i_spd = entry[1]
                ts.append(fields[i_ts].value if i_ts >= 0 else None)
                la = fields[i_lat].value if i_lat >= 0 else None
                lo = fields[i_lon].value if i_lon >= 0 else None
                lat.append(la)
                lon.append(lo)
                dist.append(fields[i_dist].value if i_dist >= 0 else None)
                a = fields[i_ealt].value if i_ealt >= 0 else None
                if a is None and i_alt >= 0:
                    a = fields[i_alt].value
                alt.append(a)
                s = fields[i_espd].value if i_espd >= 0 else None
                if s is None and i_spd >= 0:
                    s = fields[i_spd].value
                speed.append(s)
            elif num == _SESSION_MESG:
                values = {f.name: f.value for f in frame.fields if f.name in _SESSION_FIELDS}
                out.sessions.append(_Session(values))
            elif num == 12:  # sport
                values = {f.name: f.value for f in frame.fields}
                out.sports.append((values.get("sport"), values.get("sub_sport")))
            elif num == 0 and not out.file_id:  # file_id
                out.file_id = {f.name: f.value for f in frame.fields}
            elif num == 34:  # activity
                out.activity = {f.name: f.value for f in frame.fields}
    except fitdecode.FitHeaderError as exc:
        if not (ts or out.sessions):
            raise BadActivity("not a FIT file") from exc
        out.damaged = "corrupt header"
    except fitdecode.FitEOFError:
        out.damaged = "truncated"
    except fitdecode.FitCRCError:
        out.damaged = "crc mismatch"
    except _FIT_ERRORS as exc:
        out.damaged = f"damaged ({type(exc).__name__})"
    finally:
        reader.close()
    return out


def _fit_time(value: object) -> datetime | None:
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value >= _FIT_DATETIME_MIN
    ):
        return datetime.fromtimestamp(_FIT_EPOCH_S + value, UTC)
    return None


def _fit_latlng(lat: object, lon: object) -> tuple[float, float] | None:
    if isinstance(lat, int) and isinstance(lon, int):
        return (lat * _SEMICIRCLE_DEG, lon * _SEMICIRCLE_DEG)
    return None


def _sum_opt(values: Iterable[object]) -> float | None:
    found = [v for v in (_opt_float(x) for x in values) if v is not None]
    return float(sum(found)) if found else None


def _read_fit(data: bytes, *, source: str, source_id: str) -> Activity:
    """Raises BadActivity for a file that is not FIT or holds neither records nor a session."""
    if len(data) < 12 or data[8:12] != b".FIT":
        raise BadActivity("not a FIT file")
    fit = _collect_fit(data)
    if not fit.ts and not fit.sessions:
        raise BadActivity("no track points or records")

    ts_raw = _arr(fit.ts)
    raw: dict[str, Any] = {"format": "fit"}
    if fit.damaged:
        raw["damaged"] = fit.damaged

    sessions = fit.sessions
    run_sessions = [s for s in sessions if s.hillsync_sport in RUN_SPORTS]
    multisport = len(sessions) > 1 or any(
        s.sport == "multisport" or s.sub_sport == "auto_multi_sport" for s in sessions
    )
    chosen: list[_Session]
    if multisport and run_sessions:
        chosen = run_sessions
        sport = (
            "run"
            if len({s.hillsync_sport for s in run_sessions}) != 1
            else run_sessions[0].hillsync_sport
        )
    elif sessions:
        chosen = [sessions[0]] if multisport else sessions
        sport = sessions[0].hillsync_sport
    else:
        chosen = []
        first = fit.sports[0] if fit.sports else (None, None)
        sport = _fit_sport(first[0], first[1])

    n = len(fit.ts)
    mask = np.ones(n, dtype=bool)
    segment: npt.NDArray[np.int64] | None = None
    if multisport and chosen:
        # A record belongs to the session whose time span holds it; each leg is a segment
        # so that the transition between two legs is no distance.
        mask[:] = False
        segment = np.zeros(n, dtype=np.int64)
        for k, s in enumerate(chosen):
            start = s.fields.get("start_time")
            elapsed = _opt_float(s.fields.get("total_elapsed_time"))
            if not isinstance(start, int) or elapsed is None:
                continue
            inside = (ts_raw >= start) & (ts_raw <= start + elapsed + 1)
            mask |= inside
            segment[inside] = k

    lat = _arr(fit.lat)[mask] * _SEMICIRCLE_DEG
    lon = _arr(fit.lon)[mask] * _SEMICIRCLE_DEG
    alt = _arr(fit.alt)[mask]
    dist = _arr(fit.dist)[mask]
    speed = _arr(fit.speed)[mask]
    times = ts_raw[mask]
    seg = segment[mask] if segment is not None else None
    has_pos = bool(np.isfinite(lat).any())

    if seg is not None and dist.size and np.isfinite(dist).any():
        # Each leg's distance counts from its own zero; make it cumulative over the legs.
        dist = _legs_cumulative(dist, seg)

    track: Track | None = None
    if alt.size:
        finite_t = times[np.isfinite(times)]
        t0 = finite_t[0] if finite_t.size else np.nan
        track = Track(
            altitude_m=alt,
            distance_m=dist if np.isfinite(dist).any() else None,
            lat=lat if has_pos else None,
            lon=lon if has_pos else None,
            time_s=times - t0 if finite_t.size else None,
            speed_mps=speed if np.isfinite(speed).any() else None,
            segment=seg,
        )

    # Start time: the session's, else the first record's, else the file's creation time.
    start_time, start_from = _fit_start(fit, chosen, times)
    raw["start_time_from"] = start_from

    distance = _sum_opt(s.fields.get("total_distance") for s in chosen)
    if distance is None and dist.size and np.isfinite(dist).any():
        distance = float(np.nanmax(dist))
    moving = _sum_opt(s.fields.get("total_timer_time") for s in chosen)
    elapsed = _sum_opt(s.fields.get("total_elapsed_time") for s in chosen)
    gain = _sum_opt(s.fields.get("total_ascent") for s in chosen)
    loss = _sum_opt(s.fields.get("total_descent") for s in chosen)

    start_ll = end_ll = None
    if chosen:
        start_ll = _fit_latlng(
            chosen[0].fields.get("start_position_lat"), chosen[0].fields.get("start_position_long")
        )
        end_ll = _fit_latlng(
            chosen[-1].fields.get("end_position_lat"), chosen[-1].fields.get("end_position_long")
        )
    if has_pos:
        ok = np.isfinite(lat) & np.isfinite(lon)
        if start_ll is None:
            start_ll = (float(lat[ok][0]), float(lon[ok][0]))
        if end_ll is None:
            end_ll = (float(lat[ok][-1]), float(lon[ok][-1]))

    sub_sports = {s.sub_sport for s in chosen} | {sub for _, sub in fit.sports}
    indoor = sport in _INDOOR_SPORTS or bool(sub_sports & _FIT_INDOOR_SUB_SPORTS)
    if not indoor and not has_pos and not distance and (elapsed or 0) > 0:
        # No position and no distance over a real duration: a trainer or a treadmill
        # without foot pod, whatever the sub_sport says.
        indoor = True
        raw["indoor_from"] = "no position and no distance"

    raw["sport"] = sport
    raw["sessions"] = [_json_safe(_session_summary(s)) for s in sessions]
    if multisport:
        raw["multisport"] = True
    raw["device"] = _json_safe(
        {
            k: fit.file_id.get(k)
            for k in ("manufacturer", "garmin_product", "product", "serial_number")
            if fit.file_id.get(k) is not None
        }
    )
    raw["records"] = n
    return Activity(
        source=source,
        source_id=source_id,
        sport=sport,
        start_time=start_time,
        distance_m=distance,
        moving_time_s=moving,
        elapsed_time_s=elapsed,
        reported_gain_m=gain,
        reported_loss_m=loss,
        start_latlng=start_ll,
        end_latlng=end_ll,
        indoor=indoor,
        track=track,
        raw=json.loads(json.dumps(raw)),
        elevation_source="file",
    )


def _legs_cumulative(dist: FloatArray, seg: npt.NDArray[np.int64]) -> FloatArray:
    out = dist.copy()
    offset = 0.0
    for k in np.unique(seg):
        sel = seg == k
        leg = dist[sel]
        finite = leg[np.isfinite(leg)]
        if not finite.size:
            continue
        base = finite[0]
        out[sel] = leg - base + offset
        offset += float(finite[-1] - base)
    return out


def _session_summary(s: _Session) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key, value in s.fields.items():
        if key.endswith(("_lat", "_long")):
            continue
        t = _fit_time(value) if key in ("start_time", "timestamp") else None
        summary[key] = t if t is not None else value
    return summary


def _fit_start(
    fit: _FitData, chosen: Sequence[_Session], times: FloatArray
) -> tuple[datetime, str]:
    """Raises BadActivity when the file records no usable time at all."""
    if chosen:
        t = _fit_time(chosen[0].fields.get("start_time"))
        if t is not None:
            return t, "session"
    finite = times[np.isfinite(times)]
    if finite.size:
        t = _fit_time(float(finite[0]))
        if t is not None:
            return t, "record"
    t = _fit_time(fit.file_id.get("time_created"))
    if t is not None:
        return t, "file_id"
    # Timestamps counted from device power-on: the activity message's local timestamp
    # is the only absolute time; its offset from UTC is unknown, so it is taken as UTC.
    local = _fit_time(fit.activity.get("local_timestamp"))
    sys_ts = fit.activity.get("timestamp")
    if local is not None and isinstance(sys_ts, int):
        first: object = chosen[0].fields.get("start_time") if chosen else None
        if not isinstance(first, int) and finite.size:
            first = float(finite[0])
        if isinstance(first, int | float):
            return datetime.fromtimestamp(local.timestamp() - (sys_ts - first), UTC), (
                "activity local_timestamp"
            )
        return local, "activity local_timestamp"
    raise BadActivity("no timestamp in the file")


# --------------------------------------------------------------------------- XML


def _parse_xml(data: bytes, kind: str) -> etree._Element:
    """Raises BadActivity for bytes that are not well-formed XML."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        # Some Garmin exports put blank lines before the XML declaration, which XML forbids.
        root = etree.fromstring(data.lstrip(b" \t\r\n"), parser=parser)
    except etree.XMLSyntaxError as exc:
        raise BadActivity(f"not a {kind} file") from exc
    if root is None:
        raise BadActivity(f"not a {kind} file")
    return root


def _local(el: etree._Element) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def _child_text(el: etree._Element, name: str) -> str | None:
    for child in el:
        if _local(child) == name:
            return child.text.strip() if child.text else None
    return None


def _float_text(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    # A time without an offset in GPX/TCX is UTC by both formats' definitions.
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _times_to_seconds(
    times: Sequence[datetime | None],
) -> tuple[FloatArray | None, datetime | None]:
    known = [t for t in times if t is not None]
    if not known:
        return None, None
    t0 = known[0]
    return (
        np.array(
            [np.nan if t is None else (t - t0).total_seconds() for t in times], dtype=np.float64
        ),
        t0,
    )


def _read_gpx(
    data: bytes, *, source: str, source_id: str, fallback_time: datetime | None
) -> Activity:
    """Raises BadActivity for a file that is not GPX or holds no track points."""
    root = _parse_xml(data, "GPX")
    if _local(root) != "gpx":
        raise BadActivity("not a GPX file")
    lat: list[float] = []
    lon: list[float] = []
    ele: list[float | None] = []
    times: list[datetime | None] = []
    segs: list[int] = []
    seg_no = 0
    sport_name: str | None = None
    name: str | None = None
    for trk in root.iter("{*}trk"):
        if sport_name is None:
            sport_name = _child_text(trk, "type")
        if name is None:
            name = _child_text(trk, "name")
        for trkseg in trk.iter("{*}trkseg"):
            found = False
            for pt in trkseg.iter("{*}trkpt"):
                la, lo = _float_text(pt.get("lat")), _float_text(pt.get("lon"))
                if la is None or lo is None:
                    continue
                found = True
                lat.append(la)
                lon.append(lo)
                ele.append(_float_text(_child_text(pt, "ele")))
                times.append(_parse_time(_child_text(pt, "time")))
                segs.append(seg_no)
            if found:
                seg_no += 1
    if not lat:
        raise BadActivity("no track points")
    lat_a, lon_a = np.array(lat, dtype=np.float64), np.array(lon, dtype=np.float64)
    seg_a = np.array(segs, dtype=np.int64)
    dist = _cumulative_distance(lat_a, lon_a, seg_a)
    time_s, t0 = _times_to_seconds(times)
    raw: dict[str, Any] = {"format": "gpx", "type": sport_name, "segments": seg_no}
    creator = root.get("creator")
    if creator:
        raw["creator"] = creator[:100]
    start_time = t0
    raw["start_time_from"] = "track"
    if start_time is None:
        meta_time = None
        for meta in root.iter("{*}metadata"):
            meta_time = _parse_time(_child_text(meta, "time"))
            break
        if meta_time is not None:
            start_time, raw["start_time_from"] = meta_time, "metadata"
        elif fallback_time is not None:
            start_time, raw["start_time_from"] = fallback_time, "mtime"
        else:
            start_time, raw["start_time_from"] = datetime.now(UTC), "now"
    sport = map_sport(sport_name)
    elapsed = float(np.nanmax(time_s)) if time_s is not None and np.isfinite(time_s).any() else None
    return Activity(
        source=source,
        source_id=source_id,
        sport=sport,
        start_time=start_time,
        name=name,
        distance_m=float(dist[-1]),
        moving_time_s=_moving_time(dist, time_s),
        elapsed_time_s=elapsed,
        start_latlng=(lat[0], lon[0]),
        end_latlng=(lat[-1], lon[-1]),
        indoor=sport in _INDOOR_SPORTS,
        track=Track(
            altitude_m=_arr(ele),
            distance_m=dist,
            lat=lat_a,
            lon=lon_a,
            time_s=time_s,
            segment=seg_a if seg_no > 1 else None,
        ),
        raw=raw,
        elevation_source="file",
    )


#: Slower than this between two samples is standing (a traffic light, a photo stop).
_MOVING_MPS = 0.5
#: A longer gap between two samples is a pause of the recording, not movement.
_MAX_SAMPLE_GAP_S = 60.0


def _moving_time(dist: FloatArray, time_s: FloatArray | None) -> float | None:
    """Seconds spent moving, from a track's distance and time (GPX files give no total)."""
    if time_s is None or dist.shape[0] < 2:
        return None
    dt = np.diff(time_s)
    dd = np.diff(dist)
    with np.errstate(invalid="ignore", divide="ignore"):
        moving = (dt > 0) & (dt <= _MAX_SAMPLE_GAP_S) & (dd / dt >= _MOVING_MPS)
    total = float(np.nansum(np.where(moving, dt, 0.0)))
    return total if total > 0 else None


def _read_tcx(data: bytes, *, source: str, source_id: str) -> Activity:
    """Raises BadActivity for a file that is not TCX or holds no track points."""
    root = _parse_xml(data, "TCX")
    if _local(root) != "TrainingCenterDatabase":
        raise BadActivity("not a TCX file")
    activity = next(iter(root.iter("{*}Activity")), None)
    if activity is None:
        raise BadActivity("no track points")
    sport_attr = activity.get("Sport")
    # TCX has only Running/Biking/Other; "Other" says nothing, so it is taken as a run.
    sport = "ride" if sport_attr == "Biking" else "run"
    lat: list[float | None] = []
    lon: list[float | None] = []
    ele: list[float | None] = []
    dist: list[float | None] = []
    times: list[datetime | None] = []
    segs: list[int] = []
    seg_no = 0
    lap_time = lap_dist = 0.0
    laps = 0
    for lap in activity.iter("{*}Lap"):
        laps += 1
        lap_time += _float_text(_child_text(lap, "TotalTimeSeconds")) or 0.0
        lap_dist += _float_text(_child_text(lap, "DistanceMeters")) or 0.0
        for trk in lap.iter("{*}Track"):
            found = False
            for tp in trk.iter("{*}Trackpoint"):
                found = True
                la = lo = None
                for pos in tp.iter("{*}Position"):
                    la = _float_text(_child_text(pos, "LatitudeDegrees"))
                    lo = _float_text(_child_text(pos, "LongitudeDegrees"))
                lat.append(la)
                lon.append(lo)
                ele.append(_float_text(_child_text(tp, "AltitudeMeters")))
                dist.append(_float_text(_child_text(tp, "DistanceMeters")))
                times.append(_parse_time(_child_text(tp, "Time")))
                segs.append(seg_no)
            if found:
                seg_no += 1
    if not times:
        raise BadActivity("no track points")
    time_s, t0 = _times_to_seconds(times)
    start_time = _parse_time(_child_text(activity, "Id")) or t0
    if start_time is None:
        raise BadActivity("no timestamp in the file")
    lat_a, lon_a = _arr(lat), _arr(lon)
    has_pos = bool(np.isfinite(lat_a).any())
    dist_a = _arr(dist)
    seg_a = np.array(segs, dtype=np.int64)
    distance: float | None = lap_dist if laps and lap_dist > 0 else None
    if not np.isfinite(dist_a).any() and has_pos:
        ok = np.isfinite(lat_a) & np.isfinite(lon_a)
        d = _cumulative_distance(lat_a[ok], lon_a[ok], seg_a[ok])
        dist_a = np.full(len(lat), np.nan)
        dist_a[ok] = d
    if distance is None and np.isfinite(dist_a).any():
        distance = float(np.nanmax(dist_a))
    start_ll = end_ll = None
    if has_pos:
        ok = np.isfinite(lat_a) & np.isfinite(lon_a)
        start_ll = (float(lat_a[ok][0]), float(lon_a[ok][0]))
        end_ll = (float(lat_a[ok][-1]), float(lon_a[ok][-1]))
    elapsed = float(np.nanmax(time_s)) if time_s is not None and np.isfinite(time_s).any() else None
    return Activity(
        source=source,
        source_id=source_id,
        sport=sport,
        start_time=start_time,
        distance_m=distance,
        moving_time_s=lap_time if laps and lap_time > 0 else None,
        elapsed_time_s=elapsed,
        start_latlng=start_ll,
        end_latlng=end_ll,
        indoor=False,
        track=Track(
            altitude_m=_arr(ele),
            distance_m=dist_a if np.isfinite(dist_a).any() else None,
            lat=lat_a if has_pos else None,
            lon=lon_a if has_pos else None,
            time_s=time_s,
            segment=seg_a if seg_no > 1 else None,
        ),
        raw={
            "format": "tcx",
            "sport": sport_attr,
            "laps": laps,
            "total_time_s": lap_time,
            "distance_m": lap_dist,
            "start_time_from": "id" if _parse_time(_child_text(activity, "Id")) else "track",
        },
        elevation_source="file",
    )
