"""Write the bundled demo activities into src/hillsync/demo/ (run once; output committed).

Six weeks (2026-10-19 .. 2026-11-29, UTC) of a road-marathon runner around Freiburg:
flat river loops, hilly loops (25-40 m/km), three point-to-point downhill runs, one
treadmill run (TCX, no positions, no altitude) and one ride (which must not count). The
last four weeks are deliberately too hilly for a road marathon (hill share ~44 % against a
10-25 % band), so `hillsync demo` warns.

Deterministic: the same seed gives byte-identical files (gzip headers carry no time).

    python scripts/make_demo_data.py [OUTPUT_DIR]
"""

from __future__ import annotations

import gzip
import io
import math
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

SEED = 20261129
OUT = Path(__file__).resolve().parent.parent / "src" / "hillsync" / "demo"
HOME = (47.9935, 7.8490)  # Freiburg im Breisgau, by the Dreisam
M_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True)
class Plan:
    """One activity of the demo week plan."""

    day: str  # YYYY-MM-DD
    clock: str  # HH:MM UTC
    slug: str
    kind: str  # flat | hilly | downhill | treadmill | ride
    km: float
    m_per_km: float = 0.0
    dt_s: int = 3
    gz: bool = False


PLAN: tuple[Plan, ...] = (
    # Weeks 1-2: mostly flat, as a marathon block should be, with two long descents.
    Plan("2026-10-20", "06:15", "dreisam-river-loop", "flat", 10.0),
    Plan("2026-10-21", "14:30", "schauinsland-descent", "downhill", 14.0, gz=True),
    Plan("2026-10-23", "06:20", "river-easy", "flat", 8.0),
    Plan("2026-10-25", "08:00", "long-run-rhine-dam", "flat", 24.0, gz=True),
    Plan("2026-10-27", "06:10", "lorettoberg-hills", "hilly", 11.0, 30.0),
    Plan("2026-10-29", "06:15", "dreisam-river-loop", "flat", 10.0),
    Plan("2026-10-31", "13:00", "kandel-descent", "downhill", 13.0, gz=True),
    Plan("2026-11-01", "08:00", "long-run-rhine-dam", "flat", 26.0, gz=True),
    # Weeks 3-6 (the balance window): the hills take over.
    Plan("2026-11-03", "06:10", "rosskopf-loop", "hilly", 12.0, 32.0),
    Plan("2026-11-04", "06:20", "river-easy", "flat", 8.0),
    Plan("2026-11-05", "06:10", "schlossberg-hills", "hilly", 9.0, 28.0),
    Plan("2026-11-08", "08:00", "long-run-river", "flat", 22.0, gz=True),
    Plan("2026-11-10", "06:10", "rosskopf-loop", "hilly", 12.0, 33.0),
    Plan("2026-11-11", "17:30", "treadmill-intervals", "treadmill", 10.0),
    Plan("2026-11-12", "06:15", "dreisam-river-loop", "flat", 10.0),
    Plan("2026-11-14", "08:30", "kybfelsen-loop", "hilly", 12.0, 38.0),
    Plan("2026-11-15", "08:00", "long-run-river", "flat", 20.0, gz=True),
    Plan("2026-11-17", "06:10", "lorettoberg-hills", "hilly", 11.0, 30.0),
    Plan("2026-11-18", "06:20", "river-easy", "flat", 8.0),
    Plan("2026-11-19", "06:15", "dreisam-river-loop", "flat", 14.0),
    Plan("2026-11-21", "09:00", "ride-kaiserstuhl", "ride", 42.0, 14.0, gz=True),
    Plan("2026-11-22", "08:00", "long-hilly-run-black-forest", "hilly", 20.0, 35.0, gz=True),
    Plan("2026-11-24", "06:10", "rosskopf-loop", "hilly", 12.0, 32.0),
    Plan("2026-11-25", "06:20", "river-easy", "flat", 8.0),
    Plan("2026-11-26", "06:10", "schlossberg-hills", "hilly", 10.0, 26.0, dt_s=1, gz=True),
    Plan("2026-11-29", "08:00", "long-run-river", "flat", 22.0, gz=True),
    # Added last so that the random streams of the plans above (seeded by their index)
    # and so their files stay as they were: one descent inside the last four weeks.
    Plan("2026-11-20", "14:00", "st-peter-descent", "downhill", 11.0, gz=True),
)


def _loop_xy(length_m: float, rng: np.random.Generator) -> np.ndarray:
    """A closed, wobbly loop through the origin, `length_m` long, as (x, y) metres."""
    theta = np.linspace(0.0, 2 * math.pi, 4001)
    lobes = int(rng.integers(2, 5))
    phase = rng.uniform(0, 2 * math.pi)
    r = 1.0 + 0.18 * np.sin(lobes * theta + phase) + 0.06 * np.sin(7 * theta + 2 * phase)
    x, y = r * np.cos(theta), r * np.sin(theta)
    x, y = x - x[0], y - y[0]
    seg = np.hypot(np.diff(x), np.diff(y))
    scale = length_m / seg.sum()
    rot = rng.uniform(0, 2 * math.pi)
    xr = (x * math.cos(rot) - y * math.sin(rot)) * scale
    yr = (x * math.sin(rot) + y * math.cos(rot)) * scale
    return np.column_stack([xr, yr])


def _line_xy(length_m: float, heading_deg: float, rng: np.random.Generator) -> np.ndarray:
    """A point-to-point route with bends, `length_m` long."""
    n = 4001
    s = np.linspace(0.0, 1.0, n)
    bend = np.radians(heading_deg) + 0.5 * np.sin(2 * math.pi * (2.5 * s + rng.uniform()))
    step = np.full(n - 1, 1.0)
    x = np.concatenate([[0.0], np.cumsum(step * np.sin(bend[1:]))])
    y = np.concatenate([[0.0], np.cumsum(step * np.cos(bend[1:]))])
    seg = np.hypot(np.diff(x), np.diff(y))
    return np.column_stack([x, y]) * (length_m / seg.sum())


def _elevation(plan: Plan, s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """True altitude (m) at fractions `s` (0..1) of the route."""
    km = plan.km
    if plan.kind == "flat":
        # A river path: a metre or two of undulation over the whole loop.
        return 278.0 + 1.2 * np.sin(2 * math.pi * 2 * s) + 0.6 * np.sin(2 * math.pi * 5 * s + 1)
    if plan.kind in ("hilly", "ride"):
        climbs = max(1, round(km / (2.4 if plan.kind == "hilly" else 8.0)))
        amplitude = plan.m_per_km * km / climbs
        profile = amplitude * (1 - np.cos(2 * math.pi * climbs * s)) / 2
        bumps = 4.0 * np.sin(2 * math.pi * (3 * climbs + 1) * s) * np.sin(math.pi * s)
        return 285.0 + profile + bumps
    if plan.kind == "downhill":
        top = float(rng.uniform(1020, 1080))
        bottom = 325.0
        # Mostly down, steeper in the middle, with two short rises on the way.
        descent = (top - bottom) * (1 - (3 * s**2 - 2 * s**3))
        rises = 14.0 * np.exp(-(((s - 0.35) / 0.03) ** 2)) + 10.0 * np.exp(
            -(((s - 0.7) / 0.025) ** 2)
        )
        return bottom + descent + rises
    raise ValueError(plan.kind)


def _wander(rng: np.random.Generator, n: int, dt_s: float, sd: float, tau_s: float) -> np.ndarray:
    """An AR(1) error with standard deviation `sd` and correlation time `tau_s`."""
    phi = math.exp(-dt_s / tau_s)
    kicks = rng.normal(0.0, sd * math.sqrt(1 - phi**2), n)
    out = np.empty(n)
    out[0] = rng.normal(0.0, sd)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + kicks[i]
    return out


def _samples(plan: Plan, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Time, position and noisy GPS altitude every `dt_s` seconds."""
    length = plan.km * 1000.0
    if plan.kind == "downhill":
        xy = _line_xy(length, float(rng.uniform(250, 320)), rng)
        # The descents start up in the hills, east of town.
        origin = (HOME[0] - 0.03, HOME[1] + 0.09)
    else:
        xy = _loop_xy(length, rng)
        origin = HOME
    grid = np.linspace(0.0, 1.0, xy.shape[0])
    d_grid = grid * length
    ele_true = _elevation(plan, grid, rng)
    grade = np.gradient(ele_true, d_grid)
    base_speed = 12000.0 / 3600 * 2.3 if plan.kind == "ride" else 1000.0 / rng.uniform(295, 335)
    # Slower up, a little faster down: about what a runner does.
    speed = base_speed * np.clip(np.exp(-4.0 * grade), 0.45, 1.25)
    t_grid = np.concatenate([[0.0], np.cumsum(np.diff(d_grid) / speed[1:])])
    t = np.arange(0.0, t_grid[-1], plan.dt_s)
    t = np.append(t, t_grid[-1]) if t[-1] < t_grid[-1] else t
    d = np.interp(t, t_grid, d_grid)
    x = np.interp(d, d_grid, xy[:, 0])
    y = np.interp(d, d_grid, xy[:, 1])
    ele = np.interp(d, d_grid, ele_true)
    n = t.shape[0]
    # GPS errors wander slowly rather than jump from fix to fix: a bias of ~2 m in
    # altitude (over minutes) and in position (over half a minute), plus a little jitter.
    ele_noisy = ele + _wander(rng, n, plan.dt_s, 2.0, 120.0) + rng.normal(0.0, 0.3, n)
    x = x + _wander(rng, n, plan.dt_s, 2.0, 30.0) + rng.normal(0.0, 0.3, n)
    y = y + _wander(rng, n, plan.dt_s, 2.0, 30.0) + rng.normal(0.0, 0.3, n)
    lat = origin[0] + y / M_PER_DEG_LAT
    lon = origin[1] + x / (M_PER_DEG_LAT * math.cos(math.radians(origin[0])))
    return {"t": t, "lat": lat, "lon": lon, "ele": ele_noisy, "d": d}


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _start(plan: Plan) -> datetime:
    return datetime.fromisoformat(f"{plan.day}T{plan.clock}:00").replace(tzinfo=UTC)


def _gpx(plan: Plan, rng: np.random.Generator) -> str:
    data = _samples(plan, rng)
    start = _start(plan)
    kind = "cycling" if plan.kind == "ride" else "running"
    title = plan.slug.replace("-", " ").capitalize()
    out = io.StringIO()
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write(
        '<gpx version="1.1" creator="hillsync demo data" '
        'xmlns="http://www.topografix.com/GPX/1/1" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://www.topografix.com/GPX/1/1 '
        'http://www.topografix.com/GPX/1/1/gpx.xsd">\n'
    )
    out.write(f"<metadata><time>{_iso(start)}</time></metadata>\n")
    out.write(f"<trk><name>{title}</name><type>{kind}</type><trkseg>\n")
    for t, la, lo, el in zip(data["t"], data["lat"], data["lon"], data["ele"], strict=True):
        ts = _iso(start + timedelta(seconds=round(float(t))))
        out.write(
            f'<trkpt lat="{la:.6f}" lon="{lo:.6f}"><ele>{el:.1f}</ele><time>{ts}</time></trkpt>\n'
        )
    out.write("</trkseg></trk>\n</gpx>\n")
    return out.getvalue()


def _tcx_treadmill(plan: Plan, rng: np.random.Generator) -> str:
    """A treadmill session as Garmin exports it: distance from the foot pod, no GPS."""
    start = _start(plan)
    # 2 km warm-up, 6 x (800 m hard, 400 m jog) ... as speeds over distance.
    pieces = [(2000.0, 2.9)] + [(800.0, 4.4), (400.0, 2.6)] * 6 + [(800.0, 2.8)]
    total = sum(p[0] for p in pieces)
    scale = plan.km * 1000.0 / total
    t, d, rows = 0.0, 0.0, []
    for length, v in pieces:
        end = d + length * scale
        while d < end:
            rows.append((t, d, int(118 + 55 * (v - 2.5) + rng.normal(0, 2))))
            t += plan.dt_s
            d = min(end, d + v * plan.dt_s * float(rng.uniform(0.98, 1.02)))
    rows.append((t, d, rows[-1][2]))
    out = io.StringIO()
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write(
        '<TrainingCenterDatabase xmlns="http://www.garmin.com/xmlschemas/'
        'TrainingCenterDatabase/v2">\n<Activities>\n<Activity Sport="Running">\n'
    )
    out.write(f'<Id>{_iso(start)}</Id>\n<Lap StartTime="{_iso(start)}">\n')
    out.write(f"<TotalTimeSeconds>{rows[-1][0]:.1f}</TotalTimeSeconds>\n")
    out.write(f"<DistanceMeters>{rows[-1][1]:.1f}</DistanceMeters>\n")
    out.write("<Calories>640</Calories><Intensity>Active</Intensity>")
    out.write("<TriggerMethod>Manual</TriggerMethod>\n<Track>\n")
    for ts, dist, hr in rows:
        when = _iso(start + timedelta(seconds=ts))
        out.write(
            f"<Trackpoint><Time>{when}</Time><DistanceMeters>{dist:.1f}</DistanceMeters>"
            f"<HeartRateBpm><Value>{hr}</Value></HeartRateBpm></Trackpoint>\n"
        )
    out.write("</Track>\n</Lap>\n<Notes>Treadmill</Notes>\n")
    out.write('<Creator xsi:type="Device_t" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">')
    out.write("<Name>Forerunner 265</Name></Creator>\n</Activity>\n</Activities>\n")
    out.write("</TrainingCenterDatabase>\n")
    return out.getvalue()


def _write(path: Path, text: str, gz: bool) -> None:
    raw = text.encode("utf-8")
    if gz:
        buf = io.BytesIO()
        # No name, no mtime in the header: the output is byte-identical on every run.
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as fh:
            fh.write(raw)
        raw = buf.getvalue()
    path.write_bytes(raw)


def main(out: Path = OUT) -> list[Path]:
    """Write every demo file into `out`; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, plan in enumerate(PLAN):
        rng = np.random.default_rng([SEED, i])
        stem = f"{plan.day}-{plan.clock.replace(':', '')}-{plan.slug}"
        if plan.kind == "treadmill":
            path = out / f"{stem}.tcx"
            _write(path, _tcx_treadmill(plan, rng), gz=False)
        else:
            path = out / (f"{stem}.gpx.gz" if plan.gz else f"{stem}.gpx")
            _write(path, _gpx(plan, rng), plan.gz)
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    files = main(target)
    size = sum(p.stat().st_size for p in files)
    print(f"wrote {len(files)} files, {size / 1e6:.2f} MB, into {target}")
