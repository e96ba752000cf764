"""Strava's rate budget as the response headers report it: park, never sleep."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from stravalib.protocol import RequestMethod
from stravalib.util import limiter

from hillsync.errors import RateLimited
from hillsync.sources.base import SharedBudget
from hillsync.sources.strava.mapping import KIND

log = structlog.get_logger(__name__)


def next_quarter(now: datetime) -> datetime:
    base = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    return base + timedelta(minutes=15)


def next_midnight(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


class Budget(limiter.RateLimiter):
    """Remembers the last usage figures Strava reported, and refuses to spend the reserve.

    stravalib calls it with each response's headers; `check` runs before each request.
    With a `shared` budget (the application's, kept by the worker for every athlete and
    worker using it) each request is also taken from it, and each report passed on to it.
    """

    def __init__(
        self, clock: Callable[[], datetime], reserve: int, shared: SharedBudget | None = None
    ) -> None:
        super().__init__()
        self.rules = []
        self._clock = clock
        self._reserve = reserve
        self._shared = shared
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
        if self._shared is not None and self._rates:
            self._shared.report(
                {k: (v.short_usage, v.long_usage, v.short_limit, v.long_limit)
                 for k, v in self._rates.items()},
                self._seen_at,
            )  # fmt: skip

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
        same_quarter = same_day and next_quarter(now) == next_quarter(self._seen_at)
        for name, rate in self._rates.items():
            if same_day and rate.long_limit and rate.long_usage >= rate.long_limit - keep:
                resume = next_midnight(now)
                return RateLimited(
                    f"strava's daily {name} budget is spent ({rate.long_usage}/"
                    f"{rate.long_limit}): paused until {resume:%Y-%m-%d %H:%M} UTC",
                    resume_at=resume,
                    source=KIND,
                )
            if same_quarter and rate.short_limit and rate.short_usage >= rate.short_limit - keep:
                resume = next_quarter(now)
                return RateLimited(
                    f"strava's 15-minute {name} budget is spent ({rate.short_usage}/"
                    f"{rate.short_limit}): paused until {resume:%H:%M} UTC",
                    resume_at=resume,
                    source=KIND,
                )
        return None

    def check(self, method: str = "GET") -> None:
        """Raises RateLimited when the next request would eat into the reserve, or when the
        shared budget has none left for it."""
        limited = self.exhausted()
        if limited is not None:
            raise limited
        if self._shared is not None:
            self._shared.acquire(method)
