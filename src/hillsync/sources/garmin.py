"""Garmin Connect: log in once (with MFA), then poll activity summaries.

Built on garminconnect >= 0.3.20 (no garth). The library keeps its own token file
(`garmin_tokens.json`: DI access and refresh tokens) in a folder we give it as a path, so
that tokens it refreshes are written back there. hillsync never stores the password.

API economy: the summaries already carry elevationGain/elevationLoss, which is enough to
label most runs, so a poll with nothing new costs one request, and the original FIT is
downloaded only for an outdoor run whose label needs a profile (or with streams="always").
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import requests
import structlog
import tenacity
from garminconnect import (
    Garmin,
    GarminConnectAuthenticationError,
    GarminConnectConnectionError,
    GarminConnectTooManyRequestsError,
)

from hillsync.errors import (
    AuthRequired,
    BadActivity,
    RateLimited,
    SourceError,
    SourceUnavailable,
    UsageError,
)
from hillsync.model import INDOOR_SPORTS, RUN_SPORTS, Activity, Batch, Rejected
from hillsync.paths import write_private_file
from hillsync.sources.base import SourceState
from hillsync.sources.fileformats import read_activity_bytes

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: The file garminconnect reads and writes inside the token folder.
TOKEN_FILE = "garmin_tokens.json"  # noqa: S105 - a file name, not a secret
#: Garmin asks for patience after a 429; it rarely lifts sooner than this.
RATE_LIMIT_PAUSE = timedelta(minutes=30)
#: Activities uploaded late (a watch synced days later) still show up within this overlap.
OVERLAP = timedelta(days=2)
#: A backfill lists one date window at a time, newest first, so that it can resume.
BACKFILL_WINDOW_DAYS = 90
#: The listing endpoint behind get_activities and get_activities_by_date.
_ACTIVITY_LIST = "/activitylist-service/activities/search/activities"

CONNECT_COMMAND = "hillsync connect garmin"

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

_STATUS_RE = re.compile(r"\b(?:API Error|HTTP|status[= ]?)\s*\(?(\d{3})\b", re.IGNORECASE)


@dataclass(frozen=True)
class GarminAccount:
    """Who the connected Garmin account belongs to."""

    remote_id: str | None
    display_name: str | None


# --------------------------------------------------------------------------------------
# Error translation
# --------------------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _status(exc: BaseException) -> int | None:
    """The first HTTP status found along the exception's cause chain."""
    for e in _chain(exc):
        resp = getattr(e, "response", None)
        code = getattr(resp, "status_code", None)
        if isinstance(code, int):
            return code
        match = _STATUS_RE.search(str(e))
        if match:
            return int(match.group(1))
    return None


def _is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: network errors and 5xx, nothing else."""
    if any(isinstance(e, GarminConnectTooManyRequestsError) for e in _chain(exc)):
        return False
    status = _status(exc)
    if status is not None:
        return status >= 500
    # garminconnect reports a profile it could not fetch at login as an authentication
    # error even when the network was the cause, so the cause decides.
    return any(isinstance(e, requests.ConnectionError | requests.Timeout) for e in _chain(exc))


def _translate(
    exc: BaseException, *, source: str, command: str, now: datetime, during: str
) -> SourceError:
    """Turn a garminconnect/requests failure into hillsync's error, without its text.

    The library's messages can hold URLs and server replies; only the status is kept.
    """
    status = _status(exc)
    if status in (427, 429) or any(
        isinstance(e, GarminConnectTooManyRequestsError) for e in _chain(exc)
    ):
        resume = now + RATE_LIMIT_PAUSE
        return RateLimited(
            f"Garmin Connect is rate limiting {during}; pausing {source} until "
            f"{resume:%Y-%m-%d %H:%M} UTC",
            resume_at=resume,
            source=source,
        )
    if _is_transient(exc):
        what = f"HTTP {status}" if status else "network error"
        return SourceUnavailable(
            f"Garmin Connect could not be reached {during} ({what}); will try again at the "
            "next poll",
            source=source,
        )
    if status == 403:
        return SourceUnavailable(
            f"Garmin Connect refused the request {during} (HTTP 403): it may be blocking "
            "this network or client; try again later",
            source=source,
        )
    if status == 401 or isinstance(exc, GarminConnectAuthenticationError):
        return AuthRequired(
            f"Garmin Connect no longer accepts the saved login of {source}: run {command}",
            source=source,
            command=command,
        )
    what = f"HTTP {status}" if status else type(exc).__name__
    return SourceUnavailable(f"Garmin Connect failed {during} ({what})", source=source)


_GARMIN_ERRORS: tuple[type[BaseException], ...] = (
    GarminConnectAuthenticationError,
    GarminConnectConnectionError,
    GarminConnectTooManyRequestsError,
    requests.RequestException,
)


def _reason(exc: BaseException) -> str:
    status = _status(exc)
    if status is not None:
        return f"HTTP {status}"
    if _is_transient(exc):
        return "network error"
    return type(exc).__name__


def _default_retrying() -> tenacity.Retrying:
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(4),
        wait=tenacity.wait_exponential_jitter(initial=2, max=30),
    )


# --------------------------------------------------------------------------------------
# Connect / import / disconnect
# --------------------------------------------------------------------------------------


def _token_path(token_dir: Path) -> Path:
    return token_dir / TOKEN_FILE


def _account(garmin: Garmin) -> GarminAccount:
    pid = getattr(garmin, "profile_id", None)
    name = getattr(garmin, "display_name", None)
    return GarminAccount(
        remote_id=None if pid is None else str(pid),
        display_name=name if isinstance(name, str) and name else None,
    )


def _verify_token_login(
    token_dir: Path, garmin_factory: Callable[..., Garmin], *, during: str
) -> GarminAccount:
    """Log in from the token folder (the library checks the profile endpoints).

    Raises AuthRequired, RateLimited or SourceUnavailable.
    """
    garmin = garmin_factory(retry_attempts=0)
    try:
        garmin.login(str(token_dir))
    except _GARMIN_ERRORS as exc:
        raise _translate(
            exc, source="garmin", command=CONNECT_COMMAND, now=datetime.now(UTC), during=during
        ) from None
    return _account(garmin)


def connect_garmin(
    token_dir: Path,
    *,
    email: str | None,
    password_prompt: Callable[[], str],
    mfa_prompt: Callable[[], str],
    environ: Mapping[str, str],
    garmin_factory: Callable[..., Garmin] = Garmin,
) -> GarminAccount:
    """Log in to Garmin Connect once and keep garminconnect's token file in `token_dir`.

    The email comes from `email`, else HILLSYNC_GARMIN_EMAIL; the password from
    HILLSYNC_GARMIN_PASSWORD, else `password_prompt()`. The MFA code is asked for only
    when Garmin wants one. The password is never written anywhere. The saved tokens are
    then verified with a token login, which is what every sync does.

    Raises UsageError (no email), AuthRequired (wrong password, MFA code refused),
    RateLimited (Garmin refuses logins from this network for now) or SourceUnavailable.
    """
    email = email or environ.get("HILLSYNC_GARMIN_EMAIL") or None
    if not email:
        raise UsageError(
            "connect garmin needs the account's email: pass --email or set HILLSYNC_GARMIN_EMAIL"
        )
    password = environ.get("HILLSYNC_GARMIN_PASSWORD") or password_prompt()
    if not password:
        raise UsageError("connect garmin needs the account's password")
    garmin = garmin_factory(email=email, password=password, return_on_mfa=True)
    del password
    now = datetime.now(UTC)
    try:
        # No tokenstore: a reconnect must log in afresh, not reuse tokens that were refused.
        status, mfa_state = garmin.login()
        if status == "needs_mfa":
            code = mfa_prompt().strip()
            if not code:
                raise AuthRequired(
                    "no MFA code given: run hillsync connect garmin again",
                    source="garmin",
                    command=CONNECT_COMMAND,
                )
            garmin.resume_login(mfa_state, code)
        tokens = garmin.client.dumps()
    except _GARMIN_ERRORS as exc:
        err = _translate(exc, source="garmin", command=CONNECT_COMMAND, now=now, during="at login")
        if isinstance(err, RateLimited):
            raise RateLimited(
                "Garmin is refusing logins from this network for now; try later or import a "
                "token file made on another machine with hillsync connect garmin --tokens FILE",
                resume_at=err.resume_at,
                source="garmin",
            ) from None
        if isinstance(err, AuthRequired):
            raise AuthRequired(
                "Garmin refused the login: check the email, the password and the MFA code, "
                "then run hillsync connect garmin again",
                source="garmin",
                command=CONNECT_COMMAND,
            ) from None
        http = _status(exc)
        if http == 403:
            what = "Garmin blocked the login from this network or client (HTTP 403)"
        elif _is_transient(exc):
            what = f"Garmin Connect could not be reached at login ({_reason(exc)})"
        else:
            what = f"the Garmin login failed ({_reason(exc)})"
        raise SourceUnavailable(
            f"{what}; try again later, or import a token file made on another machine "
            "with hillsync connect garmin --tokens FILE",
            source="garmin",
        ) from None
    _write_tokens(token_dir, tokens.encode())
    account = _verify_token_login(token_dir, garmin_factory, during="verifying the new login")
    log.info("garmin_connected", account=account.display_name)
    return account


def _write_tokens(token_dir: Path, data: bytes) -> None:
    """Write the token file 0600 in a 0700 folder, atomically.

    Raises AuthRequired when the content is not a garminconnect token file.
    """
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if not isinstance(parsed, dict) or not parsed.get("di_token"):
        raise AuthRequired(
            "that is not a garminconnect token file (a JSON object with di_token, "
            "di_refresh_token, di_client_id); make one with garminconnect >= 0.3.20",
            source="garmin",
            command=CONNECT_COMMAND,
        )
    write_private_file(_token_path(token_dir), data)


def import_garmin_tokens(
    token_file: Path, token_dir: Path, *, garmin_factory: Callable[..., Garmin] = Garmin
) -> GarminAccount:
    """Copy a garminconnect token file made elsewhere into `token_dir`, then verify it.

    `token_file` is the JSON file or the folder holding garmin_tokens.json. A token file
    Garmin refuses is removed again, so the account does not look connected.

    Raises ConfigError (the file cannot be read), AuthRequired (not a token file, or
    refused), RateLimited or SourceUnavailable.
    """
    src = token_file / TOKEN_FILE if token_file.is_dir() else token_file
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the token file {src}: {exc.strerror}") from None
    _write_tokens(token_dir, data)
    try:
        account = _verify_token_login(token_dir, garmin_factory, during="verifying the tokens")
    except AuthRequired:
        disconnect_garmin(token_dir)
        raise AuthRequired(
            "Garmin refused the imported tokens: make a fresh token file, or run "
            "hillsync connect garmin",
            source="garmin",
            command=CONNECT_COMMAND,
        ) from None
    log.info("garmin_tokens_imported", account=account.display_name)
    return account


def disconnect_garmin(token_dir: Path) -> None:
    """Delete the saved tokens (Garmin offers no way to revoke them remotely).

    Raises OSError when the file exists but cannot be removed.
    """
    _token_path(token_dir).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------
# Summaries -> Activity
# --------------------------------------------------------------------------------------


def _num(summary: Mapping[str, Any], key: str) -> float | None:
    value = summary.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _nonneg(summary: Mapping[str, Any], key: str) -> float | None:
    f = _num(summary, key)
    return f if f is not None and f >= 0 else None


def _latlng(summary: Mapping[str, Any], lat_key: str, lon_key: str) -> tuple[float, float] | None:
    lat, lon = _num(summary, lat_key), _num(summary, lon_key)
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    if lat == 0 and lon == 0:
        return None
    return (lat, lon)


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

    Raises BadActivity when the summary is not an object, or has no activityId or no start
    time.
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
    lo, hi = _num(summary, "minElevation"), _num(summary, "maxElevation")
    elev_range = hi - lo if lo is not None and hi is not None and 0 <= hi - lo <= 9500 else None
    name = summary.get("activityName")
    return Activity(
        source=source,
        source_id=str(aid),
        sport=sport,
        start_time=start,
        name=name if isinstance(name, str) else None,
        distance_m=_nonneg(summary, "distance"),
        moving_time_s=_nonneg(summary, "movingDuration"),
        elapsed_time_s=_nonneg(summary, "elapsedDuration") or _nonneg(summary, "duration"),
        reported_gain_m=_nonneg(summary, "elevationGain"),
        reported_loss_m=_nonneg(summary, "elevationLoss"),
        elevation_range_m=elev_range,
        start_latlng=_latlng(summary, "startLatitude", "startLongitude"),
        end_latlng=_latlng(summary, "endLatitude", "endLongitude"),
        indoor=indoor,
        raw=dict(summary),
        elevation_source="garmin",
    )


def _fit_from_download(data: bytes, activity_id: str) -> tuple[bytes, str]:
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


# --------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------


@dataclass
class _Progress:
    """The cursor, as a mutable working copy."""

    newest: datetime | None = None
    recent: dict[str, str] = field(default_factory=dict)  # id -> start within the overlap
    covered_since: date | None = None
    backfill: dict[str, Any] | None = None  # {since, end, offset}

    @classmethod
    def load(cls, cursor: Mapping[str, Any], state: SourceState) -> _Progress:
        def _dt(v: Any) -> datetime | None:
            try:
                d = datetime.fromisoformat(v) if isinstance(v, str) else None
            except ValueError:
                return None
            return d if d is None or d.tzinfo else d.replace(tzinfo=UTC)

        def _d(v: Any) -> date | None:
            try:
                return date.fromisoformat(v) if isinstance(v, str) else None
            except ValueError:
                return None

        newest = _dt(cursor.get("newest_start")) or state.newest_start
        recent_raw = cursor.get("recent")
        recent = (
            {str(k): str(v) for k, v in recent_raw.items()} if isinstance(recent_raw, dict) else {}
        )
        backfill = cursor.get("backfill")
        bf: dict[str, Any] | None = None
        if isinstance(backfill, dict):
            since, end = _d(backfill.get("since")), _d(backfill.get("end"))
            offset = backfill.get("offset", 0)
            if since and end and isinstance(offset, int) and offset >= 0:
                bf = {"since": since.isoformat(), "end": end.isoformat(), "offset": offset}
        return cls(newest, recent, _d(cursor.get("covered_since")), bf)

    def note(self, activity: Activity) -> None:
        """Remember an activity yielded: the newest start and the ids inside the overlap."""
        if self.newest is None or activity.start_time > self.newest:
            self.newest = activity.start_time
        self.recent[activity.source_id] = activity.start_time.isoformat()
        edge = self.newest - OVERLAP
        self.recent = {k: v for k, v in self.recent.items() if datetime.fromisoformat(v) >= edge}

    def cursor(self) -> dict[str, Any]:
        return {
            "newest_start": self.newest.isoformat() if self.newest else None,
            "recent": dict(self.recent),
            "covered_since": self.covered_since.isoformat() if self.covered_since else None,
            "backfill": dict(self.backfill) if self.backfill else None,
        }


#: Logged-in clients by token file, valid while the file is the one they were made from:
#: the worker builds a source per cycle, and a token login costs two profile requests.
_CLIENTS: dict[tuple[Path, int], tuple[int | None, Garmin]] = {}


class GarminSource:
    """Activities of one Garmin Connect account (implements sources.base.Source)."""

    kind = "garmin"

    def __init__(
        self,
        name: str,
        *,
        token_dir: Path,
        streams: Literal["auto", "always"] = "auto",
        needs_profile: Callable[[Activity], bool],
        clock: Callable[[], datetime],
        retrying: tenacity.Retrying | None = None,
        garmin_factory: Callable[..., Garmin] = Garmin,
        reconnect_command: str = CONNECT_COMMAND,
        page_size: int = 100,
    ) -> None:
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        self._name = name
        self._token_dir = token_dir
        self._streams = streams
        self._needs_profile = needs_profile
        self._clock = clock
        # Only transient failures are retried, whatever policy was handed in; the library's
        # own retries are switched off so that no sleep hides inside it.
        self._retrying = (retrying or _default_retrying()).copy(
            retry=tenacity.retry_if_exception(_is_transient), reraise=True
        )
        self._factory = garmin_factory
        self._command = reconnect_command
        self._page_size = page_size
        self._garmin: Garmin | None = None

    @property
    def name(self) -> str:
        """The source's name (`garmin`, or `ATHLETE/garmin`)."""
        return self._name

    # -- calls ---------------------------------------------------------------------------

    def _call(self, during: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one library call with the retry policy; translate what escapes.

        Raises AuthRequired, RateLimited or SourceUnavailable.
        """
        try:
            return self._retrying(fn, *args, **kwargs)
        except _GARMIN_ERRORS as exc:
            raise self._error(exc, during) from None

    def _error(self, exc: BaseException, during: str) -> SourceError:
        err = _translate(
            exc, source=self._name, command=self._command, now=self._clock(), during=during
        )
        if isinstance(err, AuthRequired):
            self._garmin = None
            _CLIENTS.pop((_token_path(self._token_dir).absolute(), id(self._factory)), None)
        log.warning(
            "garmin_call_failed", source=self._name, during=during, error=type(err).__name__
        )
        return err

    def _client(self) -> Garmin:
        """A logged-in client; reused while the token file is the one it was made from.

        Raises AuthRequired (not connected, tokens refused), RateLimited, SourceUnavailable.
        """
        path = _token_path(self._token_dir)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            self._garmin = None
            raise AuthRequired(
                f"{self._name} is not connected: run {self._command}",
                source=self._name,
                command=self._command,
            ) from None
        key = (_token_path(self._token_dir).absolute(), id(self._factory))
        cached = _CLIENTS.get(key)
        if cached is not None and cached[0] == mtime:
            self._garmin = cached[1]
            return cached[1]
        garmin = self._factory(retry_attempts=0)
        # A path, not the JSON: the library writes refreshed tokens back to it.
        self._call("at login", garmin.login, str(self._token_dir))
        self._garmin = garmin
        _CLIENTS[key] = (self._mtime(), garmin)
        return garmin

    def _mtime(self) -> int | None:
        try:
            return _token_path(self._token_dir).stat().st_mtime_ns
        except FileNotFoundError:
            return None

    # -- fetch ---------------------------------------------------------------------------

    def fetch(self, state: SourceState) -> Iterator[Batch]:
        """Yield new activities, then any pending backfill, one Batch per listed page.

        The poll lists newest first and stops at the first activity older than the newest
        start seen minus a 2-day overlap; the backfill lists date windows newest first and
        records its progress in each batch's cursor, so it resumes after a crash or a
        rate-limit pause. `state.full` lists the whole window again.

        Raises AuthRequired, RateLimited or SourceUnavailable; batches yielded before stay.
        """
        with self._exclusive():
            yield from self._fetch(state)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the account's lock file: one process at a time uses (and so refreshes and
        rewrites) its tokens, so that a `hillsync sync` beside the daemon cannot make two
        refreshes race and one rotated token be lost.

        Raises SourceUnavailable when another process holds it.
        """
        self._token_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._token_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SourceUnavailable(
                    f"{self._name} is being synced by another hillsync process: will retry",
                    source=self._name,
                ) from None
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _fetch(self, state: SourceState) -> Iterator[Batch]:
        garmin = self._client()
        prog = _Progress.load(state.cursor, state)
        since = state.since.astimezone(UTC).date()
        # Garmin filters by the runner's local date, which can be a day ahead of UTC.
        today = self._clock().astimezone(UTC).date() + timedelta(days=1)
        try:
            if state.full:
                prog.backfill = {"since": since.isoformat(), "end": today.isoformat(), "offset": 0}
                prog.covered_since = None
            elif prog.backfill is None:
                if prog.newest is None and prog.covered_since is None:
                    prog.backfill = {
                        "since": since.isoformat(),
                        "end": today.isoformat(),
                        "offset": 0,
                    }
                elif prog.covered_since is not None and since < prog.covered_since:
                    prog.backfill = {
                        "since": since.isoformat(),
                        "end": prog.covered_since.isoformat(),
                        "offset": 0,
                    }
                elif prog.covered_since is None:
                    prog.covered_since = since
            if prog.newest is not None and not state.full:
                yield from self._poll(garmin, prog)
            if prog.backfill is not None:
                yield from self._backfill(garmin, prog)
        finally:
            # Our own client may have refreshed (rewritten) the token file meanwhile.
            key = (_token_path(self._token_dir).absolute(), id(self._factory))
            if self._garmin is not None and key in _CLIENTS:
                _CLIENTS[key] = (self._mtime(), self._garmin)

    def _poll(self, garmin: Garmin, prog: _Progress) -> Iterator[Batch]:
        assert prog.newest is not None
        edge = prog.newest - OVERLAP
        known = set(prog.recent or {})
        start = 0
        pages = 0
        new = 0
        pending: list[Activity] = []
        while True:
            page = self._call("listing activities", garmin.get_activities, start, self._page_size)
            pages += 1
            if not isinstance(page, list):
                raise SourceUnavailable(
                    "Garmin Connect answered the activity list with an unexpected payload",
                    source=self._name,
                )
            done = len(page) < self._page_size
            activities: list[Activity] = []
            rejected: list[Rejected] = []
            for summary in page:
                try:
                    act = activity_from_summary(summary, source=self._name)
                except BadActivity as exc:
                    rejected.append(Rejected(key=_summary_key(summary), reason=str(exc)))
                    continue
                if act.start_time < edge:
                    done = True
                    continue
                if act.source_id in known:
                    continue
                activities.append(self._complete(garmin, act))
            new += len(activities)
            pending.extend(activities)
            if done:
                for act in pending:
                    prog.note(act)
                # The cursor moves only with the last page, so a crash in between
                # repeats pages rather than skipping them.
                if activities or rejected or pending:
                    yield Batch(activities=activities, rejected=rejected, cursor=prog.cursor())
                break
            yield Batch(activities=activities, rejected=rejected, cursor=None)
            start += len(page)
        log.info("garmin_polled", source=self._name, new=new, requests=pages)

    def _backfill(self, garmin: Garmin, prog: _Progress) -> Iterator[Batch]:
        while prog.backfill is not None:
            since = date.fromisoformat(prog.backfill["since"])
            end = date.fromisoformat(prog.backfill["end"])
            offset = int(prog.backfill["offset"])
            if end < since:
                prog.backfill = None
                prog.covered_since = (
                    since if prog.covered_since is None else min(since, prog.covered_since)
                )
                yield Batch(cursor=prog.cursor())
                break
            window_start = max(since, end - timedelta(days=BACKFILL_WINDOW_DAYS - 1))
            # What get_activities_by_date sends, but with full pages and no trailing
            # empty-page request.
            params = {
                "startDate": window_start.isoformat(),
                "endDate": end.isoformat(),
                "start": str(offset),
                "limit": str(self._page_size),
            }
            page = self._call(
                "backfilling activities", garmin.connectapi, _ACTIVITY_LIST, params=params
            )
            if page is None:
                page = []
            if not isinstance(page, list):
                raise SourceUnavailable(
                    "Garmin Connect answered the activity list with an unexpected payload",
                    source=self._name,
                )
            activities: list[Activity] = []
            rejected: list[Rejected] = []
            for summary in page:
                try:
                    act = activity_from_summary(summary, source=self._name)
                except BadActivity as exc:
                    rejected.append(Rejected(key=_summary_key(summary), reason=str(exc)))
                    continue
                activities.append(self._complete(garmin, act))
                prog.note(act)
            if len(page) < self._page_size:
                next_end = window_start - timedelta(days=1)
                if next_end < since:
                    prog.backfill = None
                    prog.covered_since = (
                        since if prog.covered_since is None else min(since, prog.covered_since)
                    )
                else:
                    prog.backfill = {
                        "since": since.isoformat(),
                        "end": next_end.isoformat(),
                        "offset": 0,
                    }
            else:
                prog.backfill = {**prog.backfill, "offset": offset + len(page)}
            log.info(
                "garmin_backfill_page",
                source=self._name,
                window_start=window_start.isoformat(),
                window_end=end.isoformat(),
                activities=len(activities),
            )
            yield Batch(activities=activities, rejected=rejected, cursor=prog.cursor())

    # -- downloads -----------------------------------------------------------------------

    def _wants_file(self, act: Activity) -> bool:
        if act.indoor or act.sport not in RUN_SPORTS:
            return False
        if self._streams == "always" or act.reported_gain_m is None:
            return True
        return bool(self._needs_profile(act))

    def _download(self, garmin: Garmin, activity_id: str) -> bytes | None:
        """The original file of one activity, or None when Garmin has none for it.

        Raises AuthRequired, RateLimited or SourceUnavailable (the account, not the file).
        """
        try:
            data = self._retrying(
                garmin.download_activity,
                activity_id,
                dl_fmt=Garmin.ActivityDownloadFormat.ORIGINAL,
            )
        except _GARMIN_ERRORS as exc:
            status = _status(exc)
            account_wide = status in (401, 403, 427, 429) or any(
                isinstance(e, GarminConnectAuthenticationError | GarminConnectTooManyRequestsError)
                for e in _chain(exc)
            )
            # A missing or refused file concerns this activity only.
            if status is not None and 400 <= status < 500 and not account_wide:
                log.warning(
                    "garmin_download_skipped",
                    source=self._name,
                    activity=activity_id,
                    status=status,
                )
                return None
            raise self._error(exc, "downloading an activity file") from None
        if not isinstance(data, bytes | bytearray):
            log.warning("garmin_download_empty", source=self._name, activity=activity_id)
            return None
        return bytes(data)

    def _complete(self, garmin: Garmin, act: Activity) -> Activity:
        """Attach the original file's track (and profile) when the label needs it.

        A download that fails for this one activity leaves its summary as it is.
        Raises AuthRequired, RateLimited or SourceUnavailable (the account, not the file).
        """
        if not self._wants_file(act):
            return act

        data = self._download(garmin, act.source_id)
        if data is None:
            return act
        try:
            payload, filename = _fit_from_download(data, act.source_id)
            from_file = read_activity_bytes(
                payload, filename, source=self._name, source_id=act.source_id
            )
        except BadActivity as exc:
            log.warning(
                "garmin_file_unreadable", source=self._name, activity=act.source_id, reason=str(exc)
            )
            return act
        except zipfile.BadZipFile:
            log.warning("garmin_file_unreadable", source=self._name, activity=act.source_id)
            return act
        if from_file.track is None and from_file.profile is None:
            return act
        return replace(
            act,
            track=from_file.track,
            profile=from_file.profile if from_file.profile is not None else act.profile,
            reported_gain_m=act.reported_gain_m
            if act.reported_gain_m is not None
            else from_file.reported_gain_m,
            reported_loss_m=act.reported_loss_m
            if act.reported_loss_m is not None
            else from_file.reported_loss_m,
            distance_m=act.distance_m if act.distance_m is not None else from_file.distance_m,
            start_latlng=act.start_latlng or from_file.start_latlng,
            end_latlng=act.end_latlng or from_file.end_latlng,
            elevation_source="file",
        )


def _summary_key(summary: Any) -> str:
    if isinstance(summary, Mapping) and summary.get("activityId") is not None:
        return f"garmin:{summary.get('activityId')}"
    return "garmin:?"
