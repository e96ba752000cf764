"""The one backoff formula: a first delay, doubling with every failure, capped."""

from __future__ import annotations

from datetime import timedelta

#: Doublings beyond this change nothing (every cap is reached) and would overflow timedelta.
_MAX_DOUBLINGS = 20


def exponential(first: timedelta, failures: int, cap: timedelta) -> timedelta:
    """The wait after `failures` failures in a row: `first` after one (or none), then
    doubling, never more than `cap`. Raises nothing."""
    doublings = min(_MAX_DOUBLINGS, max(0, failures - 1))
    return min(first * float(2**doublings), cap)
