"""Charts and the report: weekly km by label, the rolling hill share, a run's profile.

The same charts serve the web pages (`hillsync serve`) and the `report` command, which
writes the dashboard as one self-contained HTML file or as one PNG. Charts are drawn on the
server (matplotlib, Agg backend), so pages need no JavaScript. Every chart has a fixed size
whatever the number of weeks: a long history makes thinner bars, never a wider picture.

matplotlib is imported lazily: it is slow to import and only charts need it.
"""

from __future__ import annotations

import base64
import importlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hillsync.balance import MIN_DISTANCE_M, MIN_RUNS
from hillsync.errors import HillsyncError, UsageError
from hillsync.model import BalanceReport, Goal, RunForBalance, Terrain

ChartFormat = Literal["svg", "png"]

COLOURS: Mapping[Terrain, str] = {
    Terrain.UPHILL: "#c0392b",
    Terrain.DOWNHILL: "#e67e22",
    Terrain.FLAT: "#2e86c1",
    Terrain.UNKNOWN: "#aab7b8",
}
ORDER = (Terrain.UPHILL, Terrain.DOWNHILL, Terrain.FLAT, Terrain.UNKNOWN)
BAND_COLOUR = "#27ae60"
#: Every chart's size in inches at CHART_DPI: bounded whatever the number of weeks.
CHART_SIZE = (6.4, 3.8)
CHART_DPI = 100
#: Days of rolling share shown on the dashboard.
DASHBOARD_DAYS = 182
#: Weeks of weekly km shown on the dashboard.
DASHBOARD_WEEKS = 26


@dataclass(frozen=True)
class WeekVolume:
    """One ISO week: km by label and the hill share of its known-label distance."""

    week_start: date
    iso_year: int
    iso_week: int
    runs: int
    km: Mapping[Terrain, float]

    @property
    def total_km(self) -> float:
        """Every run's km, unknown included."""
        return sum(self.km.values())

    @property
    def hill_share(self) -> float | None:
        """Uphill km / km with a known label; None for a week without such km."""
        known = sum(v for t, v in self.km.items() if t is not Terrain.UNKNOWN)
        return self.km.get(Terrain.UPHILL, 0.0) / known if known > 0 else None

    @property
    def label(self) -> str:
        """`2026-W48`."""
        return f"{self.iso_year}-W{self.iso_week:02d}"


@dataclass(frozen=True)
class SharePoint:
    """The shares over the window ending with `day`: what the warnings look at, day by day.

    The shares are None when the window holds no run with a known label; `sufficient` is
    False when it holds fewer runs or km than the balance needs to judge (DESIGN section 5).
    """

    day: date
    hill_share: float | None
    downhill_share: float | None
    known_km: float
    runs: int
    sufficient: bool


@dataclass(frozen=True)
class RunRow:
    """One run as the pages list it."""

    id: int
    start_time: datetime
    name: str | None
    sport: str
    label: str
    distance_m: float
    elevation_gain_m: float | None
    elevation_loss_m: float | None
    elevation_source: str | None
    reason: str | None


@dataclass(frozen=True)
class Dashboard:
    """Everything one athlete's dashboard shows."""

    athlete: str
    report: BalanceReport
    weeks: Sequence[WeekVolume]
    shares: Sequence[SharePoint]
    recent: Sequence[RunRow]
    generated_at: datetime


def _check_aware(at: datetime) -> None:
    if at.tzinfo is None:
        raise ValueError("charts need a timezone-aware datetime")


def weekly_volumes(runs: Sequence[RunForBalance], weeks: int, at: datetime) -> list[WeekVolume]:
    """The last `weeks` ISO weeks up to the one holding `at`, oldest first, empty ones too.

    Weeks are taken in UTC; runs after `at` are left out. Raises ValueError for weeks < 1
    or a naive `at`.
    """
    if weeks < 1:
        raise ValueError("weeks must be at least 1")
    if at.tzinfo is None:
        raise ValueError("weekly_volumes needs a timezone-aware datetime")
    day = at.date()
    this_monday = day - timedelta(days=day.weekday())
    mondays = [this_monday - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    km: dict[date, dict[Terrain, float]] = {m: dict.fromkeys(ORDER, 0.0) for m in mondays}
    counts: dict[date, int] = dict.fromkeys(mondays, 0)
    for run in runs:
        if run.start_time > at:
            continue
        d = run.start_time.astimezone(at.tzinfo).date()
        monday = d - timedelta(days=d.weekday())
        if monday in km:
            km[monday][run.label] += run.distance_m / 1000
            counts[monday] += 1
    result = []
    for m in mondays:
        iso = m.isocalendar()
        result.append(
            WeekVolume(week_start=m, iso_year=iso.year, iso_week=iso.week, runs=counts[m], km=km[m])
        )
    return result


def rolling_shares(
    runs: Sequence[RunForBalance], days: int, at: datetime, window_days: int = 28
) -> list[SharePoint]:
    """The hill and downhill share over the `window_days` ending each of the last `days` days.

    Oldest first, one point per UTC day up to the day of `at`; `runs` must cover
    `days + window_days` days before `at` for the first points to be complete. Runs after
    `at` are left out. Raises ValueError for days < 1, window_days < 1 or a naive `at`.
    """
    if days < 1 or window_days < 1:
        raise ValueError("days and window_days must be at least 1")
    _check_aware(at)
    last = at.astimezone(UTC).date()
    first = last - timedelta(days=days - 1)
    origin = first - timedelta(days=window_days - 1)
    n = (last - origin).days + 1
    known = np.zeros(n)
    up = np.zeros(n)
    down = np.zeros(n)
    counts = np.zeros(n)
    for run in runs:
        if run.start_time > at:
            continue
        i = (run.start_time.astimezone(UTC).date() - origin).days
        if not 0 <= i < n or run.label is Terrain.UNKNOWN:
            continue
        known[i] += run.distance_m
        counts[i] += 1
        if run.label is Terrain.UPHILL:
            up[i] += run.distance_m
        elif run.label is Terrain.DOWNHILL:
            down[i] += run.distance_m

    def window(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        c = np.concatenate(([0.0], np.cumsum(values)))
        return c[window_days:] - c[:-window_days]

    k, u, d, r = window(known), window(up), window(down), window(counts)
    points = []
    for i in range(days):
        has = k[i] > 0
        points.append(
            SharePoint(
                day=first + timedelta(days=i),
                hill_share=float(u[i] / k[i]) if has else None,
                downhill_share=float(d[i] / k[i]) if has else None,
                known_km=float(k[i] / 1000),
                runs=round(float(r[i])),
                sufficient=bool(r[i] >= MIN_RUNS and k[i] >= MIN_DISTANCE_M),
            )
        )
    return points


# --- drawing ------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib  # lazily: slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 12,
            "font.family": "DejaVu Sans",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "svg.hashsalt": "hillsync",  # stable ids: the same data gives the same SVG
            "svg.fonttype": "path",  # no font needed where the picture is shown
        }
    )
    return plt


def _save(fig: Any, fmt: ChartFormat) -> bytes:
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else None
    fig.savefig(buf, format=fmt, dpi=CHART_DPI, metadata=metadata)
    return buf.getvalue()


def _date_axis(ax: Any) -> None:
    mdates: Any = importlib.import_module("matplotlib.dates")  # untyped: keep mypy out
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def weekly_chart(volumes: Sequence[WeekVolume], fmt: ChartFormat = "svg") -> bytes:
    """Stacked bars of km per week by label, dated by each week's Monday. Raises nothing."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=CHART_SIZE, layout="constrained")
    try:
        x = [np.datetime64(v.week_start) for v in volumes]
        bottom = np.zeros(len(volumes))
        for terrain in ORDER:
            heights = np.array([v.km.get(terrain, 0.0) for v in volumes])
            ax.bar(
                x,
                heights,
                bottom=bottom,
                width=np.timedelta64(6, "D"),
                align="edge",
                color=COLOURS[terrain],
                label=terrain.value,
            )
            bottom = bottom + heights
        ax.set_ylim(0, max(float(bottom.max(initial=0.0)) * 1.1, 1.0))
        if volumes:
            start = np.datetime64(volumes[0].week_start)
            ax.set_xlim(start - np.timedelta64(1, "D"), x[-1] + np.timedelta64(8, "D"))
        ax.set_ylabel("km per week")
        ax.set_title("Weekly running by terrain", loc="left")
        _date_axis(ax)
        ax.legend(loc="upper left", ncol=4, fontsize=10, frameon=False)
        ax.grid(axis="y", alpha=0.3)
        return _save(fig, fmt)
    finally:
        plt.close(fig)


def share_chart(points: Sequence[SharePoint], goal: Goal, fmt: ChartFormat = "svg") -> bytes:
    """The rolling hill and downhill share in % with the goal band, over `points`' days.

    Days whose window holds no labelled run leave a gap (no line across empty weeks); days
    with too few runs to judge are drawn thin and dotted. Raises nothing.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=CHART_SIZE, layout="constrained")
    try:
        x = np.array([np.datetime64(p.day) for p in points])
        lo, hi = goal.hill_share_min * 100, goal.hill_share_max * 100
        ax.axhspan(
            lo, hi, color=BAND_COLOUR, alpha=0.18, label=f"goal hill share {lo:.0f}–{hi:.0f} %"
        )
        ax.axhline(
            goal.downhill_share_max * 100,
            color=COLOURS[Terrain.DOWNHILL],
            linestyle="--",
            linewidth=1,
            label=f"downhill max {goal.downhill_share_max * 100:.0f} %",
        )
        for attr, colour, name in (
            ("hill_share", COLOURS[Terrain.UPHILL], "hill share"),
            ("downhill_share", COLOURS[Terrain.DOWNHILL], "downhill share"),
        ):
            y = np.array(
                [np.nan if getattr(p, attr) is None else getattr(p, attr) * 100 for p in points]
            )
            ok = np.array([p.sufficient for p in points], dtype=bool)
            # NaN breaks a matplotlib line: gaps stay gaps.
            ax.plot(x, np.where(ok, np.nan, y), color=colour, linewidth=1, linestyle=":")
            ax.plot(x, np.where(ok, y, np.nan), color=colour, linewidth=2.2, label=name)
        ax.set_ylim(0, 100)
        ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0f} %")
        ax.set_ylabel(f"share of km, last {goal.window_days} days")
        ax.set_title(f"Rolling {goal.window_days}-day hill share", loc="left")
        if len(x):
            ax.set_xlim(x[0], x[-1] + np.timedelta64(1, "D"))
        _date_axis(ax)
        ax.legend(loc="upper left", ncol=2, fontsize=10, frameon=False)
        ax.grid(axis="y", alpha=0.3)
        return _save(fig, fmt)
    finally:
        plt.close(fig)


def profile_chart(
    edges_m: Sequence[float] | np.ndarray[Any, Any],
    altitude_m: Sequence[float] | np.ndarray[Any, Any],
    terrain: Sequence[Terrain],
    fmt: ChartFormat = "svg",
) -> bytes:
    """A run's elevation profile, each 100 m segment filled in its terrain's colour.

    `edges_m` and `altitude_m` are the segment edges (len(terrain) + 1 values). Raises
    ValueError when the lengths do not match.
    """
    edges = np.asarray(edges_m, dtype=np.float64)
    alt = np.asarray(altitude_m, dtype=np.float64)
    if len(edges) != len(alt) or (len(terrain) and len(edges) != len(terrain) + 1):
        raise ValueError("profile_chart needs one more edge than segments")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=CHART_SIZE, layout="constrained")
    try:
        km = edges / 1000
        floor = float(alt.min(initial=0.0)) - 10 if len(alt) else 0.0
        top = float(alt.max(initial=0.0)) + 10 if len(alt) else 1.0
        seen: set[Terrain] = set()
        start = 0
        for i in range(1, len(terrain) + 1):
            # One filled area per stretch of equal terrain: no seams between its segments.
            if i < len(terrain) and terrain[i] is terrain[start]:
                continue
            t = terrain[start]
            ax.fill_between(
                km[start : i + 1],
                alt[start : i + 1],
                floor,
                color=COLOURS[t],
                linewidth=0,
                label=t.value if t not in seen else None,
            )
            seen.add(t)
            start = i
        ax.plot(km, alt, color="#333333", linewidth=1)
        ax.set_ylim(floor, top + (top - floor) * 0.15)
        if len(km):
            ax.set_xlim(0, float(km[-1]))
        ax.set_xlabel("km")
        ax.set_ylabel("altitude (m)")
        ax.set_title("Elevation profile by 100 m segment", loc="left")
        handles, labels = ax.get_legend_handles_labels()
        order = [labels.index(t.value) for t in ORDER if t.value in labels]
        ax.legend(
            [handles[i] for i in order],
            [labels[i] for i in order],
            loc="upper left",
            ncol=3,
            fontsize=9,
            frameon=False,
        )
        return _save(fig, fmt)
    finally:
        plt.close(fig)


def data_uri(data: bytes, fmt: ChartFormat) -> str:
    """A chart as a data: URI, for a page that must stand alone."""
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# --- the report ---------------------------------------------------------------------------


def dashboard_png(dashboard: Dashboard) -> bytes:
    """The dashboard as one PNG: the balance in words, the rolling share, weekly km."""
    from matplotlib.image import imread

    plt = _pyplot()
    goal = dashboard.report.goal
    charts = [
        imread(io.BytesIO(share_chart(dashboard.shares, goal, "png")), format="png"),
        imread(io.BytesIO(weekly_chart(dashboard.weeks, "png")), format="png"),
    ]
    width, height = CHART_SIZE
    fig = plt.figure(figsize=(width, height * 2 + 1.6), dpi=CHART_DPI)
    try:
        grid = fig.add_gridspec(3, 1, height_ratios=[1.6, height, height], hspace=0.02)
        text = fig.add_subplot(grid[0])
        text.axis("off")
        for line, (y, size, weight) in zip(
            summary_lines(dashboard.report),
            ((0.88, 14, "bold"), (0.6, 11, "normal"), (0.36, 11, "normal"), (0.1, 10, "normal")),
            strict=False,
        ):
            text.text(0.02, y, line, fontsize=size, weight=weight, va="top", wrap=True)
        for row, image in enumerate(charts, start=1):
            ax = fig.add_subplot(grid[row])
            ax.imshow(image)
            ax.axis("off")
        fig.subplots_adjust(left=0, right=1, top=1, bottom=0)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=CHART_DPI)
        return buf.getvalue()
    finally:
        plt.close(fig)


def summary_lines(report: BalanceReport) -> list[str]:
    """The current balance in four short lines: status, shares and band, window, advice.

    The window's line carries the terrain volume (km-effort) and the hill sessions.
    """
    goal = report.goal
    band = f"{goal.hill_share_min:.0%}–{goal.hill_share_max:.0%}"
    share = "n/a" if report.hill_share is None else f"{report.hill_share:.0%}"
    down = "n/a" if report.downhill_share is None else f"{report.downhill_share:.0%}"
    return [
        f"{report.athlete}: {str(report.status).replace('_', ' ')}",
        f"hill share {share} (goal {band}), downhill {down} (max {goal.downhill_share_max:.0%})",
        f"last {goal.window_days} days: {report.runs} runs, {report.distance_m / 1000:.1f} km, "
        f"{report.vertical_m:.0f} m climbed, km-effort {report.terrain.km_effort:.0f}, "
        f"{report.hill_sessions.count} hill sessions",
        report.advice,
    ]


def render_report(dashboard: Dashboard, out: Path) -> None:
    """Write the dashboard to `out`: `.png` one image, `.html` a self-contained page.

    Raises UsageError for any other suffix, HillsyncError when the file cannot be written.
    """
    suffix = out.suffix.lower()
    if suffix not in {".png", ".html", ".htm"}:
        raise UsageError(f"report --out {out.name}: use a .html or .png file name")
    if suffix == ".png":
        data = dashboard_png(dashboard)
    else:
        from hillsync.render import render_standalone_dashboard

        goal = dashboard.report.goal
        charts = {
            "shares": data_uri(share_chart(dashboard.shares, goal), "svg"),
            "weekly": data_uri(weekly_chart(dashboard.weeks), "svg"),
        }
        data = render_standalone_dashboard(dashboard, charts).encode("utf-8")
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise HillsyncError(f"cannot write the report to {out}: {exc.strerror}") from exc
