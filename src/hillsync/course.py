"""Training targets from the race course (`[goal] course` with `race_date`).

Pure: no I/O, imports only hillsync.model. The course file is read by the application layer
(hillsync.coursefile), which hands the figures here. docs/hill-training.md states the rules:

- Hill share band: centred on the course's uphill share (the share of its distance on
  uphill 100 m segments), as wide as the profile's band; the profile's band where the
  course says little (under COURSE_SAYS_LITTLE of its distance uphill).
- Vertical per week: the course's D+ by PEAK_WEEKS before race day, rising linearly from
  half of it RAMP_START_WEEKS out (the course's D+ without a race date).
- Downhill minimum for a descending course (DESCENDING_SHARE of its distance on downhill
  segments, or DESCENDING_M_PER_KM of descent per km): half the course's downhill share,
  at most DOWNHILL_MIN_CAP; `[goal] downhill_share_min` overrides it.
"""

from __future__ import annotations

import itertools
from datetime import date

import numpy as np

from hillsync.model import (
    Classification,
    CourseFigures,
    CourseTargets,
    FloatArray,
    Goal,
    Profile,
    turning_points,
)

#: Under this share of the course's distance on uphill segments, the course says little
#: about hill training and the profile's band applies.
COURSE_SAYS_LITTLE = 0.10
#: A course with this share of downhill segments, or this much descent per km, descends.
DESCENDING_SHARE = 0.10
DESCENDING_M_PER_KM = 15.0
#: The downhill minimum is this share of the course's downhill share, capped.
DOWNHILL_MIN_FACTOR = 0.5
DOWNHILL_MIN_CAP = 0.15
#: The weekly vertical target reaches the course's D+ this many weeks before race day ...
PEAK_WEEKS = 3.0
#: ... rising linearly from RAMP_START_SHARE of it this many weeks before race day.
RAMP_START_WEEKS = 12.0
RAMP_START_SHARE = 0.5
#: Dips shallower than this do not end a climb (or a descent) of the course.
CLIMB_TOLERANCE_M = 10.0
#: A climb's length leaves out the level ground at its ends: where it is within this
#: height (or share of its height, the larger) of its start or its top.
END_TRIM_M = 2.0
END_TRIM_SHARE = 0.02


def _steep_length(z: FloatArray, d: FloatArray) -> float:
    """Length of a climb (or descent) without the level stretches at its foot and top.

    The ends are where it has left its start, and come within, END_TRIM_M (or
    END_TRIM_SHARE of its height, the larger) of its end altitude.
    """
    height = abs(float(z[-1] - z[0]))
    trim = max(END_TRIM_M, END_TRIM_SHARE * height)
    rel = np.abs(z - z[0])
    i0 = int(np.flatnonzero(rel <= trim)[-1]) if height > 2 * trim else 0
    i1 = int(np.flatnonzero(rel >= height - trim)[0]) if height > 2 * trim else z.size - 1
    return float(d[i1] - d[i0]) if i1 > i0 else float(d[-1] - d[0])


def _longest(z: FloatArray, d: FloatArray) -> tuple[float, float, float, float]:
    """(height, length) of the largest climb, then of the largest descent."""
    climb = (0.0, 0.0)
    descent = (0.0, 0.0)
    points = turning_points(z, CLIMB_TOLERANCE_M)
    for a, b in itertools.pairwise(points):
        height = float(z[b] - z[a])
        length = _steep_length(z[a : b + 1], d[a : b + 1])
        if height > climb[0]:
            climb = (height, length)
        elif -height > descent[0]:
            descent = (-height, length)
    return climb[0], climb[1], descent[0], descent[1]


def figures(profile: Profile, c: Classification, name: str) -> CourseFigures:
    """The course's own terrain from its profile and its classification. Raises nothing."""
    z = np.asarray(profile.altitude_m, dtype=np.float64)
    d = profile.distances()
    climb_m, climb_len, descent_m, descent_len = _longest(z, d)
    return CourseFigures(
        name=name,
        distance_m=c.distance_m,
        gain_m=c.elevation_gain_m or 0.0,
        loss_m=c.elevation_loss_m or 0.0,
        uphill_m=c.uphill_m,
        downhill_m=c.downhill_m,
        flat_m=c.flat_m,
        longest_climb_m=climb_m,
        longest_climb_length_m=climb_len,
        longest_descent_m=descent_m,
        longest_descent_length_m=descent_len,
    )


def vertical_share(race_date: date | None, today: date) -> float:
    """Which share of the course's D+ a week should hold now (1.0 without a race date)."""
    if race_date is None:
        return 1.0
    weeks = (race_date - today).days / 7.0
    if weeks <= PEAK_WEEKS:
        return 1.0
    if weeks >= RAMP_START_WEEKS:
        return RAMP_START_SHARE
    done = (RAMP_START_WEEKS - weeks) / (RAMP_START_WEEKS - PEAK_WEEKS)
    return RAMP_START_SHARE + (1.0 - RAMP_START_SHARE) * done


def targets(course: CourseFigures, goal: Goal, today: date) -> CourseTargets:
    """The targets the course sets against the goal's profile band. Raises nothing."""
    dist = course.distance_m if course.distance_m > 0 else 1.0
    up_share = course.uphill_m / dist
    down_share = course.downhill_m / dist
    from_course: list[str] = []
    lo, hi = goal.hill_share_min, goal.hill_share_max
    if up_share >= COURSE_SAYS_LITTLE:
        half = (goal.hill_share_max - goal.hill_share_min) / 2
        lo, hi = max(0.0, up_share - half), min(1.0, up_share + half)
        from_course.append("hill_share")
    vertical = course.gain_m * vertical_share(goal.race_date, today)
    if course.gain_m > 0:
        from_course.append("vertical_week")
    down_min = goal.downhill_share_min
    descending = (
        down_share >= DESCENDING_SHARE or course.loss_m / (dist / 1000) >= DESCENDING_M_PER_KM
    )
    if down_min is None and descending:
        down_min = min(DOWNHILL_MIN_FACTOR * down_share, DOWNHILL_MIN_CAP)
        from_course.append("downhill_share_min")
    return CourseTargets(
        figures=course,
        uphill_share=up_share,
        downhill_share=down_share,
        descending=descending,
        hill_share_min=lo,
        hill_share_max=hi,
        downhill_share_min=down_min,
        vertical_week_target_m=vertical,
        from_course=tuple(from_course),
    )
