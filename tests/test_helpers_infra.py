"""The one lock helper and the one backoff formula: never blocking long, never sleeping."""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from hillsync.backoff import exponential
from hillsync.errors import LockBusy, SourceUnavailable
from hillsync.locks import file_lock


class FakeTime:
    """A monotonic clock that only moves when `sleep` is called."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Path]:
    """A lock file another open file description holds (as another process would)."""
    path = tmp_path / "tokens" / ".lock"
    path.parent.mkdir()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield path
    finally:
        os.close(fd)


class TestFileLock:
    """`file_lock` holds an exclusive lock, and gives up after its timeout."""

    def test_free_lock_is_taken_and_released(self, tmp_path: Path) -> None:
        """A free lock is held inside the block (a second taker fails) and free after."""
        path = tmp_path / "state" / ".lock"
        t = FakeTime()
        with (
            file_lock(path, timeout_s=0, sleep=t.sleep, monotonic=t.monotonic),
            pytest.raises(LockBusy),
            file_lock(path, timeout_s=0, sleep=t.sleep, monotonic=t.monotonic),
        ):
            pass  # pragma: no cover
        with file_lock(path, timeout_s=0, sleep=t.sleep, monotonic=t.monotonic):
            pass
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    def test_held_lock_times_out(self, held: Path) -> None:
        """A lock held elsewhere is waited for `timeout_s` (in fake time), then LockBusy,
        which a sync treats as a source being unavailable for this poll."""
        t = FakeTime()
        with (
            pytest.raises(LockBusy, match="strava tokens is in use") as caught,
            file_lock(
                held, timeout_s=2.0, what="strava tokens", sleep=t.sleep, monotonic=t.monotonic
            ),
        ):
            pass  # pragma: no cover
        assert isinstance(caught.value, SourceUnavailable)
        assert sum(t.slept) == pytest.approx(2.0)
        assert max(t.slept) <= 0.05

    def test_no_wait_with_zero_timeout(self, held: Path) -> None:
        """timeout_s=0 tries once and never sleeps."""
        t = FakeTime()
        with (
            pytest.raises(LockBusy),
            file_lock(held, timeout_s=0, sleep=t.sleep, monotonic=t.monotonic),
        ):
            pass  # pragma: no cover
        assert t.slept == []


class TestBackoff:
    """`exponential` doubles from its first delay up to its cap."""

    def test_doubling_and_cap(self) -> None:
        """1, 2, 4, 8 minutes, then the cap; no failure yet waits the first delay."""
        first, cap = timedelta(minutes=1), timedelta(minutes=6)
        waits = [exponential(first, n, cap) for n in range(6)]
        assert waits == [timedelta(minutes=m) for m in (1, 1, 2, 4, 6, 6)]

    def test_huge_failure_count(self) -> None:
        """A very old failure count neither overflows nor passes the cap."""
        assert exponential(timedelta(hours=1), 10_000, timedelta(hours=6)) == timedelta(hours=6)
