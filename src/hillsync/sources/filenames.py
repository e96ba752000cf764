"""Which file names hold activities: the one thing a folder scan needs to know of the formats.

Kept apart from fileformats (numpy, lxml, fitdecode) so that a poll finding nothing new
imports none of the readers.
"""

from __future__ import annotations

#: Extensions read, with or without a trailing ".gz".
ACTIVITY_SUFFIXES: tuple[str, ...] = (".fit", ".gpx", ".tcx")
#: Every lower-case ending a folder scan looks at: activity files, gzipped or not, and zips.
SCANNED_SUFFIXES: tuple[str, ...] = (
    *ACTIVITY_SUFFIXES,
    *(s + ".gz" for s in ACTIVITY_SUFFIXES),
    ".zip",
)


def is_activity_file(name: str) -> bool:
    """Whether a file name has one of the extensions read (.fit/.gpx/.tcx, optionally .gz)."""
    lower = name.lower()
    if lower.endswith(".gz"):
        lower = lower[:-3]
    return lower.endswith(ACTIVITY_SUFFIXES)
