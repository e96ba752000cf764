"""The one clock: the current time as an aware UTC datetime.

Everything that needs "now" takes a `Clock` argument defaulting to `utc_now`, so that tests
pass a fixed or stepping clock and never read the real time or sleep.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, aware UTC. Raises nothing."""
    return datetime.now(UTC)
