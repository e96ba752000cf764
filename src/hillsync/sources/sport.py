"""The sport of a file that does not state one, told from how it moved.

A GPX without `<type>`, a TCX `Sport="Other"` or a FIT `generic` session says nothing about
the sport; a runner's folder also holds rides, walks and swims. Under `[sync] untyped =
"infer"` the sport is read from the evidence below, strongest first; what cannot be told
apart is `unknown` (never a run). The lines and their sources are in the README ("Files
that do not say their sport").

1. Pool structure (a FIT pool length or `length` messages): a pool swim.
2. Running dynamics (stance time, vertical oscillation): only a running sensor writes them.
3. Moving speed over 10 s windows (median v50, 90th percentile v90), with the distance per
   cadence cycle where cadence is recorded, and the creator application as a tie-breaker.

Pure: numpy only, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hillsync.model import UNKNOWN_SPORT

FloatArray = npt.NDArray[np.float64]

#: Speeds are measured over windows of this length, so GPS jitter between 1 s samples
#: does not read as sprinting.
WINDOW_S = 10.0
#: A window slower than this is standing, not moving.
MOVING_MPS = 0.5
#: At least this much moving time (5 minutes of windows) before speeds say anything.
MIN_MOVING_WINDOWS = 30

#: Walking: Bohannon (1997, Age Ageing 26:15) measured comfortable gait at 1.27-1.46 m/s
#: and maximum gait up to 2.5 m/s over 7.6 m (adults 20-79); over a whole outing walkers stay
#: under 2.0 m/s, where Hreljac (1993, J Biomech 26:1213) puts the walk-run transition
#: (2.0-2.2 m/s).
WALK_V50 = (0.9, 2.0)
WALK_V90_MAX = 2.6
#: Running: above the transition with a margin (2.4 m/s = 6:57 min/km, a slow jog) up to
#: 4.5 m/s (3:42 min/km, a club runner's race pace for a whole run). v90 under 6.0 m/s
#: (2:47 min/km): faster than the 10,000 m world-record pace (6.3 m/s) for a tenth of
#: the moving time is not running.
RUN_V50 = (2.4, 4.5)
RUN_V90_MAX = 6.0
#: Cycling: a tenth of the moving time above 7.5 m/s (27 km/h) is beyond any runner; a
#: median above 14 m/s (50 km/h) is beyond what riders average (a professional road race
#: averages 40-45 km/h), so a motor vehicle rather than a ride.
RIDE_V90_MIN = 7.5
RIDE_V50_MIN = 3.0
VEHICLE_V50_MIN = 14.0
#: Swimming: competitive freestyle is about 1.5-2 m/s, recreational open water 0.6-1.0
#: m/s; a swim also stays on a water surface (altitude range under 3 m) or loses GPS under
#: water (positions on fewer than half the samples).
SWIM_V50_MAX = 1.0
SWIM_V90_MAX = 1.4
SWIM_ALTITUDE_RANGE_M = 3.0
#: Distance per cadence cycle: a running stride (two steps) is 2-3 m at 2.5-5 m/s
#: (Cavanagh & Kram 1989, Med Sci Sports Exerc 21:467), and cadence counted in steps gives
#: half of that; a pedal turn moves a bicycle its gear's development, 3.5-10 m on road
#: gears (39x25 = 3.3 m, 53x11 = 10 m on a 2.1 m wheel).
FOOT_M_PER_CYCLE_MAX = 3.0
BIKE_M_PER_CYCLE_MIN = 3.5
#: Creator applications that record only rides (bike computers) or only swims.
BIKE_CREATORS = ("edge", "elemnt", "wahoo", "bryton", "hammerhead", "karoo", "bike", "cycl")
SWIM_CREATORS = ("swim",)


@dataclass(frozen=True, eq=False)
class Movement:
    """What a file recorded of how it moved (every array per sample, NaN when missing)."""

    time_s: FloatArray | None = None
    distance_m: FloatArray | None = None
    altitude_m: FloatArray | None = None
    #: Cadence as recorded (rpm, strides or steps per minute: the distance per cycle tells).
    cadence: FloatArray | None = None
    #: Share of samples with a position (a swim loses GPS under water).
    position_share: float = 1.0
    running_dynamics: bool = False
    pool: bool = False
    creator: str | None = None


@dataclass(frozen=True)
class Inferred:
    """The sport told from the movement, and one line saying why."""

    sport: str
    why: str


def moving_speeds(time_s: FloatArray, distance_m: FloatArray) -> FloatArray:
    """Speeds over WINDOW_S windows while moving (m/s); empty when they cannot be measured."""
    ok = np.isfinite(time_s) & np.isfinite(distance_m)
    t, d = time_s[ok], distance_m[ok]
    if t.size < 2:
        return np.zeros(0, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, d = t[order], np.maximum.accumulate(d[order])
    span = t[-1] - t[0]
    if span < WINDOW_S:
        return np.zeros(0, dtype=np.float64)
    if span / WINDOW_S > 4 * t.size + 1000:
        # Long pauses or damaged timestamps: windows would be mostly empty (and a
        # timestamp off by years would make billions); measure sample to sample instead.
        dt = np.diff(t)
        ok_dt = (dt >= 1.0) & (dt <= 60.0)
        per_sample: FloatArray = np.diff(d)[ok_dt] / dt[ok_dt]
        return per_sample[per_sample >= MOVING_MPS]
    grid = np.arange(t[0], t[-1], WINDOW_S)
    v: FloatArray = np.diff(np.interp(grid, t, d)) / WINDOW_S
    return v[v >= MOVING_MPS]


def _creator_hint(creator: str | None) -> str | None:
    if not creator:
        return None
    lower = creator.lower()
    if any(word in lower for word in SWIM_CREATORS):
        return "swim"
    if any(word in lower for word in BIKE_CREATORS):
        return "ride"
    return None


def _m_per_cycle(m: Movement) -> float | None:
    """Median distance per cadence cycle while moving, or None without cadence."""
    if m.cadence is None or m.time_s is None or m.distance_m is None:
        return None
    t, d, c = m.time_s, m.distance_m, m.cadence
    if t.shape[0] < 3:
        return None
    dt = np.diff(t)
    dd = np.diff(d)
    cad = c[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        v = dd / dt
        ok = np.isfinite(v) & (dt > 0) & (v >= 1.0) & np.isfinite(cad) & (cad > 10)
        per = v[ok] / (cad[ok] / 60.0)
    if per.size < MIN_MOVING_WINDOWS:
        return None
    return float(np.median(per))


def infer_sport(m: Movement) -> Inferred:
    """The sport that explains the movement, or `unknown` with the reason it cannot tell."""
    if m.pool:
        return Inferred("swim", "pool lengths recorded")
    if m.running_dynamics:
        return Inferred("run", "running dynamics recorded (stance time, vertical oscillation)")
    hint = _creator_hint(m.creator)
    if m.time_s is None or m.distance_m is None:
        if hint == "swim":
            return Inferred("swim", f"recorded by {m.creator}")
        return Inferred(UNKNOWN_SPORT, "no time or distance to tell the sport from")
    v = moving_speeds(m.time_s, m.distance_m)
    if v.size < MIN_MOVING_WINDOWS:
        return Inferred(UNKNOWN_SPORT, "too little movement to tell the sport from")
    v50, v90 = (float(x) for x in np.percentile(v, [50, 90]))
    speeds = f"moving speed median {v50:.1f} m/s, 90% under {v90:.1f} m/s"
    per_cycle = _m_per_cycle(m)
    by_cadence: str | None = None
    if per_cycle is not None:
        if per_cycle >= BIKE_M_PER_CYCLE_MIN:
            by_cadence = "ride"
        elif per_cycle <= FOOT_M_PER_CYCLE_MAX:
            by_cadence = "foot"
    cadence_note = f", {per_cycle:.1f} m per cadence cycle" if per_cycle is not None else ""

    if v50 >= VEHICLE_V50_MIN:
        return Inferred(UNKNOWN_SPORT, f"{speeds}: faster than a bicycle")
    if v90 >= RIDE_V90_MIN:
        if v50 >= RIDE_V50_MIN and by_cadence != "foot":
            return Inferred("ride", f"{speeds}: faster than running{cadence_note}")
        return Inferred(UNKNOWN_SPORT, f"{speeds}: mixed speeds{cadence_note}")
    if by_cadence == "ride" and v50 >= RIDE_V50_MIN:
        return Inferred("ride", f"{speeds}{cadence_note}: pedalling")
    if v50 <= SWIM_V50_MAX and v90 <= SWIM_V90_MAX:
        alt = m.altitude_m
        flat_water = False
        if alt is not None and np.isfinite(alt).sum() >= 2:
            finite = alt[np.isfinite(alt)]
            flat_water = float(finite.max() - finite.min()) <= SWIM_ALTITUDE_RANGE_M
        if hint == "swim" or flat_water or m.position_share < 0.5:
            return Inferred("swim", f"{speeds}: swimming pace on water")
    if WALK_V50[0] <= v50 < WALK_V50[1] and v90 < WALK_V90_MAX and by_cadence != "ride":
        return Inferred("walk", f"{speeds}: walking pace")
    if RUN_V50[0] <= v50 <= RUN_V50[1] and v90 < RUN_V90_MAX:
        if hint == "ride" and by_cadence != "foot":
            return Inferred("ride", f"{speeds}: recorded by {m.creator}")
        return Inferred("run", f"{speeds}{cadence_note}: running pace")
    if RUN_V50[1] < v50 < RIDE_V90_MIN and v90 < RIDE_V90_MIN:
        # Fast runners and slow riders overlap here: only cadence or the creator can tell.
        if by_cadence == "foot":
            return Inferred("run", f"{speeds}{cadence_note}: strides, not pedal turns")
        if hint == "ride":
            return Inferred("ride", f"{speeds}: recorded by {m.creator}")
    return Inferred(UNKNOWN_SPORT, f"{speeds}{cadence_note}: cannot tell the sport apart")
