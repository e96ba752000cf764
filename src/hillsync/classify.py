"""Classify a run as uphill, downhill or flat from its elevation profile or its summary.

Pure: no I/O, no clock, no logging. Only hillsync.model is imported, so that the rules can be
re-run on stored data (`reclassify`) and tested without any source or store.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from hillsync.model import (
    EARTH_RADIUS_M,
    INDOOR_SPORTS,
    PROFILE_STEP_M,
    RUN_SPORTS,
    Activity,
    Classification,
    ClassifyParams,
    FloatArray,
    Profile,
    Summary,
    Terrain,
    Track,
    is_loop,
)

#: Bump when a change of the rules could change a stored label.
CLASSIFIER_VERSION: int = 2

#: Altitudes outside this band are sensor garbage, not terrain (Dead Sea to above Everest).
MIN_ALTITUDE_M = -500.0
MAX_ALTITUDE_M = 9000.0
#: Width of the smoothing window along the route.
SMOOTHING_M = 50.0
#: Length of the segments of the uphill/downhill/flat split.
SEGMENT_M = 100.0
#: Longer than any run: a distance beyond this is corrupt data.
MAX_DISTANCE_M = 5_000_000.0
#: Distance between two altitude samples beyond which the stretch counts as not covered
#: (twice a classification segment: interpolating further would invent the terrain).
MAX_GAP_M = 200.0
#: Under this share of the activity's distance with elevation, a profile's gain and loss
#: say nothing about the whole activity (section 4: coverage).
MIN_COVERAGE = 0.5


# --------------------------------------------------------------------------- profile


#: Shorter than one 100 m segment: no label can be told from it.
MIN_RUN_M = 100.0


def build_profile(track: Track) -> Profile | None:
    """Clean raw samples and resample them every PROFILE_STEP_M (10 m) of distance.

    Altitudes that are NaN or outside -500..9000 m are dropped, and so are leading samples
    of exactly 0 (a device writes 0 until its altitude locks). Distance comes from
    `track.distance_m` when it has any value (repaired to be non-decreasing), else from the
    positions, else from speed x time; the jump between two `segment` numbers is not
    distance. Distance recorded without elevation (before the altitude locks, after it is
    lost, across a gap longer than MAX_GAP_M) is NaN in the profile: it is not covered.
    Returns None when no usable altitude is left (none at all, or all exactly 0) or no
    plausible distance can be derived. Raises nothing.
    """
    n = len(track)
    if n == 0:
        return None
    alt = np.asarray(track.altitude_m, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(alt) & (alt >= MIN_ALTITUDE_M) & (alt <= MAX_ALTITUDE_M)
    nonzero = np.flatnonzero(valid & (alt != 0.0))
    if nonzero.size == 0:
        return None
    valid[: nonzero[0]] = False

    dist = _track_distance(track)
    if dist is None:
        return None
    total = float(dist[-1])

    # Copies only where something is left out (most tracks keep every sample).
    every = bool(valid.all())
    xp = dist if every else dist[valid]
    fp = alt if every else alt[valid]
    # At a standstill several samples share one distance; np.interp needs increasing xp.
    steps_m = np.diff(xp)
    keep = np.empty(xp.shape[0], dtype=bool)
    np.greater(steps_m, 0.0, out=keep[:-1])
    keep[-1] = True
    if not keep.all():
        xp = xp[keep]
        fp = fp[keep]
        steps_m = np.diff(xp)

    if not total <= MAX_DISTANCE_M:
        # A corrupt distance would make a grid of billions of points.
        return None
    steps = math.floor(total / PROFILE_STEP_M)
    grid = np.arange(steps + 1, dtype=np.float64) * PROFILE_STEP_M
    if total - grid[-1] > 1e-9:
        grid = np.append(grid, total)
    altitude = np.interp(grid, xp, fp)
    # Where no altitude was recorded nearby, interpolation would invent terrain.
    # A lead-in or tail without altitude counts like a gap: short ones are carried over.
    uncovered = np.zeros(grid.shape[0], dtype=bool)
    if xp[0] > MAX_GAP_M:
        uncovered |= grid < xp[0] - PROFILE_STEP_M
    if total - xp[-1] > MAX_GAP_M:
        uncovered |= grid > xp[-1] + PROFILE_STEP_M
    if xp.size > 1 and float(steps_m.max()) > MAX_GAP_M:
        right = np.clip(np.searchsorted(xp, grid), 1, xp.size - 1)
        left = right - 1
        gap = xp[right] - xp[left]
        inside = (grid - xp[left] > PROFILE_STEP_M) & (xp[right] - grid > PROFILE_STEP_M)
        uncovered |= (gap > MAX_GAP_M) & inside
    altitude[uncovered] = np.nan
    return Profile(altitude_m=altitude, distance_m=total, step_m=PROFILE_STEP_M)


def with_profile(activity: Activity) -> Activity:
    """The activity with the profile of its track in place of the track (unchanged when it
    has a profile or no track). A folder's reading processes do this: the profile is what
    classification and the store need, and far smaller to send back than the track.
    Raises nothing."""
    if activity.profile is not None or activity.track is None or not len(activity.track):
        return activity
    return replace(activity, profile=build_profile(activity.track), track=None)


def _track_distance(track: Track) -> FloatArray | None:
    """Cumulative distance from the first sample, non-decreasing; None when underivable."""
    n = len(track)
    if track.distance_m is not None:
        d = _repair_cumulative(np.asarray(track.distance_m, dtype=np.float64))
        if d is not None:
            return d
    steps: FloatArray | None = None
    if track.lat is not None and track.lon is not None:
        steps = _position_steps(
            np.asarray(track.lat, dtype=np.float64), np.asarray(track.lon, dtype=np.float64)
        )
    if steps is None and track.speed_mps is not None and track.time_s is not None:
        steps = _speed_steps(
            np.asarray(track.speed_mps, dtype=np.float64),
            np.asarray(track.time_s, dtype=np.float64),
        )
    if steps is None:
        return None
    if track.segment is not None and n > 1:
        seg = np.asarray(track.segment)
        steps[seg[1:] != seg[:-1]] = 0.0
    out = np.empty(n, dtype=np.float64)
    out[0] = 0.0
    np.cumsum(steps, out=out[1:])
    return out


def _repair_cumulative(d: FloatArray) -> FloatArray | None:
    """A device's cumulative distance with gaps filled and backward steps flattened."""
    finite = np.isfinite(d)
    if not finite.any():
        return None
    filled = np.where(finite, d, -np.inf)
    filled = np.maximum.accumulate(filled)
    # Leading gaps (before the first value) take the first value.
    filled[~np.isfinite(filled)] = d[finite][0]
    filled -= filled[0]
    return filled


def _position_steps(lat: FloatArray, lon: FloatArray) -> FloatArray | None:
    """Haversine length of every step between samples; a missing fix carries the route on."""
    n = lat.shape[0]
    with np.errstate(invalid="ignore"):
        ok = (np.abs(lat) <= 90.0) & (np.abs(lon) <= 180.0)  # False for NaN too
    every = bool(ok.all())
    idx = None if every else np.flatnonzero(ok)
    if (n if idx is None else idx.size) < 2:
        return None
    # Radians of the fixes; halves of the differences, where the haversine wants them.
    la = np.radians(lat if idx is None else lat[idx])
    half_dla = np.diff(la)
    half_dla *= 0.5
    half_dlo = np.diff(lon if idx is None else lon[idx])
    half_dlo *= math.pi / 360.0
    cos_la = np.cos(la)
    h = np.sin(half_dla, out=half_dla)
    h *= h
    s = np.sin(half_dlo, out=half_dlo)
    s *= s
    s *= cos_la[:-1]
    s *= cos_la[1:]
    h += s
    np.minimum(h, 1.0, out=h)
    np.sqrt(h, out=h)
    legs = np.arcsin(h, out=h)
    legs *= 2.0 * EARTH_RADIUS_M
    if idx is None:
        return legs
    steps = np.zeros(max(n - 1, 0), dtype=np.float64)
    # The leg between two fixes is booked on the step that reaches the later fix.
    steps[idx[1:] - 1] = legs
    return steps


def _speed_steps(speed: FloatArray, time_s: FloatArray) -> FloatArray | None:
    """Distance of every step from speed x time (trapezoids); None without usable data."""
    if speed.shape[0] < 2 or not np.isfinite(speed).any() or not np.isfinite(time_s).any():
        return None
    v = np.where(np.isfinite(speed) & (speed > 0.0), speed, 0.0)
    dt = np.diff(time_s)
    dt = np.where(np.isfinite(dt) & (dt > 0.0), dt, 0.0)
    steps: FloatArray = 0.5 * (v[1:] + v[:-1]) * dt
    return steps


# --------------------------------------------------------------------------- classify


def smooth(profile: Profile) -> FloatArray:
    """The profile's altitudes smoothed over about SMOOTHING_M of distance.

    A running median first removes spikes (a barometer's first readings, GPS jumps), then a
    running mean the remaining noise. Windows shrink symmetrically at both ends, so that a
    reversed route gives the reversed result. Altitudes are taken relative to their minimum,
    so that a constant offset changes no comparison. Raises nothing.
    """
    z = np.asarray(profile.altitude_m, dtype=np.float64)
    if z.size == 0:
        return z.copy()
    finite = np.isfinite(z)
    if not finite.all():
        # Uncovered stretches (NaN) stay NaN; the covered samples are smoothed together.
        out = np.full(z.shape, np.nan)
        if finite.any():
            out[finite] = _smooth_values(z[finite], profile.step_m)
        return out
    return _smooth_values(z, profile.step_m)


def _smooth_values(z: FloatArray, step_m: float) -> FloatArray:
    z = z - z.min()
    k = max(1, round(SMOOTHING_M / step_m))
    half = k // 2
    if half == 0 or z.size < 3:
        return z
    return _running_mean(_running_median(z, half), half)


def _running_median(z: FloatArray, half: int) -> FloatArray:
    """Median of each sample's window of +-half samples (shrinking at the ends)."""
    n = z.size
    if n < 2 * half + 1:
        half = (n - 1) // 2
    if half == 0:
        return z
    out = np.empty_like(z)
    windows = np.lib.stride_tricks.sliding_window_view(z, 2 * half + 1)
    out[half : n - half] = np.median(windows, axis=1)
    for i in range(half):
        w = 2 * i + 1
        out[i] = np.median(z[:w])
        out[n - 1 - i] = np.median(z[n - w :])
    return out


def _running_mean(z: FloatArray, half: int) -> FloatArray:
    """Mean of each sample's window of +-half samples (shrinking at the ends)."""
    n = z.size
    if n < 2 * half + 1:
        half = (n - 1) // 2
    if half == 0:
        return z
    c = np.empty(n + 1, dtype=np.float64)
    c[0] = 0.0
    np.cumsum(z, out=c[1:])
    out = np.empty_like(z)
    w = 2 * half + 1
    out[half : n - half] = (c[w:] - c[:-w]) / w
    for i in range(half):
        width = 2 * i + 1
        out[i] = c[width] / width
        out[n - 1 - i] = (c[n] - c[n - width]) / width
    return out


def gain_loss(z: FloatArray, hysteresis_m: float) -> tuple[float, float]:
    """Total climb and descent of an altitude series, with a hysteresis.

    A climb (descent) is counted only once it exceeds `hysteresis_m` from the last turning
    point, so noise below the threshold adds nothing. Returns (gain, loss), both >= 0.
    Raises nothing.
    """
    pts = _turning_points(z)
    if pts.size < 2:
        return 0.0, 0.0
    h = max(0.0, float(hysteresis_m))
    gain = 0.0
    loss = 0.0
    values: list[float] = pts.tolist()
    hi = lo = values[0]
    direction = 0
    tp = ext = values[0]
    for x in values[1:]:
        if direction == 0:
            hi = max(hi, x)
            lo = min(lo, x)
            if hi - lo > h:
                if x == hi:
                    direction, tp, ext = 1, lo, x
                else:
                    direction, tp, ext = -1, hi, x
        elif direction == 1:
            if x > ext:
                ext = x
            elif ext - x > h:
                gain += ext - tp
                direction, tp, ext = -1, ext, x
        elif x < ext:
            ext = x
        elif x - ext > h:
            loss += tp - ext
            direction, tp, ext = 1, ext, x
    if direction == 1:
        gain += ext - tp
    elif direction == -1:
        loss += tp - ext
    return gain, loss


def _turning_points(z: FloatArray) -> FloatArray:
    """The series reduced to its ends and local extrema (what the hysteresis looks at)."""
    z = z[np.isfinite(z)]
    if z.size < 3:
        return z
    d = np.diff(z)
    z = z[np.concatenate(([True], d != 0.0))]
    if z.size < 3:
        return z
    s = np.sign(np.diff(z))
    keep = np.concatenate(([True], s[1:] != s[:-1], [True]))
    return z[keep]


def split(profile: Profile, z: FloatArray, grade_pct: float) -> tuple[float, float, float]:
    """Lengths of the route in 100 m segments that climb, descend, or neither.

    `z` is the smoothed altitude at the profile's samples. A segment whose grade is at least
    +grade_pct counts as uphill, at most -grade_pct as downhill, else flat; the last, shorter
    segment is included, so the three lengths add up to the profile's distance. A segment
    touching an uncovered stretch (NaN) is in none of them. Raises nothing.
    """
    total = float(profile.distance_m)
    if total <= 0.0 or z.size == 0:
        return 0.0, 0.0, max(total, 0.0)
    edges = np.arange(0.0, total, SEGMENT_M)
    edges = np.append(edges, total)
    alt = np.interp(edges, profile.distances(), z)
    length = np.diff(edges)
    rise = np.diff(alt)
    limit = abs(grade_pct) / 100.0 * length
    up = rise >= limit
    down = rise <= -limit
    uphill = float(length[up].sum())
    downhill = float(length[down & ~up].sum())
    known = np.isfinite(rise)
    if not known.all():
        covered = float(length[known].sum())
        return uphill, downhill, _rest(covered, uphill, downhill)
    return uphill, downhill, _rest(total, uphill, downhill)


def segment_terrain(
    profile: Profile, z: FloatArray, grade_pct: float
) -> tuple[FloatArray, FloatArray, list[Terrain]]:
    """The 100 m segments `split` counts: their edges (m), altitude at the edges, and terrain.

    Same rule as `split` (grade >= +grade_pct uphill, <= -grade_pct downhill, else flat), for
    drawing a profile coloured by segment. Raises nothing.
    """
    total = float(profile.distance_m)
    if total <= 0.0 or z.size == 0:
        empty = np.zeros(0, dtype=np.float64)
        return empty, empty, []
    edges = np.append(np.arange(0.0, total, SEGMENT_M), total)
    alt = np.interp(edges, profile.distances(), z)
    limit = abs(grade_pct) / 100.0 * np.diff(edges)
    rise = np.diff(alt)
    labels = [
        Terrain.UPHILL if r >= lim else Terrain.DOWNHILL if r <= -lim else Terrain.FLAT
        for r, lim in zip(rise.tolist(), limit.tolist(), strict=True)
    ]
    return edges, alt, labels


def _rest(total: float, a: float, b: float) -> float:
    """The c for which a + b + c == total holds exactly in floating point."""
    c = total - (a + b)
    for _ in range(4):
        err = total - (a + b + c)
        if err == 0.0:
            break
        c += err
    return max(c, 0.0)


def _finite_nonneg(x: float | None) -> float | None:
    """x when it is a usable total (finite, not negative), else None."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x) or x < 0.0:
        return None
    return x


def _label(gain: float, loss: float, distance_m: float, params: ClassifyParams) -> Terrain:
    """The terrain label of a run with known gain, loss and a distance > 0."""
    km = distance_m / 1000.0
    if loss / km >= params.hilly_m_per_km and loss >= params.downhill_ratio * gain:
        return Terrain.DOWNHILL
    if gain / km >= params.hilly_m_per_km:
        return Terrain.UPHILL
    return Terrain.FLAT


def _km(metres: float) -> str:
    """A distance for a reason line: 11.1 km, 180 km."""
    km = metres / 1000.0
    return f"{km:.0f}" if km >= 100 else f"{km:.1f}"


def _per_km(value: float, threshold: float) -> str:
    # One decimal near the threshold, so that "15 m/km < 15" never appears.
    return f"{value:.1f}" if abs(value - threshold) < 1.0 else f"{value:.0f}"


def _reason(
    label: Terrain, gain: float, loss: float, distance_m: float, params: ClassifyParams, over: str
) -> str:
    """The one line that says why `_label` gave `label` ("412 m up over 11.1 km = ...")."""
    km = distance_m / 1000.0
    h = params.hilly_m_per_km
    if label is Terrain.DOWNHILL:
        per = loss / km
        return (
            f"{loss:.0f} m down over {over} = {_per_km(per, h)} m/km >= {h:g} "
            f"and >= {params.downhill_ratio:g} x {gain:.0f} m up: downhill"
        )
    if label is Terrain.UPHILL:
        per = gain / km
        return f"{gain:.0f} m up over {over} = {_per_km(per, h)} m/km >= {h:g}: uphill"
    per = max(gain, loss) / km
    return f"{gain:.0f} m up, {loss:.0f} m down over {over} = {_per_km(per, h)} m/km < {h:g}: flat"


def classify(summary: Summary, profile: Profile | None, params: ClassifyParams) -> Classification:
    """Label a run from its profile when it has a usable one, else from its summary.

    Reported totals (device or API) are preferred for gain and loss; the profile gives the
    uphill/downhill/flat split and what the totals lack. Gain and loss from the profile
    alone count per km of the distance the profile covers; under MIN_COVERAGE of the
    activity's distance the label is `unknown`. A summary-only point-to-point run without a
    loss figure is decided from its elevation range when the bounds settle the label, else
    it is `unknown` with `needs_profile=True`. Every result carries its one-line `reason`
    and `elevation_source`. Raises nothing: bad figures (NaN, negative) are treated as
    missing.
    """
    inputs: dict[str, Any] = {
        "method": "summary",
        "gain_from": "none",
        "loss_from": "none",
        "split": "none",
        "hilly_m_per_km": params.hilly_m_per_km,
        "downhill_ratio": params.downhill_ratio,
        "grade_pct": params.grade_pct,
        "hysteresis_m": params.hysteresis_m,
    }
    reported_gain = _finite_nonneg(summary.reported_gain_m)
    reported_loss = _finite_nonneg(summary.reported_loss_m)
    usable = _usable_profile(profile)
    distance = _finite_nonneg(summary.distance_m)
    if not distance and usable is not None:
        distance = float(usable.distance_m)
    distance = distance or 0.0
    totals_source = "summary" if summary.totals_from == "summary" else "device"

    def result(
        label: Terrain,
        gain: float | None,
        loss: float | None,
        reason: str,
        source: str,
        parts: tuple[float, float, float] = (0.0, 0.0, 0.0),
        needs_profile: bool = False,
    ) -> Classification:
        return Classification(
            label=label,
            distance_m=distance,
            elevation_gain_m=gain,
            elevation_loss_m=loss,
            uphill_m=parts[0],
            downhill_m=parts[1],
            flat_m=parts[2],
            version=CLASSIFIER_VERSION,
            inputs=inputs,
            needs_profile=needs_profile,
            reason=reason,
            elevation_source=source,
        )

    reported_source = totals_source if (reported_gain, reported_loss) != (None, None) else "none"
    if summary.indoor or summary.sport in INDOOR_SPORTS:
        if (
            reported_gain is not None
            and distance >= MIN_RUN_M
            and reported_gain / (distance / 1000.0) >= params.hilly_m_per_km
        ):
            # An inclined treadmill is real hill work (DESIGN.md section 4).
            inputs.update(reason="indoor with reported ascent", gain_from="reported")
            per_km = reported_gain / (distance / 1000.0)
            return result(
                Terrain.UPHILL,
                reported_gain,
                reported_loss,
                f"indoor run with {reported_gain:.0f} m of reported ascent over "
                f"{distance / 1000:.1f} km = {per_km:.0f} m/km >= "
                f"{params.hilly_m_per_km:g}: uphill (an inclined treadmill)",
                reported_source,
            )
        inputs["reason"] = "indoor"
        noun = "run" if summary.sport in RUN_SPORTS else "activity"
        return result(
            Terrain.UNKNOWN,
            reported_gain,
            reported_loss,
            f"indoor {noun}: no terrain",
            reported_source,
        )
    if distance <= 0.0:
        inputs["reason"] = "no distance"
        return result(
            Terrain.UNKNOWN, reported_gain, reported_loss, "no distance: unknown", reported_source
        )
    if distance < MIN_RUN_M:
        # A watch started and stopped, or a file cut off after a few samples: per-km
        # figures over a few metres are noise, and such a run must not count as flat.
        inputs["reason"] = "too short"
        return result(
            Terrain.UNKNOWN,
            reported_gain,
            reported_loss,
            f"{distance:.0f} m is too short to tell: unknown",
            reported_source,
        )

    if usable is not None:
        return _classify_profile(
            usable, distance, reported_gain, reported_loss, params, inputs, totals_source
        )

    if reported_gain is None and reported_loss is None:
        inputs["reason"] = "no elevation"
        # A profile that was there held only zeros: fetching it again would not help.
        return result(
            Terrain.UNKNOWN,
            None,
            None,
            "no elevation recorded: unknown",
            "none",
            needs_profile=profile is None,
        )

    loop = is_loop(summary.start_latlng, summary.end_latlng)
    gain, loss = reported_gain, reported_loss
    if gain is not None:
        inputs["gain_from"] = "reported"
    if loss is not None:
        inputs["loss_from"] = "reported"
    if loop:
        if gain is None:
            gain, inputs["gain_from"] = loss, "loop"
        if loss is None:
            loss, inputs["loss_from"] = gain, "loop"
    over = f"{_km(distance)} km"
    if gain is not None and loss is not None:
        label = _label(gain, loss, distance, params)
        return result(
            label, gain, loss, _reason(label, gain, loss, distance, params, over), totals_source
        )

    # Point-to-point (or unknown ends) with one figure: loss - gain == start - end and
    # |start - end| <= range, which may already settle the label.
    rng = _finite_nonneg(summary.elevation_range_m)
    if rng is not None:
        known = gain if gain is not None else loss
        assert known is not None
        lo, hi = max(0.0, known - rng), known + rng
        if gain is not None:
            first = _label(gain, lo, distance, params)
            last = _label(gain, hi, distance, params)
            inputs["loss_from"] = "range"
            inputs["loss_min_m"], inputs["loss_max_m"] = lo, hi
            bounds = f"{gain:.0f} m up, {lo:.0f}-{hi:.0f} m down"
        else:
            assert loss is not None
            first = _label(lo, loss, distance, params)
            last = _label(hi, loss, distance, params)
            inputs["gain_from"] = "range"
            inputs["gain_min_m"], inputs["gain_max_m"] = lo, hi
            bounds = f"{lo:.0f}-{hi:.0f} m up, {loss:.0f} m down"
        # Along either line the label is monotone, so equal ends settle the whole interval.
        if first == last:
            return result(
                first,
                gain,
                loss,
                f"{bounds} (from the elevation range) over {over}: {first}",
                totals_source,
            )
    inputs["reason"] = "point-to-point without loss"
    figure = f"{gain:.0f} m up" if gain is not None else f"{loss or 0.0:.0f} m down"
    return result(
        Terrain.UNKNOWN,
        gain,
        loss,
        f"{figure} over {over}, point to point without the other figure: unknown",
        totals_source,
        needs_profile=True,
    )


def _usable_profile(profile: Profile | None) -> Profile | None:
    """The profile when it holds a real elevation along some distance, else None.

    NaN altitudes (uncovered distance) are allowed; at least two must be finite.
    """
    if profile is None:
        return None
    z = np.asarray(profile.altitude_m, dtype=np.float64)
    if z.size == 0 or not (profile.distance_m > 0.0):
        return None
    finite = z[np.isfinite(z)]
    if finite.size < 2 or not finite.any():
        return None
    return profile


def _classify_profile(
    profile: Profile,
    distance: float,
    reported_gain: float | None,
    reported_loss: float | None,
    params: ClassifyParams,
    inputs: dict[str, Any],
    totals_source: str,
) -> Classification:
    """The profile path of `classify` (the profile is usable, the run outdoors)."""
    z = smooth(profile)
    p_gain, p_loss = gain_loss(z, params.hysteresis_m)
    zf = z[np.isfinite(z)]
    net = float(zf[-1] - zf[0])
    gain, loss = p_gain, p_loss
    covered = min(profile.covered_m(), distance)
    coverage = covered / distance if distance > 0 else 0.0
    inputs.update(
        method="profile",
        split="profile",
        gain_from="profile",
        loss_from="profile",
        profile_gain_m=p_gain,
        profile_loss_m=p_loss,
        covered_m=covered,
    )
    # With one reported total, the other follows from it and the profile's net change
    # (loss - gain == start - end), keeping both on the reported scale.
    if reported_gain is not None:
        gain, inputs["gain_from"] = reported_gain, "reported"
        if reported_loss is None:
            derived = reported_gain - net
            loss = derived if derived >= 0.0 else p_loss
    if reported_loss is not None:
        loss, inputs["loss_from"] = reported_loss, "reported"
        if reported_gain is None:
            derived = reported_loss + net
            gain = derived if derived >= 0.0 else p_gain
    reported = reported_gain is not None or reported_loss is not None
    up, down, flat = split(profile, z, params.grade_pct)
    measured = up + down + flat
    scale = distance / measured if measured > 0 else 0.0
    # Rounding of the scale must not let the parts exceed the distance.
    up = min(up * scale, distance)
    down = min(down * scale, distance - up)
    parts = (up, down, _rest(distance, up, down))
    source = totals_source if reported else "profile"
    if reported:
        # The device's totals cover the whole activity, whatever the track covers.
        per_distance = distance
        over = f"{_km(distance)} km"
    elif coverage < MIN_COVERAGE:
        inputs["reason"] = "coverage"
        return Classification(
            label=Terrain.UNKNOWN,
            distance_m=distance,
            elevation_gain_m=gain,
            elevation_loss_m=loss,
            uphill_m=0.0,
            downhill_m=0.0,
            flat_m=0.0,
            version=CLASSIFIER_VERSION,
            inputs=inputs,
            reason=f"elevation covers {_km(covered)} of {_km(distance)} km: unknown",
            elevation_source=source,
        )
    else:
        per_distance = covered
        over = (
            f"{_km(distance)} km"
            if coverage > 0.995
            else f"the {_km(covered)} of {_km(distance)} km with elevation"
        )
    label = _label(gain, loss, per_distance, params)
    return Classification(
        label=label,
        distance_m=distance,
        elevation_gain_m=gain,
        elevation_loss_m=loss,
        uphill_m=parts[0],
        downhill_m=parts[1],
        flat_m=parts[2],
        version=CLASSIFIER_VERSION,
        inputs=inputs,
        reason=_reason(label, gain, loss, per_distance, params, over),
        elevation_source=source,
    )


__all__ = [
    "CLASSIFIER_VERSION",
    "build_profile",
    "classify",
    "gain_loss",
    "smooth",
    "split",
]
