"""The interface every source implements.

A source reads activities from one place (a folder, an account) and yields them in
batches; the worker stores each batch together with the cursor that follows it. A source
never touches the database: what it needs to know of earlier syncs arrives in `SourceState`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from hillsync.model import Batch


@dataclass(frozen=True)
class SourceState:
    """What the worker knows of a source from earlier syncs.

    `cursor` is what the source last returned in a `Batch` (empty at the first sync).
    `seen` maps item keys to fingerprints already handled (a folder's files).
    `since` is the earliest start time to fetch at a first sync or with `--since`.
    `full` asks for the whole window to be listed again (edits and deletions).
    `newest_start` is the newest start time stored for this source, if any.
    """

    since: datetime
    cursor: Mapping[str, Any] = field(default_factory=dict)
    seen: Mapping[str, str] = field(default_factory=dict)
    full: bool = False
    newest_start: datetime | None = None


#: The cursor key under which a source that meters an API keeps its rate budget as the API
#: last reported it: {"at": ISO time, NAME: [15-min used, daily used, 15-min limit, daily
#: limit], ...} (NAME: "read", "overall"). Only `rate_budget` reads it outside the source.
RATE_KEY = "rate"


@dataclass(frozen=True)
class RateWindow:
    """Requests used of a limit in one window."""

    used: int
    limit: int


@dataclass(frozen=True)
class RateBudget:
    """One metered budget (Strava's `read` or `overall`) as the API last reported it: the
    15-minute window (resets at the quarter hour) and the day's (resets at UTC midnight)."""

    name: str
    short: RateWindow
    daily: RateWindow


@dataclass(frozen=True)
class RateReport:
    """Every budget a source last saw, and when (ISO 8601 text as the source wrote it)."""

    at: str | None
    budgets: tuple[RateBudget, ...]

    def as_json(self) -> dict[str, Any]:
        """`{at, read: {15min: {used, limit}, daily: {...}}, ...}` for `status --json`."""
        out: dict[str, Any] = {"at": self.at}
        for b in self.budgets:
            out[b.name] = {
                "15min": {"used": b.short.used, "limit": b.short.limit},
                "daily": {"used": b.daily.used, "limit": b.daily.limit},
            }
        return out


def rate_budget(cursor: Mapping[str, Any]) -> RateReport | None:
    """The rate budget a source keeps in its cursor under RATE_KEY, or None when it keeps
    none (folders, Garmin) or it is unreadable. Raises nothing."""
    rate = cursor.get(RATE_KEY)
    if not isinstance(rate, Mapping):
        return None
    at = rate.get("at")
    budgets = []
    for name, value in rate.items():
        if (
            isinstance(value, list | tuple)
            and len(value) == 4
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            short_used, long_used, short_limit, long_limit = value
            budgets.append(
                RateBudget(
                    str(name),
                    RateWindow(short_used, short_limit),
                    RateWindow(long_used, long_limit),
                )
            )
    return RateReport(at if isinstance(at, str) else None, tuple(budgets))


class Source(Protocol):
    """A place activities come from."""

    @property
    def name(self) -> str:
        """The source's name: `strava`, `garmin`, `folder`, a folder's own name."""
        ...

    @property
    def kind(self) -> str:
        """`strava`, `garmin` or `folder`."""
        ...

    def fetch(self, state: SourceState) -> Iterator[Batch]:
        """Yield batches of new or changed activities since `state`.

        Raises AuthRequired, RateLimited or SourceUnavailable when the source cannot go on;
        the batches yielded before the error have been committed and stay.
        """
        ...


class SharedBudget(Protocol):
    """A request budget wider than one source: an API application's, shared by every athlete
    and worker that uses it. The worker implements it on the store; a source only calls it,
    so it never touches the database itself.
    """

    def acquire(self, method: str) -> None:
        """Take one request of `method` (GET, POST) before making it.

        Raises RateLimited (with `resume_at`) when the application's budget is spent.
        """
        ...

    def report(self, rates: Mapping[str, tuple[int, int, int, int]], at: datetime) -> None:
        """What the API reported with an answer at `at`: {budget: (15-minute used, daily
        used, 15-minute limit, daily limit)}, e.g. Strava's `read` and `overall`."""
        ...
