"""The application layer's own readers: tolerant of what other versions stored."""

from __future__ import annotations

from hillsync.model import BalanceStatus, SyncStatus
from hillsync.sources.base import RATE_KEY, rate_budget


class TestRateBudget:
    """`rate_budget` reads the budget a source keeps in its cursor, and nothing else."""

    def test_reads_each_budget(self) -> None:
        """Strava's read and overall budgets become used/limit per window."""
        cursor = {
            "newest": 1,
            RATE_KEY: {"at": "2026-03-10T12:00:00+00:00", "read": [3, 40, 100, 1000]},
        }
        report = rate_budget(cursor)
        assert report is not None
        assert report.at == "2026-03-10T12:00:00+00:00"
        [read] = report.budgets
        assert (read.name, read.short.used, read.short.limit) == ("read", 3, 100)
        assert (read.daily.used, read.daily.limit) == (40, 1000)
        assert report.as_json()["read"] == {
            "15min": {"used": 3, "limit": 100},
            "daily": {"used": 40, "limit": 1000},
        }

    def test_no_or_odd_budget(self) -> None:
        """A cursor without a budget gives None; malformed entries are left out."""
        assert rate_budget({}) is None
        assert rate_budget({RATE_KEY: "garbage"}) is None
        report = rate_budget({RATE_KEY: {"read": [1, 2, 3], "overall": ["a", 1, 2, 3]}})
        assert report is not None
        assert report.budgets == ()


class TestStoredStates:
    """States written by another version are read without failing."""

    def test_sync_status(self) -> None:
        """An unknown sync state reads as error (shown and retried), None as never synced."""
        assert SyncStatus.parse("rate_limited") is SyncStatus.RATE_LIMITED
        assert SyncStatus.parse("paused_by_v9") is SyncStatus.ERROR
        assert SyncStatus.parse(None) is SyncStatus.NEVER_SYNCED

    def test_balance_status(self) -> None:
        """An unknown balance status reads as none: evaluation starts afresh."""
        assert BalanceStatus.stored("low") is BalanceStatus.LOW
        assert BalanceStatus.stored("wobbly") is None
        assert BalanceStatus.stored(None) is None
