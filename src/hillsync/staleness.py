"""A source that stopped delivering: learn the athlete's rhythm, notice the silence.

Pure: it looks at the start times of the runs a source delivered, nothing else.

A source delivers *regularly* when it brought at least `MIN_RUNS` runs in the `LEARN`
window before its last run and the usual gap between them (the 90th percentile) is shorter
than `stale_days`. Such a source is *stale* when its newest run started `stale_days` or
more ago: a runner who runs every three weeks is never told, one who runs four times a
week is told after `stale_days` of silence.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

#: How far back the rhythm is learned, from the newest run.
LEARN = timedelta(days=90)
#: Fewer runs than this in the window: not enough to call a rhythm regular.
MIN_RUNS = 4


@dataclass(frozen=True)
class Rhythm:
    """How a source has been delivering: runs in the window and the usual gap."""

    runs: int
    usual_gap: timedelta
    last_start: datetime


@dataclass(frozen=True)
class Stale:
    """A regular source silent for `silent` (its newest run started at `last_start`)."""

    last_start: datetime
    silent: timedelta
    usual_gap: timedelta

    def describe(self, source: str) -> str:
        """One line for the runner."""
        return (
            f"{source} has delivered no run for {self.silent.days} days (last one"
            f" {self.last_start:%Y-%m-%d}), while it usually brings one every"
            f" {_days(self.usual_gap)}: check that it still syncs (watch, app, login)"
        )


def _days(gap: timedelta) -> str:
    days = gap.total_seconds() / 86_400
    return "day" if days < 1.5 else f"{days:.0f} days"


def rhythm(starts: Sequence[datetime]) -> Rhythm | None:
    """The source's rhythm from its runs' start times (any order), or None without runs."""
    if not starts:
        return None
    ordered = sorted(starts)
    last = ordered[-1]
    window = [s for s in ordered if s >= last - LEARN]
    gaps = sorted(b - a for a, b in itertools.pairwise(window))
    if not gaps:
        return Rhythm(runs=len(window), usual_gap=LEARN, last_start=last)
    # The 90th percentile: one long holiday does not make a regular runner irregular,
    # a runner whose every other gap is long is not regular.
    usual = gaps[min(len(gaps) - 1, int(0.9 * len(gaps)))]
    return Rhythm(runs=len(window), usual_gap=usual, last_start=last)


def staleness(starts: Sequence[datetime], now: datetime, stale_days: int) -> Stale | None:
    """A Stale when the source delivered regularly and has been silent `stale_days`."""
    found = rhythm(starts)
    if found is None or found.runs < MIN_RUNS:
        return None
    limit = timedelta(days=stale_days)
    if found.usual_gap >= limit:
        return None
    silent = now - found.last_start
    if silent < limit:
        return None
    return Stale(last_start=found.last_start, silent=silent, usual_gap=found.usual_gap)
