"""DESIGN.md's numbers, written out here as literals: the tests' expected values.

Never import these from hillsync: a test that takes its expectation from the code's own
table cannot notice the table being wrong.
"""

from __future__ import annotations

#: Section 5: hill_share (min, max) and downhill_share max, by goal profile.
GOAL_BANDS: dict[str, tuple[float, float, float]] = {
    "road-marathon": (0.10, 0.25, 0.10),
    "half-marathon": (0.10, 0.25, 0.10),
    "10k": (0.10, 0.30, 0.10),
    "general": (0.15, 0.35, 0.15),
    "trail": (0.30, 0.55, 0.25),
    "mountain": (0.45, 0.75, 0.35),
    "ultra-trail": (0.35, 0.60, 0.30),
}
#: Section 5: the profile whose band comes from the keys alone.
CUSTOM_PROFILE = "custom"
#: Section 5: states are left only when back inside the band by 2 percentage points.
BALANCE_HYSTERESIS = 0.02
#: Section 5: fewer runs or km than this in the window give insufficient_data.
MIN_RUNS = 4
MIN_KM = 20.0
#: Section 5: within this many days of race_date, `low` is not raised.
TAPER_DAYS = 10
#: Section 3: the default window.
WINDOW_DAYS = 28

#: Sections 3 and 4: the classifier's default thresholds.
HILLY_M_PER_KM = 15.0
DOWNHILL_RATIO = 1.5
GRADE_PCT = 3.0
HYSTERESIS_M = 3.0
#: Section 4: a summary-only run whose start and end are this close is a loop.
LOOP_TOLERANCE_M = 200.0
#: Section 4: altitude samples outside this range are dropped.
ALTITUDE_MIN_M = -500.0
ALTITUDE_MAX_M = 9000.0
#: Section 4: segment length of the uphill/downhill/flat split.
SEGMENT_M = 100.0

#: Metres per degree of latitude on the mean Earth sphere (2 * pi * 6371.0088 km / 360).
M_PER_DEGREE_LAT = 111_195.08
