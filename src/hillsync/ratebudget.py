"""The worker's side of an API application's shared rate budget: grants from the store.

A Strava source asks its `SharedBudget` before each request and tells it what Strava's
headers report; this implementation takes requests from the application's budget in the
store a few at a time (one short transaction per chunk, the budget row locked), so that all
workers together never exceed it, and gives back what it did not use when the sync ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

import structlog
from sqlalchemy.orm import Session

from hillsync.errors import RateLimited
from hillsync.store import budgets
from hillsync.store.db import Database

log = structlog.get_logger(__name__)

#: Requests taken from the store at once: fewer transactions, little held back from others.
CHUNK = 5


class StoreBudget:
    """A `SharedBudget` counted in the store for one application (`strava:CLIENT_ID`)."""

    def __init__(
        self,
        db: Database,
        app: str,
        *,
        clock: Callable[[], datetime],
        chunk: int = CHUNK,
        reserve: budgets.Reserve = budgets.Reserve(),  # noqa: B008 - a frozen value
    ) -> None:
        self.db = db
        self.app = app
        self._clock = clock
        self._chunk = chunk
        self._reserve = reserve
        #: Per method class (GET, other): requests granted and not yet used, and when.
        self._left: dict[str, tuple[int, datetime]] = {}
        self._reported: tuple[dict[str, tuple[int, int, int, int]], datetime] | None = None
        self.requests = 0

    def acquire(self, method: str) -> None:
        """Take one request. Raises RateLimited when the application's budget is spent, and
        StoreError when the database fails."""
        key = "GET" if method.upper() == "GET" else "POST"
        left, granted_at = self._left.get(key, (0, self._clock()))
        if left > 0:
            self._left[key] = (left - 1, granted_at)
            self.requests += 1
            return
        now = self._clock()
        with self.db.session() as session:
            self._merge_report(session, now)
            grant = budgets.acquire(
                session, self.app, method=key, want=self._chunk, now=now, reserve=self._reserve
            )
        if not grant.granted:
            resume = grant.resume_at or now
            log.info("rate_budget_spent", app=self.app, resume_at=resume.isoformat())
            raise RateLimited(
                grant.reason or f"the API budget is spent until {resume:%H:%M} UTC",
                resume_at=resume,
                source=self.app.split(":", 1)[0],
            )
        self._left[key] = (grant.granted - 1, now)
        self.requests += 1

    def report(self, rates: Mapping[str, tuple[int, int, int, int]], at: datetime) -> None:
        """Keep what the API reported; it reaches the store with the next chunk or `close`."""
        self._reported = ({k: (v[0], v[1], v[2], v[3]) for k, v in rates.items()}, at)

    def close(self) -> None:
        """Give back the requests granted and not made, and store the last report.

        Raises StoreError when the database fails.
        """
        now = self._clock()
        with self.db.session() as session:
            self._merge_report(session, now)
            for key, (left, granted_at) in self._left.items():
                budgets.give_back(
                    session, self.app, method=key, unused=left, granted_at=granted_at, now=now
                )
        self._left.clear()

    def _merge_report(self, session: Session, now: datetime) -> None:
        if self._reported is not None:
            rates, at = self._reported
            budgets.report(session, self.app, rates, at=at, now=now)
            self._reported = None
