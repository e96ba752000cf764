"""The Strava polling source: economical listing, streams only where needed, resumable."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import requests
import structlog
import tenacity
from pydantic import ValidationError
from stravalib import exc as strava_exc

from hillsync.errors import (
    AccessRevoked,
    AuthRequired,
    BadActivity,
    LockBusy,
    RateLimited,
    SourceUnavailable,
)
from hillsync.locks import file_lock
from hillsync.model import RUN_SPORTS, Activity, Batch, Rejected, Secret, Track
from hillsync.paths import write_private_file
from hillsync.sources.base import SharedBudget, SourceState
from hillsync.sources.strava.budget import Budget, next_quarter
from hillsync.sources.strava.client import (
    STRAVA_API_BASE,
    error_codes,
    fault_status,
    make_client,
    new_session,
    policy,
)
from hillsync.sources.strava.mapping import (
    KIND,
    activity_from_summary,
    epoch,
    fingerprint,
    track_from_streams,
)
from hillsync.sources.strava.tokens import (
    REFRESH_MARGIN,
    Tokens,
    not_connected,
    read_tokens,
    refreshed_tokens,
)

log = structlog.get_logger(__name__)


T = TypeVar("T")

PER_PAGE = 200
#: Edits and late uploads (a watch synced days later) land inside this window.
OVERLAP = timedelta(days=2)
STREAM_TYPES = ["altitude", "distance", "latlng"]


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
        api_base: str = STRAVA_API_BASE,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        budget: SharedBudget | None = None,
    ) -> None:
        self._name = name
        self._client_id = client_id
        self._client_secret = client_secret
        self._token_path = token_path
        self._streams = streams
        self._needs_profile = needs_profile
        self._clock = clock
        self._retrying = policy(retrying)
        self._command = reconnect_command
        self._sports = frozenset(sports)
        self._budget = Budget(clock, reserve, budget)
        self._client = make_client(session or new_session(), None, self._budget, api_base)
        self._tokens: Tokens | None = None
        # Waiting for another process's refresh is short (the lock helper's timeout), so it
        # never holds up a shutdown; the waiting goes through these, so tests never sleep.
        self._sleep = sleep
        self._monotonic = monotonic
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
        now = epoch(self._clock())
        margin = int(REFRESH_MARGIN.total_seconds())
        if self._tokens is None:
            self._tokens = read_tokens(self._token_path, self._command)
        if self._tokens.expires_at - margin <= now:
            self._tokens = self._refresh_locked(now, margin)
        self._client.access_token = self._tokens.access_token.reveal()

    def _refresh_locked(self, now: int, margin: int, *, force: bool = False) -> Tokens:
        if not self._token_path.exists():
            raise not_connected(self._command)
        try:
            with file_lock(
                self._lock_path(),
                what="the strava token file",
                sleep=self._sleep,
                monotonic=self._monotonic,
            ):
                return self._refresh_holding_lock(now, margin, force=force)
        except LockBusy:
            raise SourceUnavailable(
                "another hillsync process is refreshing the strava token: will retry at the"
                " next poll",
                source=KIND,
            ) from None

    def _refresh_holding_lock(self, now: int, margin: int, *, force: bool) -> Tokens:
        """Refresh with the lock held. Raises AuthRequired, AccessRevoked, RateLimited,
        SourceUnavailable."""
        # Another process may have rotated the token while this one waited for the lock:
        # its refresh token is then the only valid one.
        current = read_tokens(self._token_path, self._command)
        rotated_elsewhere = self._tokens is None or (
            current.refresh_token.reveal() != self._tokens.refresh_token.reveal()
        )
        if current.expires_at - margin > now and (not force or rotated_elsewhere):
            log.info("strava_token_reused", source=self._name)
            return current
        self._budget.check("POST")
        try:
            info = self._retrying(
                self._client.refresh_access_token,
                client_id=self._client_id,
                client_secret=self._client_secret.reveal(),
                refresh_token=current.refresh_token.reveal(),
            )
        except requests.HTTPError as e:
            self.requests_made += 1
            status = fault_status(e)
            if status in (400, 401) and _says_invalid_grant(e):
                # Strava refuses a refresh token once the athlete revoked the app.
                raise AccessRevoked(
                    f"strava refused the refresh token (HTTP {status}): the athlete"
                    " revoked hillsync's access on Strava, so hillsync deletes what came"
                    f" only from this Strava account; run {self._command} to connect again",
                    source=KIND,
                    command=self._command,
                ) from None
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
        rotated = refreshed_tokens(current, info)
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

    # --- requests ----------------------------------------------------------------------

    def _call(
        self, fn: Callable[..., T], *args: Any, _retried_auth: bool = False, **kwargs: Any
    ) -> T:
        """One API request: token, budget, retries, and errors mapped to hillsync's.

        Raises AuthRequired, RateLimited, SourceUnavailable; stravalib's ObjectNotFound
        passes through (the caller knows what a missing object means).
        """
        retried_auth = _retried_auth
        self._ensure_token()

        def attempt() -> T:
            # Each attempt is a request: a retry takes its own share of the budget.
            self._budget.check()
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
            if not retried_auth:
                # A 401 on a token hillsync thinks valid: either it was revoked on Strava's
                # side (the athlete revoked access: the refresh is then refused) or it was
                # rotated by another copy. A forced refresh tells which.
                assert self._tokens is not None
                now = epoch(self._clock())
                self._tokens = self._refresh_locked(
                    now, int(REFRESH_MARGIN.total_seconds()), force=True
                )
                self._client.access_token = self._tokens.access_token.reveal()
                return self._call(fn, *args, _retried_auth=True, **kwargs)
            self._tokens = None
            raise AuthRequired(
                f"strava refused the access token (HTTP 401): run {self._command}",
                source=KIND,
                command=self._command,
            ) from None
        except requests.HTTPError as e:
            status = fault_status(e)
            if status == 429:
                limited = self._budget.exhausted(slack=0)
                resume = limited.resume_at if limited else next_quarter(self._clock())
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

    def _list_page(self, after: int, page: int) -> list[Any]:
        """One page of the activity list as Strava sent it (its entries unchecked).

        Raises AuthRequired, RateLimited, SourceUnavailable (also when it is not a list).
        """
        result = self._call(
            self._client.protocol.get,
            "/athlete/activities",
            after=after,
            page=page,
            per_page=PER_PAGE,
        )
        if not isinstance(result, list):
            raise SourceUnavailable("strava's activity list was not a list", source=KIND)
        # Every entry, objects or not: the page's length tells whether it was the last.
        return result

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
            newest = epoch(state.newest_start)
        recent: dict[str, str] = dict(cursor.get("recent") or {})
        since = epoch(state.since)
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
                    if not isinstance(raw, dict):
                        rejected.append(
                            Rejected(
                                key="?",
                                reason=f"strava listed a {type(raw).__name__} where an"
                                " activity belongs",
                            )
                        )
                        continue
                    key = str(raw.get("id"))
                    fp = fingerprint(raw)
                    try:
                        activity = activity_from_summary(raw, self._name)
                    except BadActivity as e:
                        rejected.append(Rejected(key=key, reason=str(e), fingerprint=fp))
                        continue
                    if activity.warning:
                        log.warning(
                            "strava_summary_repaired", source=self._name, id=key,
                            warning=activity.warning,
                        )  # fmt: skip
                    start = epoch(activity.start_time)
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


def _says_invalid_grant(error: requests.HTTPError) -> bool:
    """Whether Strava's refusal names the refresh token (or the grant) as invalid."""
    for err in error_codes(error):
        if str(err.get("code", "")).lower() == "invalid" and str(
            err.get("resource", "")
        ).lower() in ("refreshtoken", "authorization", "athlete"):
            return True
    return False
