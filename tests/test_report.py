"""report: weekly terrain volumes and the PNG / HTML chart."""

from __future__ import annotations

import base64
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from hillsync.errors import UsageError
from hillsync.model import GOAL_BANDS, Goal, GoalProfile, RunForBalance, Terrain
from hillsync.report import render_report, weekly_volumes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Wednesday of ISO week 2026-W49
AT = datetime(2026, 12, 2, 20, 0, tzinfo=UTC)
GOAL = Goal(GoalProfile.TRAIL, *GOAL_BANDS[GoalProfile.TRAIL])


def runs() -> list[RunForBalance]:
    labels = [Terrain.UPHILL, Terrain.FLAT, Terrain.DOWNHILL, Terrain.UNKNOWN, Terrain.FLAT]
    return [
        RunForBalance(AT - timedelta(days=2 * i, hours=3), 8_000.0 + 100 * i, labels[i % 5], 100.0)
        for i in range(30)
    ]


class TestWeeklyVolumes:
    """Runs are summed per ISO week and label."""

    def test_weeks_oldest_first_including_empty(self) -> None:
        """The last N ISO weeks come oldest first, ending with the week of `at`."""
        volumes = weekly_volumes([], 4, AT)
        assert [v.label for v in volumes] == ["2026-W46", "2026-W47", "2026-W48", "2026-W49"]
        assert volumes[-1].week_start == date(2026, 11, 30)
        assert all(v.total_km == 0 and v.hill_share is None for v in volumes)

    def test_km_by_label(self) -> None:
        """A week's km by label add up its runs; unknown km stay out of the hill share."""
        week_runs = [
            RunForBalance(datetime(2026, 11, 30, 7, tzinfo=UTC), 10_000.0, Terrain.UPHILL),
            RunForBalance(datetime(2026, 12, 1, 7, tzinfo=UTC), 30_000.0, Terrain.FLAT),
            RunForBalance(datetime(2026, 12, 2, 7, tzinfo=UTC), 5_000.0, Terrain.UNKNOWN),
            # Sunday of the week before, and a run after `at`: neither in this week
            RunForBalance(datetime(2026, 11, 29, 23, tzinfo=UTC), 7_000.0, Terrain.FLAT),
            RunForBalance(datetime(2026, 12, 2, 21, tzinfo=UTC), 9_000.0, Terrain.FLAT),
        ]
        last, this = weekly_volumes(week_runs, 2, AT)
        assert this.km[Terrain.UPHILL] == pytest.approx(10.0)
        assert this.km[Terrain.FLAT] == pytest.approx(30.0)
        assert this.km[Terrain.UNKNOWN] == pytest.approx(5.0)
        assert this.runs == 3
        assert this.hill_share == pytest.approx(0.25)
        assert last.km[Terrain.FLAT] == pytest.approx(7.0)

    def test_bad_arguments(self) -> None:
        """Zero weeks or a naive time are refused."""
        with pytest.raises(ValueError, match="weeks"):
            weekly_volumes([], 0, AT)
        with pytest.raises(ValueError, match="timezone-aware"):
            weekly_volumes([], 4, datetime(2026, 1, 1))  # noqa: DTZ001


class TestRender:
    """The chart is written as PNG or as a self-contained HTML page."""

    def test_png(self, tmp_path: Path) -> None:
        """A .png output is a PNG image."""
        out = tmp_path / "report.png"
        render_report(weekly_volumes(runs(), 8, AT), GOAL, out)
        data = out.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 5_000

    def test_html_embeds_image_and_table(self, tmp_path: Path) -> None:
        """A .html output embeds the PNG as base64 and lists every week in a table."""
        out = tmp_path / "report.html"
        volumes = weekly_volumes(runs(), 8, AT)
        render_report(volumes, GOAL, out)
        page = out.read_text(encoding="utf-8")
        match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
        assert match is not None
        assert base64.b64decode(match.group(1)).startswith(PNG_SIGNATURE)
        for v in volumes:
            assert f"<td>{v.label}</td>" in page
        assert "30%-55%" in page
        assert "http" not in page.replace("http-equiv", "")  # nothing fetched from elsewhere

    def test_empty_weeks_render(self, tmp_path: Path) -> None:
        """Weeks without runs still give a chart (no share line)."""
        out = tmp_path / "empty.png"
        render_report(weekly_volumes([], 4, AT), GOAL, out)
        assert out.read_bytes().startswith(PNG_SIGNATURE)

    def test_other_suffix_is_usage_error(self, tmp_path: Path) -> None:
        """Any suffix but .png or .html is a usage error, and nothing is written."""
        out = tmp_path / "report.pdf"
        with pytest.raises(UsageError, match=r"\.html or \.png"):
            render_report(weekly_volumes(runs(), 4, AT), GOAL, out)
        assert not out.exists()
