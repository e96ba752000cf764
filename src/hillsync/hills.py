"""Hill-repeat sessions found in a run's elevation profile.

Pure: no I/O, imports only hillsync.model. DESIGN.md section 5: "a run holding several (4+)
uphill efforts of about 60-400 m at about 4 % or more, each followed by an easy return, after
a warm-up, is a hill-repeat session". How hillsync reads that from the stored profile (the
altitude every 10 m; docs/hill-training.md says why):

- The profile is lightly smoothed (a running mean over 30 m) and cut into alternating climbs
  and descents at its turning points, ignoring wiggles under TURN_M (1.5 m).
- An effort is a climb whose steep part (from where it has risen 5 % of its height to where
  it is 5 % short of its top: flat run-ups are not part of the effort) is MIN_LENGTH_M to
  MAX_LENGTH_M long at MIN_GRADE_PCT or more on average.
- Its return is the descent that follows it, which must come down at least RETURN_SHARE of
  the climb's height (jogging back down to the foot of the hill).
- Repeats are efforts in a row, each with its return, starting from about the same altitude
  (the foot of one hill: within BASE_TOLERANCE of the typical height); an effort starting
  in the first WARMUP_M of the run is warm-up, not a repeat.
- MIN_REPEATS (4) such efforts in a row make a session; the longest row is the session.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

import numpy as np

from hillsync.model import (
    Classification,
    FloatArray,
    HillRepeats,
    Profile,
    Terrain,
    turning_points,
)

MIN_REPEATS = 4
MIN_LENGTH_M = 60.0
MAX_LENGTH_M = 400.0
MIN_GRADE_PCT = 4.0
#: The return must come down at least this share of the climb's height.
RETURN_SHARE = 0.7
#: Altitude changes below this are wiggles, not climbs or descents.
TURN_M = 1.5
#: No repeat starts before this distance: the warm-up.
WARMUP_M = 1000.0
#: Efforts of one session start within this share of their typical height of each other
#: (at least BASE_MIN_M): repeats of one hill, not a rolling road.
BASE_TOLERANCE = 0.5
BASE_MIN_M = 3.0
#: Width of the light smoothing before turning points are looked for.
SMOOTH_M = 30.0
#: The part of a climb's height cut off at each end as run-up and run-out.
TRIM_SHARE = 0.05


@dataclass(frozen=True)
class Effort:
    """One uphill effort: where it starts, how long and how steep, and its return."""

    start_m: float
    length_m: float
    rise_m: float
    base_m: float
    returned_m: float

    @property
    def grade_pct(self) -> float:
        """Mean grade of the effort in percent."""
        return 100.0 * self.rise_m / self.length_m if self.length_m > 0 else 0.0

    def qualifies(self) -> bool:
        """Long and steep enough, not too long, and followed by a return down the hill."""
        return (
            MIN_LENGTH_M <= self.length_m <= MAX_LENGTH_M
            and self.grade_pct >= MIN_GRADE_PCT
            and self.returned_m >= RETURN_SHARE * self.rise_m
            and self.start_m >= WARMUP_M
        )


def _smooth(z: FloatArray, step_m: float) -> FloatArray:
    half = max(0, round(SMOOTH_M / step_m) // 2)
    if half == 0 or z.size < 2 * half + 1:
        return z
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    padded = np.concatenate((np.full(half, z[0]), z, np.full(half, z[-1])))
    out: FloatArray = np.convolve(padded, kernel, mode="valid")
    return out


def efforts(profile: Profile) -> list[Effort]:
    """Every climb of the profile with its steep part and the descent after it. Raises nothing."""
    z = np.asarray(profile.altitude_m, dtype=np.float64)
    if z.size < 3 or not np.isfinite(z).all():
        return []
    d = profile.distances()
    z = _smooth(z, profile.step_m)
    turns = turning_points(z, TURN_M)
    if len(turns) < 2:
        return []
    found: list[Effort] = []
    # the last climb may end the run: its "return" is then nothing (c == b)
    for a, b, c in zip(turns, turns[1:], [*turns[2:], turns[-1]], strict=False):
        rise = float(z[b] - z[a])
        if rise <= 0:
            continue
        seg = z[a : b + 1]
        lo = float(z[a]) + TRIM_SHARE * rise
        hi = float(z[b]) - TRIM_SHARE * rise
        # last point still at the foot, first point already at the top
        i0 = a + int(np.flatnonzero(seg <= lo)[-1])
        i1 = a + int(np.flatnonzero(seg >= hi)[0])
        if i1 <= i0:
            continue
        returned = float(z[b] - z[c]) if c > b else 0.0
        found.append(
            Effort(
                start_m=float(d[i0]),
                length_m=float(d[i1] - d[i0]),
                rise_m=float(z[i1] - z[i0]),
                base_m=float(z[a]),
                returned_m=returned,
            )
        )
    return found


def _same_hill(group: list[Effort], effort: Effort) -> bool:
    rise = statistics.median(e.rise_m for e in [*group, effort])
    tolerance = max(BASE_MIN_M, BASE_TOLERANCE * rise)
    return abs(effort.base_m - group[0].base_m) <= tolerance


def detect(profile: Profile | None) -> HillRepeats | None:
    """The hill-repeat session in this profile, or None when it holds none. Raises nothing."""
    if profile is None:
        return None
    best: list[Effort] = []
    group: list[Effort] = []
    for effort in efforts(profile):
        if effort.qualifies() and (not group or _same_hill(group, effort)):
            group.append(effort)
        elif effort.qualifies():
            group = [effort]
        else:
            group = []
        if len(group) > len(best):
            best = list(group)
    if len(best) < MIN_REPEATS:
        return None
    return HillRepeats(
        count=len(best),
        length_m=round(statistics.median(e.length_m for e in best), 0),
        grade_pct=round(statistics.median(e.grade_pct for e in best), 1),
    )


def with_hill_repeats(c: Classification, profile: Profile | None) -> Classification:
    """The classification with its run's hill-repeat session (runs of unknown terrain: none)."""
    if c.label is Terrain.UNKNOWN:
        return replace(c, hill_repeats=None)
    return replace(c, hill_repeats=detect(profile))


__all__ = ["Effort", "detect", "efforts", "with_hill_repeats"]
