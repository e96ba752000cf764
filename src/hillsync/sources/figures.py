"""The figures of an API summary (distances, times, elevations, positions), checked.

An API payload may hold a null, a string, a bool, a negative or non-finite number where a
figure belongs (DESIGN 11: "odd API payloads ... rejected or repaired with a clear reason").
A figure that is not a plausible number is dropped (None), never coerced into another
value, and why is noted: the activity carries the note as its `warning`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: Highest minus lowest altitude of one activity, at most (Everest from the Dead Sea).
MAX_ELEVATION_RANGE_M = 9500.0


class Figures:
    """Reads figures out of one summary, noting each one it had to drop."""

    def __init__(self, summary: Mapping[str, Any]) -> None:
        self._summary = summary
        self.problems: list[str] = []

    def number(self, key: str, *, low: float = 0.0, high: float = math.inf) -> float | None:
        """The figure at `key` as a float when it is a finite number within [low, high];
        None when absent or null, and None with a noted problem otherwise. Raises nothing."""
        value = self._summary.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problems.append(f"{key} is not a number ({type(value).__name__})")
            return None
        try:
            f = float(value)
        except OverflowError:
            f = math.inf
        if not math.isfinite(f) or not low <= f <= high:
            self.problems.append(f"{key} {value!r} is out of range")
            return None
        return f

    def elevation_range(self, high_key: str, low_key: str) -> float | None:
        """Highest minus lowest altitude when both are numbers and the range is plausible
        (0 to MAX_ELEVATION_RANGE_M); None otherwise (a problem noted). Raises nothing."""
        high = self.number(high_key, low=-math.inf)
        low = self.number(low_key, low=-math.inf)
        if high is None or low is None:
            return None
        span = high - low
        if not 0.0 <= span <= MAX_ELEVATION_RANGE_M:
            self.problems.append(f"{high_key} - {low_key} = {span:g} m is out of range")
            return None
        return span

    def latlng(self, lat: float | None, lon: float | None, what: str) -> tuple[float, float] | None:
        """(lat, lon) when both are known and on the globe; None otherwise (a problem noted
        when one is off the globe). Raises nothing."""
        if lat is None or lon is None:
            return None
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            self.problems.append(f"{what} ({lat:g}, {lon:g}) is off the globe")
            return None
        return (lat, lon)

    def warning(self) -> str | None:
        """The dropped figures in one line, or None when every figure was kept."""
        if not self.problems:
            return None
        return "figures dropped: " + "; ".join(self.problems)
