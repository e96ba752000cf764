"""The Garmin polling source: new activities newest first, then a resumable backfill."""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import structlog
import tenacity
from garminconnect import (
    Garmin,
    GarminConnectAuthenticationError,
    GarminConnectTooManyRequestsError,
)

from hillsync.errors import (
    AuthRequired,
    BadActivity,
    LockBusy,
    SourceError,
    SourceUnavailable,
)
from hillsync.locks import file_lock
from hillsync.model import RUN_SPORTS, Activity, Batch, Rejected
from hillsync.retry import default_retrying
from hillsync.sources.base import SourceState
from hillsync.sources.fileformats import read_activity_bytes
from hillsync.sources.garmin.errors import (
    CONNECT_COMMAND,
    GARMIN_ERRORS,
    chain,
    http_status,
    is_transient,
    refresh_reason,
    refresh_refused,
    translate,
)
from hillsync.sources.garmin.mapping import activity_from_summary, fit_from_download, summary_key
from hillsync.sources.garmin.tokens import real_dir, token_file

log = structlog.get_logger(__name__)


T = TypeVar("T")
#: Activities uploaded late (a watch synced days later) still show up within this overlap.
OVERLAP = timedelta(days=2)
#: A backfill lists one date window at a time, newest first, so that it can resume.
BACKFILL_WINDOW_DAYS = 90
#: The listing endpoint behind get_activities and get_activities_by_date.
_ACTIVITY_LIST = "/activitylist-service/activities/search/activities"


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


#: How long Garmin may refuse the saved login (401 with a failed refresh) before the source
#: asks for a reconnect: Garmin's token service has outages that heal by themselves.
AUTH_GRACE = timedelta(hours=6)
#: The cursor key holding when the refusals began (ISO 8601, UTC).
_AUTH_FAILING = "auth_failing_since"


class LoggedInClients:
    """Logged-in garminconnect clients by token file, each valid while the file is the one
    it was made from (a token login costs two profile requests; the worker builds a source
    per cycle). Whoever runs the cycles owns one and passes it to every source it builds."""

    def __init__(self) -> None:
        self._clients: dict[tuple[Path, int], tuple[int | None, Garmin]] = {}

    def get(self, key: tuple[Path, int], mtime: int | None) -> Garmin | None:
        """The client made from the token file as it was at `mtime`, if any."""
        cached = self._clients.get(key)
        return cached[1] if cached is not None and cached[0] == mtime else None

    def put(self, key: tuple[Path, int], mtime: int | None, garmin: Garmin) -> None:
        """Remember `garmin` as made from (or having last written) the file at `mtime`."""
        self._clients[key] = (mtime, garmin)

    def drop(self, key: tuple[Path, int]) -> None:
        """Forget the client of a token file Garmin refused."""
        self._clients.pop(key, None)

    def __contains__(self, key: tuple[Path, int]) -> bool:
        return key in self._clients


class _LoginRefused(SourceUnavailable):
    """Garmin refused the saved login with a 401 and refreshing it failed, not as revoked."""

    def __init__(self, message: str, *, source: str, auth: AuthRequired) -> None:
        super().__init__(message, source=source)
        self.auth = auth


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
        clients: LoggedInClients | None = None,
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
        self._retrying = (retrying or default_retrying()).copy(
            retry=tenacity.retry_if_exception(is_transient), reraise=True
        )
        self._factory = garmin_factory
        self._command = reconnect_command
        self._page_size = page_size
        self._garmin: Garmin | None = None
        self._clients = clients if clients is not None else LoggedInClients()
        #: The last DI token refresh garminconnect tried: its failure, or None (it worked).
        self._refresh_failure: BaseException | None = None
        self._refresh_tried = False

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
        except GARMIN_ERRORS as exc:
            raise self._error(exc, during) from None

    def _key(self) -> tuple[Path, int]:
        return (token_file(self._token_dir), id(self._factory))

    def _error(self, exc: BaseException, during: str) -> SourceError:
        err = translate(
            exc, source=self._name, command=self._command, now=self._clock(), during=during
        )
        if isinstance(err, AuthRequired):
            self._garmin = None
            self._clients.drop(self._key())
            if http_status(exc) == 401 and not refresh_refused(self._refresh_failure):
                # garminconnect refreshes on a 401 and swallows a failed refresh: unless
                # Garmin refused the refresh token itself, this is its token service having
                # an outage, which heals; fetch() decides how long that may last.
                why = (
                    refresh_reason(self._refresh_failure)
                    if self._refresh_failure is not None
                    else ("refreshed, still refused" if self._refresh_tried else "no refresh")
                )
                err = _LoginRefused(
                    f"Garmin Connect refused the saved login of {self._name} {during} (HTTP 401;"
                    f" token refresh: {why}): will retry with backoff, and ask for a reconnect"
                    f" only if this lasts {AUTH_GRACE.total_seconds() / 3600:g} hours",
                    source=self._name,
                    auth=err,
                )
        log.warning(
            "garmin_call_failed", source=self._name, during=during, error=type(err).__name__
        )
        return err

    def _watch_refresh(self, garmin: Garmin) -> None:
        """Record what garminconnect's DI token refresh does: it swallows a failure, and only
        its status tells an outage (retry) from a revoked token (reconnect)."""
        client = getattr(garmin, "client", None)
        refresh = getattr(client, "_refresh_di_token", None)
        if client is None or refresh is None:
            return

        def watched() -> None:
            self._refresh_tried = True
            try:
                refresh()
            except BaseException as exc:
                self._refresh_failure = exc
                raise
            self._refresh_failure = None

        client._refresh_di_token = watched

    def _client(self) -> Garmin:
        """A logged-in client; reused while the token file is the one it was made from.

        Raises AuthRequired (not connected, tokens refused), RateLimited, SourceUnavailable.
        """
        path = token_file(self._token_dir)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            self._garmin = None
            raise AuthRequired(
                f"{self._name} is not connected: run {self._command}",
                source=self._name,
                command=self._command,
            ) from None
        cached = self._clients.get(self._key(), mtime)
        if cached is not None:
            self._garmin = cached
            self._watch_refresh(cached)
            return cached
        garmin = self._factory(retry_attempts=0)
        self._watch_refresh(garmin)
        # A path, not the JSON: the library writes refreshed tokens back to it. The real
        # path: garminconnect refuses one with a symlink (not owned by root) in it.
        self._call("at login", garmin.login, str(real_dir(self._token_dir)))
        self._garmin = garmin
        self._clients.put(self._key(), self._mtime(), garmin)
        return garmin

    def _mtime(self) -> int | None:
        try:
            return token_file(self._token_dir).stat().st_mtime_ns
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
            cursor: Mapping[str, Any] = state.cursor
            try:
                for batch in self._fetch(state):
                    if batch.cursor is not None:
                        cursor = batch.cursor
                    yield batch
            except _LoginRefused as refused:
                now = self._clock()
                since = _parse_time(cursor.get(_AUTH_FAILING)) or now
                if now - since >= AUTH_GRACE:
                    raise AuthRequired(
                        f"Garmin Connect has refused the saved login of {self._name} since"
                        f" {since:%Y-%m-%d %H:%M} UTC and refreshing it keeps failing:"
                        f" run {self._command}",
                        source=self._name,
                        command=self._command,
                    ) from None
                # Remembered in the cursor (committed before the error is raised), so the
                # grace period counts from the first refusal across polls and restarts.
                yield Batch(cursor={**cursor, _AUTH_FAILING: since.isoformat()})
                raise SourceUnavailable(str(refused), source=self._name) from None
            if _AUTH_FAILING in cursor:
                log.info("garmin_login_recovered", source=self._name)
                yield Batch(cursor={k: v for k, v in cursor.items() if k != _AUTH_FAILING})

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the account's lock file: one process at a time uses (and so refreshes and
        rewrites) its tokens, so that a `hillsync sync` beside the daemon cannot make two
        refreshes race and one rotated token be lost.

        Raises SourceUnavailable when another process holds it.
        """
        self._token_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            with file_lock(self._token_dir / ".lock", timeout_s=0, what=self._name):
                yield
        except LockBusy:
            raise SourceUnavailable(
                f"{self._name} is being synced by another hillsync process: will retry",
                source=self._name,
            ) from None

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
            if self._garmin is not None and self._key() in self._clients:
                self._clients.put(self._key(), self._mtime(), self._garmin)

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
                    rejected.append(Rejected(key=summary_key(summary), reason=str(exc)))
                    continue
                self._note_repair(act)
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
                    rejected.append(Rejected(key=summary_key(summary), reason=str(exc)))
                    continue
                self._note_repair(act)
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

    def _note_repair(self, act: Activity) -> None:
        """Log a summary whose implausible figures were dropped (its `warning`)."""
        if act.warning:
            log.warning(
                "garmin_summary_repaired", source=self._name, id=act.source_id,
                warning=act.warning,
            )  # fmt: skip

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
        except GARMIN_ERRORS as exc:
            status = http_status(exc)
            account_wide = status in (401, 403, 427, 429) or any(
                isinstance(e, GarminConnectAuthenticationError | GarminConnectTooManyRequestsError)
                for e in chain(exc)
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
            payload, filename = fit_from_download(data, act.source_id)
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


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
