"""Readers of activity files: FIT (fitdecode), GPX and TCX (lxml), and their .gz forms.

Every reader turns one file into its activities (a TCX may hold several) or raises
`BadActivity` with a one-line reason: a damaged file never shows a traceback and never stops
the files beside it. What a damaged file held before the damage is kept, with a `warning`,
alike for every format: devices that crash or run out of battery, and copies still being
written, leave exactly such files behind. FIT files are read with their CRCs checked, so a
flipped bit is never stored as silently different figures. GPX and TCX are parsed
incrementally: a long track never sits in memory as an XML tree.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import math
import struct
import zipfile
import zlib
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import fitdecode
import numpy as np
import numpy.typing as npt
from lxml import etree

from hillsync.errors import BadActivity
from hillsync.model import RUN_SPORTS, UNKNOWN_SPORT, Activity, Track
from hillsync.sources.filenames import is_activity_file
from hillsync.sources.sport import Movement, infer_sport

FloatArray = npt.NDArray[np.float64]


class _Readable(Protocol):
    """A binary stream (an open file, a GzipFile, a BytesIO)."""

    def read(self, size: int = -1, /) -> bytes: ...


#: An activity file bigger than this (after decompression) is refused: no device writes one,
#: and a zip or gzip bomb must not exhaust the memory of a small home server.
MAX_FILE_BYTES = 256 * 1024 * 1024

_FIT_EPOCH_S = 631065600  # 1989-12-31T00:00:00Z, where FIT timestamps count from
_FIT_DATETIME_MIN = 0x10000000  # below this a FIT timestamp counts from device power-on
_SEMICIRCLE_DEG = 180.0 / 2**31
_RECORD_MESG = 20
_SESSION_MESG = 18
_LENGTH_MESG = 101
#: A step between two records longer than this in metres, and faster than
#: _MAX_RECORD_MPS, is damage (a flipped bit, a device bug), not movement.
_MAX_RECORD_JUMP_M = 1000.0
_MAX_RECORD_MPS = 100.0
#: FIT file types (file_id.type) that are not activities, as a runner would call them.
_FIT_NOT_ACTIVITY: Mapping[str, str] = {
    "course": "a course (planned route), not an activity",
    "workout": "a workout (planned training), not an activity",
    "settings": "device settings, not an activity",
    "device": "a device description, not an activity",
    "sport": "sport settings, not an activity",
    "schedules": "a training schedule, not an activity",
    "totals": "lifetime totals, not an activity",
    "goals": "training goals, not an activity",
    "weight": "weight measurements, not an activity",
    "blood_pressure": "blood pressure measurements, not an activity",
    "monitoring_a": "daily monitoring data, not an activity",
    "monitoring_b": "daily monitoring data, not an activity",
    "monitoring_daily": "daily monitoring data, not an activity",
    "activity_summary": "an activity summary without records, not an activity",
    "segment": "a segment (planned route), not an activity",
    "segment_list": "a segment list, not an activity",
}

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
    "mountainbikeride": "ride",
    "gravel_cycling": "ride",
    "gravelride": "ride",
    "indoor_cycling": "ride",
    "virtual_ride": "ride",
    "virtualride": "ride",
    "e_bike_ride": "ride",
    "e_biking": "ride",
    "ebikeride": "ride",
    "emountainbikeride": "ride",
    "velomobile": "ride",
    "handcycle": "ride",
    "swim": "swim",
    "swimming": "swim",
    "lap_swimming": "swim",
    "open_water_swimming": "swim",
    "walk": "walk",
    "walking": "walk",
    "casual_walking": "walk",
    "speed_walking": "walk",
    "hike": "hike",
    "hiking": "hike",
}
#: What a file writes when it does not say: not a sport.
_UNTYPED_NAMES = frozenset({"", "other", "generic", "unknown", "none", "all", "uncategorized"})
#: Strava's numeric GPX <type> codes (its legacy activity type enumeration, in the order
#: the types were introduced). Code 17 (VirtualRide) was once read as a run.
_STRAVA_TYPE_CODES: Mapping[str, str] = {
    "1": "ride",  # Ride
    "2": "other",  # AlpineSki
    "3": "other",  # BackcountrySki
    "4": "hike",  # Hike
    "5": "other",  # IceSkate
    "6": "other",  # InlineSkate
    "7": "other",  # NordicSki
    "8": "other",  # RollerSki
    "9": "run",  # Run
    "10": "walk",  # Walk
    "11": "other",  # Workout
    "12": "other",  # Snowboard
    "13": "other",  # Snowshoe
    "14": "other",  # Kitesurf
    "15": "other",  # Windsurf
    "16": "swim",  # Swim
    "17": "ride",  # VirtualRide
    "18": "ride",  # EBikeRide
    "19": "ride",  # Velomobile
    "21": "other",  # Canoeing
    "22": "other",  # Kayaking
    "23": "other",  # Rowing
    "24": "other",  # StandUpPaddling
    "25": "other",  # Surfing
    "26": "other",  # Crossfit
    "27": "other",  # Elliptical
    "28": "other",  # RockClimbing
    "29": "other",  # StairStepper
    "30": "other",  # WeightTraining
    "31": "other",  # Yoga
    "51": "ride",  # Handcycle
    "52": "other",  # Wheelchair
    "53": "virtual_run",  # VirtualRun
}
_INDOOR_SPORTS = frozenset({"treadmill", "virtual_run"})
_FIT_INDOOR_SUB_SPORTS = frozenset(
    {"treadmill", "indoor_cycling", "spin", "virtual_activity", "indoor_running", "trainer"}
)
#: What `[sync] untyped` may say: infer the sport from the movement, or take it as a run.
UNTYPED_CHOICES: tuple[str, ...] = ("infer", "run")


def _sport_key(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _stated_sport(name: str | None) -> str | None:
    """hillsync's sport for a name a file states; None when the name states no sport.

    A name hillsync does not know is still a stated sport: it is "other", never a run.
    """
    if name is None:
        return None
    key = _sport_key(name)
    if key in _UNTYPED_NAMES:
        return None
    if key in _STRAVA_TYPE_CODES:
        return _STRAVA_TYPE_CODES[key]
    if key in _SPORT_NAMES:
        return _SPORT_NAMES[key]
    if key.replace("_", "") in _SPORT_NAMES:
        return _SPORT_NAMES[key.replace("_", "")]
    return "other"


def map_sport(name: str | None) -> str:
    """Map a file's or export's sport name onto hillsync's.

    A missing or non-committal name ("Other", "generic") is `unknown`; a name hillsync does
    not know is "other". Neither is ever a run.
    """
    stated = _stated_sport(name)
    return UNKNOWN_SPORT if stated is None else stated


def _resolve_sport(
    stated: str | None, movement: Movement, untyped: str, raw: dict[str, Any]
) -> str:
    """The stated sport, else `untyped`'s rule: "run", or inferred from the movement."""
    if stated is not None:
        raw["sport_from"] = "file"
        return stated
    if untyped == "run":
        raw["sport_from"] = "untyped = run"
        return "run"
    inferred = infer_sport(movement)
    raw["sport_from"] = "inferred"
    raw["sport_why"] = inferred.why
    return inferred.sport


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


def read_activities(
    path: Path, *, source: str = "file", source_id: str | None = None, untyped: str = "infer"
) -> list[Activity]:
    """Every activity of one FIT/GPX/TCX file (or .fit.gz/.gpx.gz/.tcx.gz).

    GPX and TCX are read as a stream from the file. A file holding several activities
    (separate TCX <Activity> elements) gives one each, numbered by `part`, with source ids
    `<source_id>#<part>`. `untyped` says what a file that does not state its sport is:
    "infer" (from how it moved) or "run". Raises BadActivity with a one-line reason when
    the file cannot be read or holds no activity (also for a missing or unreadable file).
    """
    if not is_activity_file(path.name):
        raise BadActivity("unknown file type (expected .fit, .gpx or .tcx)")
    sid = source_id if source_id is not None else str(path)
    lower = path.name.lower()
    try:
        st = path.stat()
        if st.st_size > MAX_FILE_BYTES:
            raise BadActivity("file too large")
        if st.st_size == 0:
            raise BadActivity("empty file")
        mtime = datetime.fromtimestamp(st.st_mtime, UTC)
        if lower.endswith((".fit", ".fit.gz")):
            return read_activities_bytes(
                path.read_bytes(), path.name, source=source, source_id=sid, untyped=untyped
            )
        with path.open("rb") as fh:
            if lower.endswith(".gz"):
                with gzip.GzipFile(fileobj=fh) as gz:
                    return _read_xml(
                        gz, lower[:-3], source=source, source_id=sid, fallback_time=mtime,
                        untyped=untyped,
                    )  # fmt: skip
            return _read_xml(
                fh, lower, source=source, source_id=sid, fallback_time=mtime, untyped=untyped
            )
    except OSError as exc:
        raise BadActivity(describe_file_error(exc)) from exc
    except (EOFError, zlib.error) as exc:
        raise BadActivity(
            "truncated gzip" if isinstance(exc, EOFError) else "corrupt gzip"
        ) from exc


def read_activity(
    path: Path, *, source: str = "file", source_id: str | None = None, untyped: str = "infer"
) -> Activity:
    """The first (usually only) activity of a file; see `read_activities`.

    Raises BadActivity with a one-line reason.
    """
    return read_activities(path, source=source, source_id=source_id, untyped=untyped)[0]


def _read_xml(
    fh: _Readable,
    lower: str,
    *,
    source: str,
    source_id: str,
    fallback_time: datetime | None,
    untyped: str,
) -> list[Activity]:
    """Raises BadActivity (also for gzip damage met while streaming)."""
    kind = "GPX" if lower.endswith(".gpx") else "TCX"
    try:
        if kind == "GPX":
            return _read_gpx(
                fh, source=source, source_id=source_id, fallback_time=fallback_time,
                untyped=untyped,
            )  # fmt: skip
        return _read_tcx(fh, source=source, source_id=source_id, untyped=untyped)
    except gzip.BadGzipFile as exc:
        raise BadActivity("not a gzip file") from exc
    except EOFError as exc:
        raise BadActivity("truncated gzip") from exc
    except zlib.error as exc:
        raise BadActivity("corrupt gzip") from exc
    except _DAMAGE_ERRORS as exc:
        raise BadActivity(f"damaged {kind} file ({type(exc).__name__})") from exc


def read_activities_bytes(
    data: bytes,
    filename: str,
    *,
    source: str = "file",
    source_id: str | None = None,
    fallback_time: datetime | None = None,
    untyped: str = "infer",
) -> list[Activity]:
    """Every activity in the bytes of a file; the filename's extension selects the format.

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
    if lower.endswith((".gpx", ".tcx")):
        return _read_xml(
            io.BytesIO(data), lower, source=source, source_id=sid, fallback_time=fallback_time,
            untyped=untyped,
        )  # fmt: skip
    try:
        if lower.endswith(".fit"):
            return [_read_fit(data, source=source, source_id=sid, untyped=untyped)]
    except _DAMAGE_ERRORS as exc:
        # Damaged bytes can surface anywhere past the decoder (a field of the wrong type, an
        # empty array where one was promised): whatever the path, it is this file's fault.
        raise BadActivity(f"damaged FIT file ({type(exc).__name__})") from exc
    raise BadActivity("unknown file type (expected .fit, .gpx or .tcx)")


def read_activity_bytes(
    data: bytes,
    filename: str,
    *,
    source: str = "file",
    source_id: str | None = None,
    fallback_time: datetime | None = None,
    untyped: str = "infer",
) -> Activity:
    """The first (usually only) activity in a file's bytes; see `read_activities_bytes`.

    Raises BadActivity with a one-line reason.
    """
    return read_activities_bytes(
        data, filename, source=source, source_id=source_id, fallback_time=fallback_time,
        untyped=untyped,
    )[0]  # fmt: skip


def activity_members(zf: zipfile.ZipFile) -> list[str]:
    """The names of the activity files inside a zip, in a stable (sorted) order."""
    return sorted(
        info.filename
        for info in zf.infolist()
        if not info.is_dir() and is_activity_file(info.filename)
    )


def read_zip_member(
    zf: zipfile.ZipFile,
    member: str,
    *,
    source: str = "file",
    source_id: str | None = None,
    untyped: str = "infer",
) -> list[Activity]:
    """The activities of one activity file held in a zip (a Garmin export or download).

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
    return read_activities_bytes(
        data,
        member,
        source=source,
        source_id=source_id if source_id is not None else member,
        fallback_time=fallback,
        untyped=untyped,
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
            return read_zip_member(zf, members[0], source=source, source_id=source_id)[0]
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
    def hillsync_sport(self) -> str | None:
        return _fit_sport(self.sport, self.sub_sport)

    @property
    def is_running_leg(self) -> bool:
        """A leg that states running (not generic, not a transition)."""
        return self.sport == "running" or (
            self.sport is not None and _stated_sport(self.sport) in RUN_SPORTS
        )


_FIT_RUN_SUB_SPORTS: Mapping[str, str] = {
    "trail": "trail_run",
    "treadmill": "treadmill",
    "indoor_running": "treadmill",
    "track": "track_run",
    "virtual_activity": "virtual_run",
}


def _fit_sport(sport: str | None, sub_sport: str | None) -> str | None:
    """hillsync's sport for a FIT sport/sub_sport; None when the file does not say."""
    if sport in (None, "generic"):
        # A generic sport with a running sub_sport still says what it is.
        return _FIT_RUN_SUB_SPORTS.get(sub_sport or "")
    if sport == "running" or _stated_sport(sport) == "run":
        return _FIT_RUN_SUB_SPORTS.get(sub_sport or "", "run")
    return _stated_sport(sport) or "other"


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
    "pool_length",
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
    "cadence",
    "stance_time",
    "vertical_oscillation",
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
        self.cad: list[float | None] = []
        self.dynamics = False
        self.lengths = 0
        self.sessions: list[_Session] = []
        self.sports: list[tuple[str | None, str | None]] = []
        self.file_id: dict[str, Any] = {}
        self.activity: dict[str, Any] = {}
        self.damaged: str | None = None
        self.crc_failed = False


def _collect_fit(data: bytes) -> _FitData:
    """One pass over every frame of a FIT file (chained files included), tolerating damage.

    The processor is switched off and the wanted record fields are located once per
    message definition: per-record Python work is what makes FIT imports slow.
    """
    out = _FitData()
    # Index of each wanted record field in a definition's field list, by definition.
    layouts: dict[int, tuple[object, tuple[int, ...]]] = {}
    ts, lat, lon, dist, alt, speed = out.ts, out.lat, out.lon, out.dist, out.alt, out.speed
    cad = out.cad
    data, unfinished = _finish_header(data)
    # A file whose header was never finished has no CRC to check. The CRCs are checked
    # here rather than by fitdecode, whose per-byte loop costs more than the decoding.
    if not unfinished and not fit_crcs_match(data):
        out.damaged = "crc mismatch"
        out.crc_failed = True
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
                i_ts, i_lat, i_lon, i_dist, i_ealt, i_alt, i_espd, i_spd, i_cad, i_st, i_vo = entry[
                    1
                ]
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
                cad.append(fields[i_cad].value if i_cad >= 0 else None)
                if not out.dynamics and (
                    (i_st >= 0 and fields[i_st].value is not None)
                    or (i_vo >= 0 and fields[i_vo].value is not None)
                ):
                    out.dynamics = True
            elif num == _LENGTH_MESG:
                out.lengths += 1
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
        out.crc_failed = True
    except _FIT_ERRORS as exc:
        out.damaged = f"damaged ({type(exc).__name__})"
    finally:
        reader.close()
    if unfinished and out.damaged in (None, "truncated"):
        out.damaged = "unfinished header"
    return out


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


#: FIT's CRC-16 (polynomial 0x8005, reflected), one table entry per byte value.
_CRC_TABLE = _crc_table()


def fit_crc(data: bytes | memoryview, crc: int = 0) -> int:
    """FIT's CRC-16 of `data`, continuing from `crc`. A block followed by its own CRC
    (little-endian) gives 0."""
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def fit_crcs_match(data: bytes) -> bool:
    """Whether every header CRC and file CRC of a (possibly chained) FIT file matches.

    A CRC of 0 means none was written (the SDK allows it); a file cut before its CRC is
    not judged here (the reader reports it truncated).
    """
    view = memoryview(data)
    pos = 0
    while pos + 12 <= len(data):
        size = data[pos]
        if size not in (12, 14) or data[pos + 8 : pos + 12] != b".FIT":
            return True  # not a chained header: the reader reports the damage
        if size == 14 and pos + 14 <= len(data):
            stored = struct.unpack_from("<H", data, pos + 12)[0]
            if stored and fit_crc(view[pos : pos + 12]) != stored:
                return False
        end = pos + size + struct.unpack_from("<I", data, pos + 4)[0]
        if end + 2 > len(data):
            return True
        if struct.unpack_from("<H", data, end)[0] and fit_crc(view[pos : end + 2]) != 0:
            return False
        pos = end + 2
    return True


def _finish_header(data: bytes) -> tuple[bytes, bool]:
    """The file with a header the device never finished completed; whether it was.

    A FIT file's header says how many data bytes follow. A device that crashed or lost
    power mid-activity leaves 0 there: everything after the header is then taken as data,
    and the header's own CRC is cleared (0 means none). A size beyond the file's end is a
    cut copy instead, which the reader salvages as truncated.
    """
    size = data[0]
    if size not in (12, 14) or len(data) <= size:
        return data, False
    declared = struct.unpack_from("<I", data, 4)[0]
    if declared != 0:
        return data, False
    header = bytearray(data[:size])
    struct.pack_into("<I", header, 4, len(data) - size)
    if size == 14:
        header[12:14] = b"\0\0"
    return bytes(header) + data[size:], True


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


def _damage_index(ts: FloatArray, dist: FloatArray) -> int | None:
    """The first record whose distance jumps implausibly far ahead of the one before."""
    ok = np.flatnonzero(np.isfinite(dist))
    if ok.size < 2:
        return None
    step = np.diff(dist[ok])
    dt = np.diff(ts[ok])
    dt = np.where(np.isfinite(dt) & (dt > 1.0), dt, 1.0)
    bad = np.flatnonzero((step > _MAX_RECORD_JUMP_M) & (step > _MAX_RECORD_MPS * dt))
    return int(ok[bad[0] + 1]) if bad.size else None


def _read_fit(data: bytes, *, source: str, source_id: str, untyped: str = "infer") -> Activity:
    """Raises BadActivity for a file that is not FIT, is not an activity (a course, a
    workout, settings, monitoring), or holds neither records nor a session."""
    if len(data) < 12 or data[8:12] != b".FIT":
        raise BadActivity("not a FIT file")
    fit = _collect_fit(data)
    file_type = fit.file_id.get("type")
    if isinstance(file_type, str) and file_type != "activity":
        raise BadActivity(
            _FIT_NOT_ACTIVITY.get(file_type, f"a FIT {file_type} file, not an activity")
        )
    if isinstance(file_type, int) and file_type != 4:
        raise BadActivity(f"a FIT file of type {file_type}, not an activity")
    if not fit.ts and not fit.sessions:
        raise BadActivity("no track points or records")

    ts_raw = _arr(fit.ts)
    raw: dict[str, Any] = {"format": "fit"}
    cut_at = _damage_index(ts_raw, _arr(fit.dist))
    if cut_at is not None:
        fit.damaged = f"implausible distance jump at record {cut_at}"
        for column in (fit.ts, fit.lat, fit.lon, fit.dist, fit.alt, fit.speed, fit.cad):
            del column[cut_at:]
        ts_raw = ts_raw[:cut_at]
        if not fit.ts:
            raise BadActivity(f"damaged FIT file ({fit.damaged})")
    # After a failed CRC or a cut at the damage, the device's totals may hold the flipped
    # bit or describe records that were dropped: the records alone are measured.
    # A failed CRC or a file unparsable past some point may hold the flipped bit in the
    # totals themselves. A cut file keeps the totals it holds (from the parts read in
    # full), with the warning every damaged file carries.
    trust_totals = (
        not fit.crc_failed and cut_at is None and not (fit.damaged or "").startswith("damaged")
    )
    if fit.damaged:
        raw["damaged"] = fit.damaged
    if not trust_totals:
        raw["device_totals"] = "not used: the file is damaged"

    sessions = fit.sessions
    multisport = len(sessions) > 1 or any(
        s.sport == "multisport" or s.sub_sport == "auto_multi_sport" for s in sessions
    )
    run_legs = [s for s in sessions if s.is_running_leg]
    chosen: list[_Session]
    stated: str | None
    if multisport and run_legs:
        chosen = run_legs
        kinds = {s.hillsync_sport for s in run_legs}
        stated = "run" if len(kinds) != 1 else run_legs[0].hillsync_sport
    elif multisport and sessions:
        # A multisport file without a running leg is not a run, whatever its first leg.
        chosen = [sessions[0]]
        stated = "other"
    elif sessions:
        chosen = sessions
        stated = sessions[0].hillsync_sport
        if stated is None and fit.sports:
            stated = _fit_sport(*fit.sports[0])
    else:
        chosen = []
        first = fit.sports[0] if fit.sports else (None, None)
        stated = _fit_sport(first[0], first[1])

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

    totals = chosen if trust_totals else []
    distance = _sum_opt(s.fields.get("total_distance") for s in totals)
    if distance is None and dist.size and np.isfinite(dist).any():
        distance = float(np.nanmax(dist))
    moving = _sum_opt(s.fields.get("total_timer_time") for s in totals)
    elapsed = _sum_opt(s.fields.get("total_elapsed_time") for s in totals)
    if elapsed is None and times.size and np.isfinite(times).any():
        elapsed = float(np.nanmax(times) - np.nanmin(times))
    gain = _sum_opt(s.fields.get("total_ascent") for s in totals)
    loss = _sum_opt(s.fields.get("total_descent") for s in totals)
    cadence = _arr(fit.cad)[mask]
    pool = fit.lengths > 0 or any(_opt_float(s.fields.get("pool_length")) for s in sessions)
    sport = _resolve_sport(
        stated,
        Movement(
            time_s=times - np.nanmin(times) if np.isfinite(times).any() else None,
            distance_m=dist if np.isfinite(dist).any() else None,
            altitude_m=alt,
            cadence=cadence if np.isfinite(cadence).any() else None,
            position_share=float(np.isfinite(lat).mean()) if lat.size else 0.0,
            running_dynamics=fit.dynamics,
            pool=pool,
        ),
        untyped,
        raw,
    )

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
        warning=f"{fit.damaged}: classified from what precedes the damage" if fit.damaged else None,
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


class _Points:
    """Track samples as compact columns (8 bytes a value), appended point by point."""

    def __init__(self) -> None:
        self.lat = array("d")
        self.lon = array("d")
        self.ele = array("d")
        self.dist = array("d")
        self.time = array("d")
        self.cad = array("d")
        self.seg = array("q")

    def __len__(self) -> int:
        return len(self.time)

    def add(
        self,
        lat: float | None,
        lon: float | None,
        ele: float | None,
        dist: float | None,
        time: float | None,
        cad: float | None,
        seg: int,
    ) -> None:
        nan = math.nan
        self.lat.append(nan if lat is None else lat)
        self.lon.append(nan if lon is None else lon)
        self.ele.append(nan if ele is None else ele)
        self.dist.append(nan if dist is None else dist)
        self.time.append(nan if time is None else time)
        self.cad.append(nan if cad is None else cad)
        self.seg.append(seg)

    def column(self, name: str) -> FloatArray:
        values: array[float] = getattr(self, name)
        return np.frombuffer(values, dtype=np.float64).copy() if values else np.zeros(0)

    def segments(self) -> npt.NDArray[np.int64]:
        return np.frombuffer(self.seg, dtype=np.int64).copy() if self.seg else np.zeros(0, np.int64)


class _Prefixed(io.RawIOBase):
    """A stream with its leading blank lines skipped and a cap on the bytes read.

    Some Garmin exports put blank lines before the XML declaration, which XML forbids.
    Raises BadActivity (through the parser) past MAX_FILE_BYTES: a gzip bomb stops there.
    """

    def __init__(self, fh: _Readable) -> None:
        super().__init__()
        self._fh = fh
        head = fh.read(65536)
        self._head = head.lstrip(b" \t\r\n")
        self._read = len(head)
        #: The last bytes read: how the file ends tells a cut file from a damaged one.
        self.tail = head[-64:]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        chunk = self._fh.read(len(view))
        self._read += len(chunk)
        if chunk:
            self.tail = (self.tail + chunk)[-64:]
        if self._read > MAX_FILE_BYTES:
            raise BadActivity("file too large")
        view[: len(chunk)] = chunk
        return len(chunk)


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


def _epoch(text: str | None) -> float | None:
    t = _parse_time(text)
    return t.timestamp() if t is not None else None


def _descendant_text(el: etree._Element, name: str) -> str | None:
    """The text of the first descendant called `name` in any namespace (extensions)."""
    for child in el.iter():
        if _local(child) == name and child is not el:
            return child.text.strip() if child.text else None
    return None


def _release(el: etree._Element) -> None:
    """Free a processed element and the processed siblings before it (streaming)."""
    el.clear()
    parent = el.getparent()
    if parent is not None:
        while el.getprevious() is not None:
            del parent[0]


class _XmlEvents:
    """(event, element) pairs of a document read incrementally.

    A document cut off mid-file (a half-written or truncated file) ends the iteration
    quietly with `cut` set: every element whose end was seen is complete. Raises
    BadActivity for bytes that are not XML at all (nothing parsed before the error).
    """

    def __init__(
        self,
        fh: _Readable,
        kind: str,
        *,
        tags: tuple[str, ...] | None = None,
        events: tuple[str, ...] = ("start", "end"),
    ) -> None:
        self._stream = _Prefixed(fh)
        self._kind = kind
        #: Only these events of these elements (lxml's C parser skips the others' Python cost).
        self._tags = tags
        self._events = events
        self.cut: str | None = None
        self.started = False

    def __iter__(self) -> Iterator[tuple[str, etree._Element]]:
        parser = etree.iterparse(
            self._stream,
            events=self._events,
            tag=self._tags,
            resolve_entities=False,
            no_network=True,
            huge_tree=True,
        )
        try:
            for event, el in parser:
                self.started = True
                yield event, el
        except etree.XMLSyntaxError as exc:
            if not self.started:
                raise BadActivity(f"not a {self._kind} file") from exc
            root = b"gpx>" if self._kind == "GPX" else b"TrainingCenterDatabase>"
            if self._stream.tail.rstrip().endswith(root):
                # The file ends like a whole document: the damage is inside it.
                self.cut = f"damaged XML ({str(exc).splitlines()[0][:60]})"
            else:
                self.cut = "truncated"


def _cut_warning(cut: str) -> str:
    return f"{cut}: classified from the complete points before the damage"


def _elapsed(time_s: FloatArray | None) -> float | None:
    if time_s is None or not np.isfinite(time_s).any():
        return None
    return float(np.nanmax(time_s))


#: A step back in time longer than this between two samples is not clock jitter.
_BACKWARDS_S = 1.0


def _relative_times(epochs: FloatArray) -> tuple[FloatArray | None, datetime | None, str | None]:
    """Seconds from the first sample, the start, and a note when the times are unusable.

    Times that run backwards at more than 1 % of the steps (a reversed or shuffled export)
    give no speeds or durations: they are left out with a note, and the start is the
    earliest time written.
    """
    finite = epochs[np.isfinite(epochs)]
    if not finite.size:
        return None, None, None
    backwards = int((np.diff(finite) < -_BACKWARDS_S).sum())
    if backwards > max(1, finite.size // 100):
        start = datetime.fromtimestamp(float(finite.min()), UTC)
        return None, start, f"times run backwards at {backwards} samples: read without them"
    t0 = float(finite[0])
    return epochs - t0, datetime.fromtimestamp(t0, UTC), None


def _join_warnings(*notes: str | None) -> str | None:
    kept = [n for n in notes if n]
    return "; ".join(kept) if kept else None


#: The GPX elements whose events the reader handles; a point's own children (elevation,
#: time, extensions) are read from it with lxml's find, never as events of their own.
_GPX_TAGS = (
    "{*}gpx",
    "{*}trkseg",
    "{*}trkpt",
    "{*}type",
    "{*}name",
    "{*}metadata",
    "{*}rte",
    "{*}wpt",
)


def _point_text(el: etree._Element, path: str) -> str | None:
    text = el.findtext(path)
    return text.strip() or None if text else None


def _floats(texts: list[str | None]) -> FloatArray:
    """Numbers of texts (NaN where missing, unreadable or not finite), at C speed when
    every text is a number (the common case), else text by text as `_float_text` reads."""
    try:
        values = np.array(texts, dtype=np.float64)
    except (TypeError, ValueError):
        values = np.array(
            [math.nan if (v := _float_text(t)) is None else v for t in texts], np.float64
        )
    values[~np.isfinite(values)] = math.nan
    return values


def _epochs(texts: list[str | None]) -> FloatArray:
    """Seconds since the epoch of GPX times (NaN where missing or unreadable).

    The common case (every time in UTC with a `Z`) is parsed by numpy at C speed; any
    other spelling point by point, as `_epoch` reads it.
    """
    if texts and all(t is not None and t.endswith("Z") and "T" in t for t in texts):
        try:
            stamps = np.array([t[:-1] for t in texts if t is not None], dtype="datetime64[us]")
        except ValueError:
            stamps = None
        if stamps is not None and not np.isnat(stamps).any():
            return stamps.astype(np.int64).astype(np.float64) / 1e6
    return np.array([math.nan if (e := _epoch(t)) is None else e for t in texts], np.float64)


#: A point's children by their full tag in the two GPX namespaces and in none.
_GPX_CHILDREN = {
    f"{ns}{name}": name
    for ns in ("{http://www.topografix.com/GPX/1/1}", "{http://www.topografix.com/GPX/1/0}", "")
    for name in ("ele", "time", "extensions", "cad")
}


class _GpxPoints:
    """A GPX track's points as texts, turned into number columns every CHUNK points.

    Converting a chunk of texts at once (numpy parses them in C) costs a fraction of
    converting point by point; the chunk bounds the texts held, so a 200,000-point file
    streams in as little memory as before.
    """

    CHUNK = 4096

    def __init__(self) -> None:
        self.columns = _Points()
        self._lat: list[str | None] = []
        self._lon: list[str | None] = []
        self._ele: list[str | None] = []
        self._time: list[str | None] = []
        self._cad: list[str | None] = []
        self._seg: list[int] = []

    def add(self, el: etree._Element, seg: int) -> None:
        """Buffer one `trkpt` element's texts."""
        ele = time = cad = None
        for child in el:
            tag = child.tag
            # Most children are in the point's own namespace: named without splitting.
            name = _GPX_CHILDREN.get(tag) if isinstance(tag, str) else None
            if name is None:
                name = _local(child)
            if name == "ele" and ele is None:
                ele = child.text
            elif name == "time" and time is None:
                time = child.text.strip() if child.text else None
            elif name == "extensions" and cad is None:
                cad = _descendant_text(child, "cad")
            elif name == "cad" and cad is None:
                cad = child.text
        self._lat.append(el.get("lat"))
        self._lon.append(el.get("lon"))
        self._ele.append(ele)
        self._time.append(time)
        self._cad.append(cad)
        self._seg.append(seg)
        if len(self._seg) >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        """Convert the buffered texts; a point without a readable position is dropped."""
        if not self._seg:
            return
        lat, lon = _floats(self._lat), _floats(self._lon)
        keep = np.isfinite(lat) & np.isfinite(lon)
        cols = self.columns
        for column, values in (
            (cols.lat, lat),
            (cols.lon, lon),
            (cols.ele, _floats(self._ele)),
            (cols.dist, np.full(len(lat), math.nan)),
            (cols.time, _epochs(self._time)),
            (cols.cad, _floats(self._cad)),
        ):
            column.frombytes(np.ascontiguousarray(values[keep]).tobytes())
        cols.seg.frombytes(np.array(self._seg, dtype=np.int64)[keep].tobytes())
        for buffer in (self._lat, self._lon, self._ele, self._time, self._cad, self._seg):
            buffer.clear()


def _read_gpx(
    fh: _Readable,
    *,
    source: str,
    source_id: str,
    fallback_time: datetime | None,
    untyped: str,
) -> list[Activity]:
    """Raises BadActivity for a file that is not GPX or holds no recorded track."""
    # End events only: a point's texts are complete at its end, and a segment's number is
    # how many segments ended before it.
    events = _XmlEvents(fh, "GPX", tags=_GPX_TAGS, events=("end",))
    points = _GpxPoints()
    seg_no = 0
    sport_name: str | None = None
    name: str | None = None
    creator: str | None = None
    meta_time: datetime | None = None
    routes = waypoints = 0
    root_checked = False
    for _event, el in events:
        if not root_checked:
            root_checked = True
            root = el.getroottree().getroot()
            if _local(root) != "gpx":
                raise BadActivity("not a GPX file")
            creator = root.get("creator")
        tag = _local(el)
        if tag == "trkpt":
            points.add(el, seg_no)
            _release(el)
        elif tag == "trkseg":
            seg_no += 1
            _release(el)
        elif tag in ("type", "name"):
            parent = el.getparent()
            if parent is not None and _local(parent) == "trk":
                text = el.text.strip() if el.text else None
                if tag == "type" and sport_name is None:
                    sport_name = text
                elif tag == "name" and name is None:
                    name = text
        elif tag == "metadata" and meta_time is None:
            meta_time = _parse_time(_point_text(el, "{*}time"))
        elif tag == "rte":
            routes += 1
            _release(el)
        elif tag == "wpt":
            waypoints += 1
            _release(el)
    if not root_checked:
        raise BadActivity("not a GPX file")
    points.flush()
    pts = points.columns
    if not len(pts):
        if events.cut:
            raise BadActivity(f"{events.cut} GPX file: no complete track point")
        if routes:
            raise BadActivity("a route (planned, not recorded), not an activity")
        if waypoints:
            raise BadActivity("only waypoints, not an activity")
        raise BadActivity("no track points")
    lat_a, lon_a = pts.column("lat"), pts.column("lon")
    seg_a = pts.segments()
    # Segments without points do not count: renumber the ones that hold points.
    _, seg_a = np.unique(seg_a, return_inverse=True)
    seg_a = seg_a.astype(np.int64)
    segments = int(seg_a.max()) + 1 if seg_a.size else 0
    dist = _cumulative_distance(lat_a, lon_a, seg_a)
    time_s, t0, time_note = _relative_times(pts.column("time"))
    ele = pts.column("ele")
    cad = pts.column("cad")
    raw: dict[str, Any] = {"format": "gpx", "type": sport_name, "segments": segments}
    if creator:
        raw["creator"] = creator[:100]
    start_time = t0
    raw["start_time_from"] = "track"
    if start_time is None:
        if meta_time is not None:
            start_time, raw["start_time_from"] = meta_time, "metadata"
        elif fallback_time is not None:
            start_time, raw["start_time_from"] = fallback_time, "mtime"
        else:
            start_time, raw["start_time_from"] = datetime.now(UTC), "now"
    warning = None
    if events.cut:
        raw["damaged"] = events.cut
        warning = _cut_warning(events.cut)
    sport = _resolve_sport(
        _stated_sport(sport_name),
        Movement(
            time_s=time_s,
            distance_m=dist,
            altitude_m=ele,
            cadence=cad if np.isfinite(cad).any() else None,
            creator=creator,
        ),
        untyped,
        raw,
    )
    return [
        Activity(
            source=source,
            source_id=source_id,
            sport=sport,
            start_time=start_time,
            name=name,
            distance_m=float(dist[-1]),
            moving_time_s=_moving_time(dist, time_s),
            elapsed_time_s=_elapsed(time_s),
            start_latlng=(float(lat_a[0]), float(lon_a[0])),
            end_latlng=(float(lat_a[-1]), float(lon_a[-1])),
            indoor=sport in _INDOOR_SPORTS,
            track=Track(
                altitude_m=ele,
                distance_m=dist,
                lat=lat_a,
                lon=lon_a,
                time_s=time_s,
                segment=seg_a if segments > 1 else None,
            ),
            raw=raw,
            elevation_source="file",
            warning=_join_warnings(warning, time_note),
        )
    ]


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


#: TCX's own sport names (the schema allows only these three).
_TCX_SPORTS: Mapping[str, str | None] = {"Running": "run", "Biking": "ride", "Other": None}


@dataclass
class _TcxLeg:
    """One TCX <Activity> as read: its points, laps and what it says of itself."""

    sport_attr: str | None
    multisport: int | None
    points: _Points = field(default_factory=_Points)
    start: datetime | None = None
    laps: int = 0
    lap_time: float = 0.0
    lap_dist: float = 0.0
    creator: str | None = None
    segment: int = -1
    complete: bool = False


def _read_tcx(fh: _Readable, *, source: str, source_id: str, untyped: str) -> list[Activity]:
    """Raises BadActivity for a file that is not TCX or holds no activity with points."""
    events = _XmlEvents(fh, "TCX")
    legs: list[_TcxLeg] = []
    leg: _TcxLeg | None = None
    session = 0
    in_session = False
    courses = workouts = 0
    root_checked = False
    for event, el in events:
        tag = _local(el)
        if not root_checked:
            root_checked = True
            if tag != "TrainingCenterDatabase":
                raise BadActivity("not a TCX file")
            continue
        if event == "start":
            if tag == "MultiSportSession":
                session += 1
                in_session = True
            elif tag == "Activity":
                leg = _TcxLeg(el.get("Sport"), session if in_session else None)
                legs.append(leg)
            elif tag == "Track" and leg is not None:
                leg.segment += 1
            continue
        if tag == "Trackpoint" and leg is not None:
            la = lo = None
            for pos in el:
                if _local(pos) == "Position":
                    la = _float_text(_child_text(pos, "LatitudeDegrees"))
                    lo = _float_text(_child_text(pos, "LongitudeDegrees"))
            cad = _float_text(_child_text(el, "Cadence"))
            if cad is None:
                cad = _float_text(_descendant_text(el, "RunCadence"))
            leg.points.add(
                la,
                lo,
                _float_text(_child_text(el, "AltitudeMeters")),
                _float_text(_child_text(el, "DistanceMeters")),
                _epoch(_child_text(el, "Time")),
                cad,
                max(leg.segment, 0),
            )
            _release(el)
        elif tag == "Lap" and leg is not None:
            leg.laps += 1
            leg.lap_time += _float_text(_child_text(el, "TotalTimeSeconds")) or 0.0
            leg.lap_dist += _float_text(_child_text(el, "DistanceMeters")) or 0.0
            _release(el)
        elif tag == "Id" and leg is not None:
            parent = el.getparent()
            if parent is not None and _local(parent) == "Activity":
                leg.start = _parse_time(el.text.strip() if el.text else None)
        elif tag == "Name" and leg is not None:
            parent = el.getparent()
            if parent is not None and _local(parent) == "Creator":
                leg.creator = el.text.strip() if el.text else None
        elif tag == "Activity" and leg is not None:
            leg.complete = True
            _release(el)
            leg = None
        elif tag == "MultiSportSession":
            in_session = False
        elif tag == "Course":
            courses += 1
            _release(el)
        elif tag == "Workout":
            workouts += 1
            _release(el)
    if not root_checked:
        raise BadActivity("not a TCX file")
    legs = [g for g in legs if len(g.points)]
    if not legs:
        if events.cut:
            raise BadActivity(f"{events.cut} TCX file: no complete track point")
        if courses:
            raise BadActivity("a course (planned route), not an activity")
        if workouts:
            raise BadActivity("a workout (planned training), not an activity")
        raise BadActivity("no track points")
    groups: list[list[_TcxLeg]] = []
    for g in legs:
        if g.multisport is not None and groups and groups[-1][0].multisport == g.multisport:
            groups[-1].append(g)
        else:
            groups.append([g])
    out: list[Activity] = []
    for group in groups:
        out.append(_tcx_activity(group, source, source_id, untyped, events.cut))
    if len(out) > 1:
        out = [
            dataclasses.replace(a, source_id=f"{source_id}#{k}", part=k)
            for k, a in enumerate(out, start=1)
        ]
    return out


def _tcx_activity(
    group: Sequence[_TcxLeg], source: str, source_id: str, untyped: str, cut: str | None
) -> Activity:
    """One activity from one TCX <Activity>, or from a multisport session's running legs.

    Raises BadActivity when the activity records no time at all.
    """
    raw: dict[str, Any] = {"format": "tcx"}
    multisport = group[0].multisport is not None
    legs = list(group)
    no_running_leg = False
    if multisport:
        raw["multisport"] = True
        raw["legs"] = [g.sport_attr for g in group]
        running = [g for g in group if g.sport_attr == "Running"]
        if running:
            legs = running
        else:
            no_running_leg = True
    lat_l, lon_l, ele_l, dist_l, time_l, cad_l, seg_l = [], [], [], [], [], [], []
    seg_base = 0
    dist_base = 0.0
    for g in legs:
        p = g.points
        lat_l.append(p.column("lat"))
        lon_l.append(p.column("lon"))
        ele_l.append(p.column("ele"))
        time_l.append(p.column("time"))
        cad_l.append(p.column("cad"))
        seg = p.segments()
        seg_l.append(seg + seg_base)
        seg_base += int(seg.max()) + 1 if seg.size else 0
        d = p.column("dist")
        finite = d[np.isfinite(d)]
        if finite.size:
            # Each leg counts its distance from its own start: never backwards over legs.
            d = d - finite[0] + dist_base
            dist_base += float(finite[-1] - finite[0])
        dist_l.append(d)
    lat_a, lon_a = np.concatenate(lat_l), np.concatenate(lon_l)
    ele, dist_a, cad = np.concatenate(ele_l), np.concatenate(dist_l), np.concatenate(cad_l)
    seg_a = np.concatenate(seg_l).astype(np.int64)
    time_s, t0, time_note = _relative_times(np.concatenate(time_l))
    start_time = legs[0].start or t0
    if start_time is None:
        raise BadActivity("no timestamp in the file")
    has_pos = bool(np.isfinite(lat_a).any())
    if not np.isfinite(dist_a).any() and has_pos:
        ok = np.isfinite(lat_a) & np.isfinite(lon_a)
        d = _cumulative_distance(lat_a[ok], lon_a[ok], seg_a[ok])
        dist_a = np.full(lat_a.shape[0], np.nan)
        dist_a[ok] = d
    laps = sum(g.laps for g in legs)
    lap_dist = sum(g.lap_dist for g in legs)
    lap_time = sum(g.lap_time for g in legs)
    distance: float | None = lap_dist if laps and lap_dist > 0 else None
    track_max = float(np.nanmax(dist_a)) if np.isfinite(dist_a).any() else None
    if track_max is not None and (distance is None or cut):
        # A cut file's last lap never closed: its points say how far it got.
        distance = max(distance or 0.0, track_max)
    start_ll = end_ll = None
    if has_pos:
        ok = np.isfinite(lat_a) & np.isfinite(lon_a)
        start_ll = (float(lat_a[ok][0]), float(lon_a[ok][0]))
        end_ll = (float(lat_a[ok][-1]), float(lon_a[ok][-1]))
    warning = None
    if cut and not all(g.complete for g in legs):
        raw["damaged"] = cut
        warning = _cut_warning(cut)
    raw.update(
        sport=legs[0].sport_attr,
        laps=laps,
        total_time_s=lap_time,
        distance_m=lap_dist,
        start_time_from="id" if legs[0].start else "track",
    )
    stated = _TCX_SPORTS.get(legs[0].sport_attr or "Other", None)
    if no_running_leg:
        # No running leg: the session is not a run, whatever its first leg was.
        stated = "other"
    sport = _resolve_sport(
        stated,
        Movement(
            time_s=time_s,
            distance_m=dist_a if np.isfinite(dist_a).any() else None,
            altitude_m=ele,
            cadence=cad if np.isfinite(cad).any() else None,
            position_share=float(np.isfinite(lat_a).mean()) if lat_a.size else 0.0,
            creator=legs[0].creator,
        ),
        untyped,
        raw,
    )
    return Activity(
        source=source,
        source_id=source_id,
        sport=sport,
        start_time=start_time,
        distance_m=distance,
        moving_time_s=lap_time if laps and lap_time > 0 else None,
        elapsed_time_s=_elapsed(time_s),
        start_latlng=start_ll,
        end_latlng=end_ll,
        indoor=sport in _INDOOR_SPORTS,
        track=Track(
            altitude_m=ele,
            distance_m=dist_a if np.isfinite(dist_a).any() else None,
            lat=lat_a if has_pos else None,
            lon=lon_a if has_pos else None,
            time_s=time_s,
            segment=seg_a if seg_base > 1 else None,
        ),
        raw=raw,
        elevation_source="file",
        warning=_join_warnings(warning, time_note),
    )
