"""How often each athlete of one Strava application may be polled within its daily reads.

Apart from `budget` (which needs stravalib's limiter): the registry plans poll intervals for
`status` and `balance` too, which must not import stravalib.
"""

from __future__ import annotations

#: Reads one poll of one athlete costs, counted high: the list page, and now and then a stream.
READS_PER_POLL = 2
#: Strava's default daily read limit of an application (raised applications report theirs).
DAILY_READS = 1000
#: The share of an application's daily reads kept free for connects, backfills and retries.
DAILY_RESERVE = 0.2
_MINUTES_PER_DAY = 1440


def stretched_poll_minutes(
    poll_minutes: float, athletes: int, daily_reads: int = DAILY_READS
) -> float:
    """The poll interval of each of `athletes` sharing one application, so that their polls
    together keep the application's daily reserve:

        interval >= athletes x READS_PER_POLL x 1440 / (daily_reads x (1 - DAILY_RESERVE))

    and never shorter than the configured `poll_minutes` (10 athletes on a 1,000-read
    application: 36 minutes, 800 reads a day at most).
    """
    usable = daily_reads * (1 - DAILY_RESERVE)
    if athletes <= 0 or usable <= 0:
        return poll_minutes
    return max(poll_minutes, athletes * READS_PER_POLL * _MINUTES_PER_DAY / usable)
