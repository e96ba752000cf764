"""The weekly report: terrain volume per ISO week with the hill share against the goal band.

matplotlib is imported lazily (Agg backend, no display needed): it is slow to import and
only this command needs it.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from hillsync.errors import HillsyncError, UsageError
from hillsync.model import Goal, RunForBalance, Terrain

COLOURS: Mapping[Terrain, str] = {
    Terrain.UPHILL: "#c0392b",
    Terrain.DOWNHILL: "#e67e22",
    Terrain.FLAT: "#2e86c1",
    Terrain.UNKNOWN: "#aab7b8",
}
ORDER = (Terrain.UPHILL, Terrain.DOWNHILL, Terrain.FLAT, Terrain.UNKNOWN)


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


def _png(volumes: Sequence[WeekVolume], goal: Goal) -> bytes:
    import matplotlib  # lazily: slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig: Any
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(volumes) + 2), 4.5), dpi=100)
    try:
        x = list(range(len(volumes)))
        bottom = [0.0] * len(volumes)
        for terrain in ORDER:
            heights = [v.km.get(terrain, 0.0) for v in volumes]
            ax.bar(x, heights, bottom=bottom, color=COLOURS[terrain], label=terrain.value)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.set_ylim(0, max(max(bottom, default=0.0) * 1.1, 1.0))
        ax.set_ylabel("km per week")
        ax.set_xticks(x)
        ax.set_xticklabels([v.label for v in volumes], rotation=45, ha="right", fontsize=8)

        # The band goes behind the bars and the share line in front of them: two twin
        # axes with the same 0-100 % scale, one under the bars' axes and one over them.
        band = ax.twinx()
        band.set_zorder(ax.get_zorder() - 1)
        ax.patch.set_visible(False)
        band.axhspan(
            goal.hill_share_min * 100,
            goal.hill_share_max * 100,
            color="#27ae60",
            alpha=0.2,
            label=f"goal {goal.hill_share_min:.0%}-{goal.hill_share_max:.0%}",
        )
        band.set_ylim(0, 100)
        band.set_ylabel("hill share of known-terrain km (%)")
        line = ax.twinx()
        line.set_ylim(0, 100)
        line.axis("off")
        points = [
            (i, v.hill_share * 100) for i, v in enumerate(volumes) if v.hill_share is not None
        ]
        if points:
            line.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                color="black",
                marker="o",
                label="hill share",
            )

        handles, labels = ax.get_legend_handles_labels()
        for other in (band, line):
            h, lab = other.get_legend_handles_labels()
            handles += h
            labels += lab
        fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=8, frameon=False)
        ax.set_title(f"Weekly terrain volume ({goal.profile.value} goal)")
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def _html(volumes: Sequence[WeekVolume], goal: Goal, png: bytes) -> str:
    rows = []
    for v in volumes:
        share = f"{v.hill_share:.0%}" if v.hill_share is not None else "-"
        cells = "".join(f"<td>{v.km.get(t, 0.0):.1f}</td>" for t in ORDER)
        rows.append(
            f"<tr><td>{html.escape(v.label)}</td><td>{v.runs}</td>{cells}"
            f"<td>{v.total_km:.1f}</td><td>{share}</td></tr>"
        )
    head = "".join(f"<th>{t.value} km</th>" for t in ORDER)
    image = base64.b64encode(png).decode("ascii")
    band = f"{goal.hill_share_min:.0%}-{goal.hill_share_max:.0%}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>hillsync weekly report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }}
</style>
</head>
<body>
<h1>hillsync weekly report</h1>
<p>Goal: {html.escape(goal.profile.value)}, hill share {band},
downhill at most {goal.downhill_share_max:.0%}.</p>
<img alt="weekly terrain volume chart" src="data:image/png;base64,{image}">
<table>
<tr><th>week</th><th>runs</th>{head}<th>total km</th><th>hill share</th></tr>
{chr(10).join(rows)}
</table>
</body>
</html>
"""


def render_report(volumes: Sequence[WeekVolume], goal: Goal, out: Path) -> None:
    """Write the chart to `out`: `.png` the image, `.html` a self-contained page.

    Raises UsageError for any other suffix, HillsyncError when the file cannot be written.
    """
    suffix = out.suffix.lower()
    if suffix not in {".png", ".html", ".htm"}:
        raise UsageError(f"report --out {out.name}: use a .html or .png file name")
    png = _png(volumes, goal)
    data = png if suffix == ".png" else _html(volumes, goal, png).encode("utf-8")
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise HillsyncError(f"cannot write the report to {out}: {exc.strerror}") from exc
