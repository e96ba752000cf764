"""The Strava source: OAuth connection, token rotation, rate budget and economical polling.

Built on stravalib's client (HTTP through `requests`), with three things done here rather
than inside stravalib: tokens are refreshed by hillsync (stravalib only does it from
environment variables), the rate budget is read from the response headers and turned into
`RateLimited` (stravalib's own limiter sleeps, which would block shutdown), and retries of
server errors are a tenacity policy passed in (so tests never sleep).

API economy: one list page of 200 per request; a stream request only for a run whose label
needs a profile (or with `streams = "always"`); nothing more for rides and other sports.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import webbrowser
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import requests
import structlog
import tenacity
from pydantic import ValidationError
from requests.adapters import HTTPAdapter
from stravalib import exc as strava_exc
from stravalib import model as strava_model
from stravalib.client import Client
from stravalib.protocol import RequestMethod, Scope
from stravalib.util import limiter

from hillsync.errors import AuthRequired, ConfigError, RateLimited, SourceUnavailable
from hillsync.model import RUN_SPORTS, Activity, Batch, Rejected, Secret, Track
from hillsync.paths import write_private_file
from hillsync.sources.base import SourceState
from hillsync.sources.oauth import RedirectListener

log = structlog.get_logger(__name__)

T = TypeVar("T")

KIND = "strava"
SCOPE = "activity:read_all"
_SCOPES: list[Scope] = ["read", "activity:read_all"]
PER_PAGE = 200
#: Edits and late uploads (a watch synced days later) land inside this window.
OVERLAP = timedelta(days=2)
#: Refresh the access token when it expires within this margin.
REFRESH_MARGIN = timedelta(minutes=10)
STREAM_TYPES = ["altitude", "distance", "latlng"]
DEFAULT_PORT = 8721
#: A pending authorization (the `state` of a printed URL) is accepted this long.
PENDING_TTL = timedelta(hours=1)
#: Connect and read timeouts of every request: a hung connection must not hang the worker.
HTTP_TIMEOUT = (10.0, 60.0)

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


@dataclass(frozen=True)
class ConnectedAccount:
    """The Strava account a `connect` linked: its athlete id, name and granted scope."""

    remote_id: str
    display_name: str | None
    scope: str


def _rotated(current: _Tokens, info: Mapping[str, Any]) -> _Tokens:
    """The tokens after a refresh: what the answer gives, else what was there.

    An expiry of 0 (the answer had no usable access token or expiry) forces another refresh
    at the next poll, with the refresh token that was kept either way.
    """

    def text(key: str) -> str | None:
        value = info.get(key)
        return value if isinstance(value, str) and value else None

    access, refresh = text("access_token"), text("refresh_token")
    try:
        expires_at = int(info.get("expires_at"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        expires_at = 0
    return replace(
        current,
        access_token=Secret(access) if access else current.access_token,
        refresh_token=Secret(refresh) if refresh else current.refresh_token,
        expires_at=expires_at if access else 0,
    )


@dataclass(frozen=True)
class _Tokens:
    access_token: Secret
    refresh_token: Secret
    expires_at: int
    athlete_id: str
    scope: str
    display_name: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "access_token": self.access_token.reveal(),
                "refresh_token": self.refresh_token.reveal(),
                "expires_at": self.expires_at,
                "athlete_id": self.athlete_id,
                "scope": self.scope,
                "display_name": self.display_name,
            },
            indent=2,
        ).encode()


def _not_connected(command: str) -> AuthRequired:
    return AuthRequired(f"strava is not connected: run {command}", source=KIND, command=command)


def _read_tokens(path: Path, command: str) -> _Tokens:
    """The tokens stored at `path`.

    Raises AuthRequired when the file is missing or unreadable (the runner must reconnect).
    """
    try:
        data = json.loads(path.read_bytes())
        return _Tokens(
            access_token=Secret(str(data["access_token"])),
            refresh_token=Secret(str(data["refresh_token"])),
            expires_at=int(data["expires_at"]),
            athlete_id=str(data.get("athlete_id") or ""),
            scope=str(data.get("scope") or ""),
            display_name=data.get("display_name"),
        )
    except FileNotFoundError:
        raise _not_connected(command) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AuthRequired(
            f"the strava token file cannot be read ({type(e).__name__}): run {command}",
            source=KIND,
            command=command,
        ) from None


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request a timeout: stravalib passes none, and requests waits forever."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = HTTP_TIMEOUT
        return super().send(request, **kwargs)


def _new_session() -> requests.Session:
    session = requests.Session()
    session.mount("https://", _TimeoutAdapter())
    return session


class _DropCredentialWarnings(logging.Filter):
    """stravalib warns at every client made without STRAVA_CLIENT_ID in the environment."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return "STRAVA_CLIENT_ID" not in msg and "client.token_expires" not in msg


def _make_client(
    session: requests.Session, access_token: str | None, budget: _Budget | None
) -> Client:
    root = logging.getLogger()
    quiet = _DropCredentialWarnings()
    root.addFilter(quiet)
    try:
        if budget is None:
            client = Client(
                access_token=access_token, rate_limit_requests=False, requests_session=session
            )
        else:
            client = Client(
                access_token=access_token, rate_limiter=budget, requests_session=session
            )
    finally:
        root.removeFilter(quiet)
    # stravalib refreshes by itself when it found credentials in the environment; hillsync
    # refreshes (and persists the rotated token) itself, so that path must stay shut.
    client.protocol.client_id = None
    client.protocol.client_secret = None
    return client


def _fault_status(error: BaseException) -> int | None:
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return int(error.response.status_code)
    return None


def _transient(error: BaseException) -> bool:
    """Server errors and network failures are worth retrying; nothing else is."""
    if isinstance(error, requests.HTTPError):
        status = _fault_status(error)
        return status is not None and status >= 500
    return isinstance(error, requests.ConnectionError | requests.Timeout)


def default_retrying() -> tenacity.Retrying:
    """Four attempts with exponential backoff and jitter, at most about a minute in all."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(4) | tenacity.stop_after_delay(60),
        wait=tenacity.wait_exponential_jitter(initial=1, max=20),
    )


def _policy(retrying: tenacity.Retrying | None) -> tenacity.Retrying:
    # Whatever policy is passed in, only transient errors are retried, and the last error
    # itself (not a RetryError) comes out, so it can be mapped to a clear message.
    return (retrying or default_retrying()).copy(
        retry=tenacity.retry_if_exception(_transient), reraise=True
    )


def _error_codes(error: requests.HTTPError) -> list[Mapping[str, Any]]:
    try:
        body = error.response.json() if error.response is not None else {}
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _next_quarter(now: datetime) -> datetime:
    base = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    return base + timedelta(minutes=15)


def _next_midnight(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


class _Budget(limiter.RateLimiter):
    """Remembers the last usage figures Strava reported, and refuses to spend the reserve.

    stravalib calls it with each response's headers; `check` runs before each request.
    """

    def __init__(self, clock: Callable[[], datetime], reserve: int) -> None:
        super().__init__()
        self.rules = []
        self._clock = clock
        self._reserve = reserve
        self._rates: dict[str, limiter.RequestRate] = {}
        self._seen_at: datetime | None = None

    def __call__(self, args: dict[str, str], method: RequestMethod) -> None:
        try:
            read = limiter.get_rates_from_response_headers(args, "GET")
            overall = limiter.get_rates_from_response_headers(args, "POST")
        except (ValueError, KeyError, IndexError):  # a usage header without its limit, or short
            log.warning("strava_rate_headers_unreadable")
            return
        self._rates = {}
        if read is not None and method == "GET":
            self._rates["read"] = read
        if overall is not None:
            self._rates["overall"] = overall
        self._seen_at = self._clock()

    def snapshot(self) -> dict[str, Any]:
        """The last usage figures, for status output and logs."""
        return {k: list(v) for k, v in self._rates.items()}

    def exhausted(self, *, slack: int | None = None) -> RateLimited | None:
        """A RateLimited for the window that is spent (keeping the reserve), or None."""
        if self._seen_at is None:
            return None
        keep = self._reserve if slack is None else slack
        now = self._clock()
        same_day = now.date() == self._seen_at.date()
        same_quarter = same_day and _next_quarter(now) == _next_quarter(self._seen_at)
        for name, rate in self._rates.items():
            if same_day and rate.long_limit and rate.long_usage >= rate.long_limit - keep:
                resume = _next_midnight(now)
                return RateLimited(
                    f"strava's daily {name} budget is spent ({rate.long_usage}/"
                    f"{rate.long_limit}): paused until {resume:%Y-%m-%d %H:%M} UTC",
                    resume_at=resume,
                    source=KIND,
                )
            if same_quarter and rate.short_limit and rate.short_usage >= rate.short_limit - keep:
                resume = _next_quarter(now)
                return RateLimited(
                    f"strava's 15-minute {name} budget is spent ({rate.short_usage}/"
                    f"{rate.short_limit}): paused until {resume:%H:%M} UTC",
                    resume_at=resume,
                    source=KIND,
                )
        return None

    def check(self) -> None:
        """Raises RateLimited when the next request would eat into the reserve."""
        limited = self.exhausted()
        if limited is not None:
            raise limited


def _fingerprint(raw: Mapping[str, Any]) -> str:
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


def _epoch(moment: datetime) -> int:
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


class StravaSource:
    """One Strava account, polled through its stored OAuth tokens.

    The cursor it yields holds `newest` (epoch of the newest start seen), `recent` (the
    fingerprints of activities inside the overlap, so an unchanged one costs nothing when
    it is listed again) and, while a listing is under way, `listing` (`after`, `page`, and
    the ids already yielded from that page): a restart or a rate-limit pause resumes there.
    """

    def __init__(
        self,
        name: str,
        *,
        client_id: int,
        client_secret: Secret,
        token_path: Path,
        streams: Literal["auto", "always"] = "auto",
        needs_profile: Callable[[Activity], bool],
        clock: Callable[[], datetime],
        retrying: tenacity.Retrying | None = None,
        session: requests.Session | None = None,
        reconnect_command: str = "hillsync connect strava",
        reserve: int = 5,
        sports: Collection[str] = RUN_SPORTS,
    ) -> None:
        self._name = name
        self._client_id = client_id
        self._client_secret = client_secret
        self._token_path = token_path
        self._streams = streams
        self._needs_profile = needs_profile
        self._clock = clock
        self._retrying = _policy(retrying)
        self._command = reconnect_command
        self._sports = frozenset(sports)
        self._budget = _Budget(clock, reserve)
        self._client = _make_client(session or _new_session(), None, self._budget)
        self._tokens: _Tokens | None = None
        self.requests_made = 0

    @property
    def name(self) -> str:
        """The source's name (`strava`, `anna/strava`)."""
        return self._name

    @property
    def kind(self) -> str:
        """Always `strava`."""
        return KIND

    def rate_usage(self) -> dict[str, Any]:
        """The last usage figures Strava reported ({read|overall: [short, long, limits]})."""
        return self._budget.snapshot()

    # --- tokens ------------------------------------------------------------------------

    def _lock_path(self) -> Path:
        return self._token_path.with_name(self._token_path.name + ".lock")

    def _ensure_token(self) -> None:
        """Make sure a valid access token is in the client, refreshing it if it is near expiry.

        Raises AuthRequired (not connected, refresh refused), SourceUnavailable.
        """
        now = _epoch(self._clock())
        margin = int(REFRESH_MARGIN.total_seconds())
        if self._tokens is None:
            self._tokens = _read_tokens(self._token_path, self._command)
        if self._tokens.expires_at - margin <= now:
            self._tokens = self._refresh_locked(now, margin)
        self._client.access_token = self._tokens.access_token.reveal()

    def _refresh_locked(self, now: int, margin: int) -> _Tokens:
        if not self._token_path.exists():
            raise _not_connected(self._command)
        lock = self._lock_path()
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Another process may have rotated the token while this one waited for the lock:
            # its refresh token is then the only valid one.
            current = _read_tokens(self._token_path, self._command)
            if current.expires_at - margin > now:
                log.info("strava_token_reused", source=self._name)
                return current
            self._budget.check()
            try:
                info = self._retrying(
                    self._client.refresh_access_token,
                    client_id=self._client_id,
                    client_secret=self._client_secret.reveal(),
                    refresh_token=current.refresh_token.reveal(),
                )
            except requests.HTTPError as e:
                self.requests_made += 1
                status = _fault_status(e)
                if status in (400, 401, 403):
                    raise AuthRequired(
                        f"strava refused to refresh the access token (HTTP {status}):"
                        f" run {self._command}",
                        source=KIND,
                        command=self._command,
                    ) from None
                raise SourceUnavailable(
                    f"strava could not refresh the access token (HTTP {status}): will retry"
                    " at the next poll",
                    source=KIND,
                ) from None
            except requests.RequestException as e:
                raise SourceUnavailable(
                    f"strava is unreachable ({type(e).__name__}): will retry at the next poll",
                    source=KIND,
                ) from None
            except (KeyError, TypeError, ValueError):
                # stravalib reads the answer's fields itself: an answer without them rotated
                # nothing that could be kept, so the old refresh token is still the one.
                raise SourceUnavailable(
                    "strava's token answer was incomplete: will retry at the next poll",
                    source=KIND,
                ) from None
            self.requests_made += 1
            rotated = _rotated(current, info)
            # Persist before use: once Strava rotated it, the old refresh token is dead.
            # Whatever else the answer lacks, the new refresh token is written first.
            try:
                write_private_file(self._token_path, rotated.to_json())
            except OSError as e:
                raise SourceUnavailable(
                    f"cannot write the rotated Strava token to {self._token_path}"
                    f" ({e.strerror}): free space or fix permissions, or run {self._command}",
                    source=KIND,
                ) from None
            if rotated.expires_at <= now:
                raise SourceUnavailable(
                    "strava's token answer had no usable access token: will retry at the next poll",
                    source=KIND,
                )
            log.info("strava_token_refreshed", source=self._name, expires_at=rotated.expires_at)
            return rotated
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # --- requests ----------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One API request: token, budget, retries, and errors mapped to hillsync's.

        Raises AuthRequired, RateLimited, SourceUnavailable; stravalib's ObjectNotFound
        passes through (the caller knows what a missing object means).
        """
        self._ensure_token()
        self._budget.check()

        def attempt() -> T:
            self.requests_made += 1
            return fn(*args, **kwargs)

        try:
            return self._retrying(attempt)
        except strava_exc.ObjectNotFound:
            raise
        except strava_exc.ApplicationInactive:
            raise AuthRequired(
                "the Strava API application is inactive (its owner needs a Strava subscription;"
                f" reactivate it at strava.com/settings/api), then run {self._command}",
                source=KIND,
                command=self._command,
            ) from None
        except strava_exc.AccessUnauthorized:
            self._tokens = None
            raise AuthRequired(
                f"strava refused the access token (HTTP 401): run {self._command}",
                source=KIND,
                command=self._command,
            ) from None
        except requests.HTTPError as e:
            status = _fault_status(e)
            if status == 429:
                limited = self._budget.exhausted(slack=0)
                resume = limited.resume_at if limited else _next_quarter(self._clock())
                raise RateLimited(
                    f"strava answered 429 (too many requests): paused until {resume:%H:%M} UTC",
                    resume_at=resume,
                    source=KIND,
                ) from None
            if status == 403:
                raise AuthRequired(
                    f"strava refused access (HTTP 403): run {self._command}",
                    source=KIND,
                    command=self._command,
                ) from None
            raise SourceUnavailable(
                f"strava answered HTTP {status}: will retry at the next poll", source=KIND
            ) from None
        except requests.RequestException as e:
            raise SourceUnavailable(
                f"strava is unreachable ({type(e).__name__}): will retry at the next poll",
                source=KIND,
            ) from None

    def _list_page(self, after: int, page: int) -> list[Mapping[str, Any]]:
        result = self._call(
            self._client.protocol.get,
            "/athlete/activities",
            after=after,
            page=page,
            per_page=PER_PAGE,
        )
        if not isinstance(result, list):
            raise SourceUnavailable("strava's activity list was not a list", source=KIND)
        return [r for r in result if isinstance(r, dict)]

    def _track(self, activity: Activity) -> Track | None:
        try:
            streams = self._call(
                self._client.get_activity_streams, int(activity.source_id), types=STREAM_TYPES
            )
        except strava_exc.ObjectNotFound:
            log.info("strava_streams_missing", source=self._name, id=activity.source_id)
            return None
        except (ValidationError, AttributeError, TypeError, ValueError) as e:
            # stravalib parses the streams itself; an odd answer costs this run its profile,
            # not the sync: it keeps the label its summary gives.
            log.warning(
                "strava_streams_unreadable",
                source=self._name,
                id=activity.source_id,
                error=type(e).__name__,
            )
            return None
        try:
            return track_from_streams(streams)
        except (TypeError, ValueError) as e:
            log.warning(
                "strava_streams_unreadable",
                source=self._name,
                id=activity.source_id,
                error=type(e).__name__,
            )
            return None

    def _wants_streams(self, activity: Activity) -> bool:
        manual = bool((activity.raw or {}).get("manual"))
        if activity.sport not in self._sports or activity.indoor or manual:
            return False
        return self._streams == "always" or self._needs_profile(activity)

    # --- fetch -------------------------------------------------------------------------

    def fetch(self, state: SourceState) -> Iterator[Batch]:
        """Yield one Batch per list page of activities new or changed since `state`.

        Raises AuthRequired (not connected, token refused, inactive app), RateLimited (the
        budget is spent: the batches yielded before stay, and the cursor resumes there) or
        SourceUnavailable (server errors and timeouts after retries).
        """
        cursor: dict[str, Any] = dict(state.cursor)
        newest: int | None = cursor.get("newest")
        if newest is None and state.newest_start is not None:
            newest = _epoch(state.newest_start)
        recent: dict[str, str] = dict(cursor.get("recent") or {})
        since = _epoch(state.since)
        resumed: dict[str, Any] | None = cursor.get("listing")
        listing: dict[str, Any]
        earliest: int | None = cursor.get("since")
        if state.full or (earliest is not None and since < earliest - 86_400):
            listing = {"after": since, "page": 1, "done": {}, "full": True}
        elif resumed is None:
            start = since if newest is None else max(newest - int(OVERLAP.total_seconds()), 0)
            listing = {"after": start, "page": 1, "done": {}, "full": False}
        else:
            listing = dict(resumed)
            log.info("strava_listing_resumed", source=self._name, after=listing.get("after"))
        earliest = min(since, earliest) if earliest is not None else int(listing["after"])
        full = bool(listing.get("full"))

        def cursor_now(current: dict[str, Any] | None) -> dict[str, Any]:
            horizon = (newest or 0) - int(OVERLAP.total_seconds()) - 86_400
            kept = {k: [v, t] for k, (v, t) in recent_times.items() if t >= horizon}
            out: dict[str, Any] = {"v": 1, "newest": newest, "since": earliest, "recent": kept}
            rates = self._budget.snapshot()
            if rates:  # for `hillsync status`: the budget as Strava last reported it
                out["rate"] = {"at": self._clock().isoformat(), **rates}
            if current is not None:
                out["listing"] = current
            return out

        recent_times: dict[str, tuple[str, int]] = {
            k: (v, int(t)) for k, v, t in _split_recent(recent)
        }
        while True:
            after, page = int(listing["after"]), int(listing["page"])
            done: dict[str, str] = dict(listing.get("done") or {})
            raws = self._list_page(after, page)
            activities: list[Activity] = []
            rejected: list[Rejected] = []
            last_start = after
            try:
                for raw in raws:
                    key = str(raw.get("id"))
                    fp = _fingerprint(raw)
                    try:
                        activity = activity_from_summary(raw, self._name)
                    except (ValidationError, ValueError, TypeError) as e:
                        rejected.append(Rejected(key=key, reason=_reason(e), fingerprint=fp))
                        continue
                    start = _epoch(activity.start_time)
                    last_start = max(last_start, start)
                    newest = start if newest is None else max(newest, start)
                    if done.get(key) == fp:
                        continue
                    if not full and recent_times.get(key, ("", 0))[0] == fp:
                        continue
                    if self._wants_streams(activity):
                        activity = replace(activity, track=self._track(activity))
                    activities.append(activity)
                    done[key] = fp
                    recent_times[key] = (fp, start)
            except RateLimited:
                # Keep what this page already cost: the next run skips the ids in `done`.
                if activities or rejected:
                    partial = {**listing, "done": done}
                    yield Batch(
                        activities=activities, rejected=rejected, cursor=cursor_now(partial)
                    )
                raise
            finished = len(raws) < PER_PAGE
            following: dict[str, Any] | None
            if finished:
                following = None
            elif last_start - 1 > after:
                # Listing on from the last start (not by page number) stays right when
                # activities are added or deleted between two requests.
                following = {"after": last_start - 1, "page": 1, "done": {}, "full": full}
            else:
                following = {"after": after, "page": page + 1, "done": {}, "full": full}
            log.info(
                "strava_page",
                source=self._name,
                listed=len(raws),
                new=len(activities),
                rejected=len(rejected),
                requests=self.requests_made,
            )
            yield Batch(activities=activities, rejected=rejected, cursor=cursor_now(following))
            if following is None:
                return
            listing = following


def _split_recent(recent: Mapping[str, Any]) -> Iterator[tuple[str, str, int]]:
    for key, value in recent.items():
        if isinstance(value, list | tuple) and len(value) == 2:
            yield key, str(value[0]), int(value[1])


def _reason(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        details = error.errors()
        if details:
            where = ".".join(str(p) for p in details[0]["loc"])
            return f"unreadable Strava summary: {where}: {details[0]['msg']}"
        return "unreadable Strava summary"
    return f"unreadable Strava summary: {error}"


# --- connect / disconnect ------------------------------------------------------------------


def _pending_path(token_path: Path) -> Path:
    return token_path.with_name(token_path.name + ".pending")


def _code_from_redirect(redirect_url: str, token_path: Path) -> tuple[str, str]:
    """The code and granted scope of a pasted redirect URL, after checking its state.

    Raises AuthRequired (denied, state mismatch, nothing pending) or ConfigError (no code).
    """
    params = dict(parse_qsl(urlsplit(redirect_url).query, keep_blank_values=True))
    try:
        pending = json.loads(_pending_path(token_path).read_bytes())
        created = datetime.fromisoformat(pending["created"])
        expected = str(pending["state"])
    except (OSError, ValueError, KeyError, TypeError):
        raise AuthRequired(
            "no strava authorization is pending here: run hillsync connect strava --no-browser"
            " first, then paste the address the browser ends on",
            source=KIND,
        ) from None
    if datetime.now(UTC) - created > PENDING_TTL:
        raise AuthRequired(
            "the pending strava authorization is too old: run hillsync connect strava again",
            source=KIND,
        )
    if not secrets.compare_digest(params.get("state", ""), expected):
        raise AuthRequired(
            "the pasted address does not match the pending authorization (state mismatch): refused",
            source=KIND,
        )
    return _check_params(params)


def _check_params(params: Mapping[str, str]) -> tuple[str, str]:
    if params.get("error"):
        raise AuthRequired(
            "the strava authorization was denied: run hillsync connect strava again and"
            " press Authorize",
            source=KIND,
        )
    code = params.get("code")
    if not code:
        raise ConfigError("the redirect address holds no authorization code")
    scope = params.get("scope", "")
    if SCOPE not in scope.split(","):
        raise AuthRequired(
            f"strava granted '{scope}' without {SCOPE}: run hillsync connect strava again"
            " and tick 'View data about your private activities'",
            source=KIND,
        )
    return code, scope


def connect_strava(
    client_id: int,
    client_secret: Secret,
    token_path: Path,
    *,
    code: str | None = None,
    redirect_url: str | None = None,
    open_browser: bool = True,
    port: int = DEFAULT_PORT,
    timeout_s: float = 300,
    say: Callable[[str], None] = print,
    session: requests.Session | None = None,
) -> ConnectedAccount:
    """Link a Strava account: authorize, exchange the code, store the tokens (0600).

    Without `code` or `redirect_url`, prints (and with `open_browser` opens) the
    authorize URL and waits on 127.0.0.1:`port` for the one redirect; the URL's `state`
    is also saved so that the address the browser ends on can be pasted later with
    `redirect_url`. A bare `code` cannot be checked for state or scope.

    Raises ConfigError (both code and URL, bad client id/secret), AuthRequired (denied,
    state mismatch, scope without activity:read_all, timeout, code refused) or
    SourceUnavailable (Strava unreachable).
    """
    if code and redirect_url:
        raise ConfigError("give either --code or --redirect-url, not both")
    session = session or _new_session()
    client = _make_client(session, None, None)
    scope = ""
    if redirect_url:
        code, scope = _code_from_redirect(redirect_url, token_path)
    elif code:
        say("note: a bare code does not show the granted scope; hillsync needs activity:read_all")
    else:
        state = secrets.token_urlsafe(24)
        try:
            listener = RedirectListener(state, port=port)
        except OSError as e:
            raise ConfigError(
                f"cannot listen on 127.0.0.1:{port} ({e.strerror}): free the port, or use"
                " --no-browser with --redirect-url or --code"
            ) from None
        with listener:
            url = client.authorization_url(
                client_id=client_id,
                redirect_uri=listener.redirect_uri,
                scope=_SCOPES,
                state=state,
            )
            write_private_file(
                _pending_path(token_path),
                json.dumps({"state": state, "created": datetime.now(UTC).isoformat()}).encode(),
            )
            say(f"Open this address to let hillsync read your Strava activities:\n{url}")
            if not open_browser:
                say(
                    "On another machine, the browser ends on an address that does not load:"
                    " copy it and run  hillsync connect strava --redirect-url 'ADDRESS'"
                )
            elif not webbrowser.open(url):
                say("(no browser could be opened: open the address yourself)")
            params = listener.wait(timeout_s)
        code, scope = _check_params(params)
    try:
        exchanged = client.exchange_code_for_token(
            client_id=client_id,
            client_secret=client_secret.reveal(),
            code=code,
            return_athlete=True,
        )
    except strava_exc.ApplicationInactive:
        raise AuthRequired(
            "the Strava API application is inactive: its owner needs a Strava subscription"
            " (reactivate it at strava.com/settings/api)",
            source=KIND,
        ) from None
    except requests.HTTPError as e:
        status = _fault_status(e)
        if any(err.get("resource") == "Application" for err in _error_codes(e)) or status == 401:
            raise ConfigError(
                "strava refused the client id or secret: check sources.strava.client_id and"
                " client_secret"
            ) from None
        raise AuthRequired(
            f"strava refused the authorization code (HTTP {status}; it may be used or"
            " expired): run hillsync connect strava again",
            source=KIND,
        ) from None
    except requests.RequestException as e:
        raise SourceUnavailable(
            f"strava is unreachable ({type(e).__name__}): try again later", source=KIND
        ) from None
    info, athlete = exchanged if isinstance(exchanged, tuple) else (exchanged, None)
    athlete_id = str(getattr(athlete, "id", "") or "")
    names = [getattr(athlete, "firstname", None), getattr(athlete, "lastname", None)]
    display = " ".join(n for n in names if n) or None
    tokens = _Tokens(
        access_token=Secret(info["access_token"]),
        refresh_token=Secret(info["refresh_token"]),
        expires_at=int(info["expires_at"]),
        athlete_id=athlete_id,
        scope=scope,
        display_name=display,
    )
    write_private_file(token_path, tokens.to_json())
    with contextlib.suppress(FileNotFoundError):
        _pending_path(token_path).unlink()
    log.info("strava_connected", athlete_id=athlete_id, scope=scope)
    return ConnectedAccount(remote_id=athlete_id, display_name=display, scope=scope)


def disconnect_strava(
    client_id: int,
    client_secret: Secret,
    token_path: Path,
    *,
    session: requests.Session | None = None,
) -> None:
    """Revoke the app's access (best effort) and delete the token file.

    Raises OSError only when the token file exists but cannot be deleted.
    """
    del client_id, client_secret  # deauthorization needs only the access token
    try:
        tokens = _read_tokens(token_path, "hillsync connect strava")
    except AuthRequired:
        tokens = None
    if tokens is not None:
        client = _make_client(session or _new_session(), tokens.access_token.reveal(), None)
        try:
            client.deauthorize()
        except requests.RequestException as e:
            log.warning("strava_deauthorize_failed", error=type(e).__name__)
    for path in (token_path, _pending_path(token_path)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    log.info("strava_disconnected")
