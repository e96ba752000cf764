"""report: weekly volumes, rolling shares, the charts and the PNG / HTML dashboard."""

from __future__ import annotations

import base64
import re
import struct
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from hillsync.errors import UsageError
from hillsync.model import (
    GOAL_BANDS,
    BalanceReport,
    BalanceStatus,
    Goal,
    GoalProfile,
    RunForBalance,
    Terrain,
)
from hillsync.report import (
    Dashboard,
    RunRow,
    profile_chart,
    render_report,
    rolling_shares,
    share_chart,
    weekly_chart,
    weekly_volumes,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Wednesday of ISO week 2026-W49
AT = datetime(2026, 12, 2, 20, 0, tzinfo=UTC)
# DESIGN section 5: trail 0.30-0.55, downhill max 0.25
GOAL = Goal(GoalProfile.TRAIL, 0.30, 0.55, 0.25)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def runs() -> list[RunForBalance]:
    labels = [Terrain.UPHILL, Terrain.FLAT, Terrain.DOWNHILL, Terrain.UNKNOWN, Terrain.FLAT]
    return [
        RunForBalance(AT - timedelta(days=2 * i, hours=3), 8_000.0 + 100 * i, labels[i % 5], 100.0)
        for i in range(30)
    ]


def dashboard(weeks: int = 8) -> Dashboard:
    report = BalanceReport(
        athlete="me",
        window_start=AT - timedelta(days=28),
        window_end=AT,
        runs=14,
        distance_m=120_000.0,
        by_label={Terrain.UPHILL: 30_000.0, Terrain.FLAT: 90_000.0},
        hill_share=0.25,
        downhill_share=0.0,
        vertical_m=1234.0,
        goal=GOAL,
        status=BalanceStatus.LOW,
        advice="Add one hill session a week.",
    )
    recent = [
        RunRow(
            id=7,
            start_time=AT - timedelta(days=1),
            name="Schauinsland <climb>",
            sport="run",
            label="uphill",
            distance_m=12_300.0,
            elevation_gain_m=640.0,
            elevation_loss_m=630.0,
            elevation_source="file",
            reason="gain 52 m/km from the device",
        )
    ]
    return Dashboard(
        athlete="me",
        report=report,
        weeks=weekly_volumes(runs(), weeks, AT),
        shares=rolling_shares(runs(), weeks * 7, AT),
        recent=recent,
        generated_at=AT,
    )


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


class TestRollingShares:
    """Each day's point is the share over the 28 days that end with it."""

    def test_share_of_the_window(self) -> None:
        """10 km uphill and 30 km flat in the window make a 25 % hill share; unknown is left out."""
        window_runs = [
            RunForBalance(AT - timedelta(days=3), 10_000.0, Terrain.UPHILL),
            RunForBalance(AT - timedelta(days=10), 10_000.0, Terrain.FLAT),
            RunForBalance(AT - timedelta(days=11), 10_000.0, Terrain.FLAT),
            RunForBalance(AT - timedelta(days=12), 10_000.0, Terrain.FLAT),
            RunForBalance(AT - timedelta(days=13), 50_000.0, Terrain.UNKNOWN),
        ]
        last = rolling_shares(window_runs, 1, AT)[-1]
        assert last.day == date(2026, 12, 2)
        assert last.hill_share == pytest.approx(0.25)
        assert last.downhill_share == pytest.approx(0.0)
        assert last.known_km == pytest.approx(40.0)
        assert last.runs == 4
        assert last.sufficient  # 4 runs and 40 km: DESIGN's minimum is 4 runs and 20 km

    def test_empty_windows_are_gaps(self) -> None:
        """A day whose 28 days hold no labelled run has no share at all (a gap, never 0 %)."""
        old = [RunForBalance(AT - timedelta(days=100), 10_000.0, Terrain.UPHILL)]
        points = rolling_shares(old, 120, AT)
        by_day = {p.day: p for p in points}
        assert by_day[(AT - timedelta(days=100)).date()].hill_share == pytest.approx(1.0)
        # 28 days after the run, the window no longer holds it
        assert by_day[(AT - timedelta(days=72)).date()].hill_share is None
        assert points[-1].hill_share is None
        assert not any(p.sufficient for p in points)  # one run never suffices

    def test_run_leaves_the_window_after_28_days(self) -> None:
        """A run counts on its own day and the 27 days after, not on the 28th."""
        day0 = AT - timedelta(days=40)
        points = rolling_shares([RunForBalance(day0, 5_000.0, Terrain.DOWNHILL)], 41, AT)
        by_day = {p.day: p for p in points}
        assert by_day[(day0 + timedelta(days=27)).date()].downhill_share == pytest.approx(1.0)
        assert by_day[(day0 + timedelta(days=28)).date()].downhill_share is None


class TestCharts:
    """Charts have a fixed size, whatever the span."""

    def test_weekly_chart_width_is_bounded(self) -> None:
        """1000 weeks give a picture as wide as 4 weeks (the old report grew 55 px a week)."""
        few = png_size(weekly_chart(weekly_volumes(runs(), 4, AT), "png"))
        many = png_size(weekly_chart(weekly_volumes(runs(), 1000, AT), "png"))
        assert few == many
        assert many[0] <= 1000

    def test_share_chart_breaks_the_line_at_gaps(self) -> None:
        """The rolling share line is cut where the window is empty: two separate runs of points."""
        far_apart = [
            RunForBalance(AT - timedelta(days=150), 10_000.0, Terrain.UPHILL),
            RunForBalance(AT - timedelta(days=5), 10_000.0, Terrain.FLAT),
        ]
        points = rolling_shares(far_apart, 160, AT)
        shares = np.array([np.nan if p.hill_share is None else p.hill_share for p in points])
        # Two islands of data separated by NaN: matplotlib draws no segment across NaN.
        islands = np.count_nonzero(np.diff(np.isnan(shares).astype(int)) == -1)
        assert islands == 2
        svg = share_chart(points, GOAL).decode()
        assert svg.lstrip().startswith("<?xml")
        # The band is labelled as a share on the % axis (matplotlib keeps texts as comments).
        assert "goal hill share 30–55 %" in svg
        assert "share of km, last 28 days" in svg

    def test_profile_chart_colours_segments(self) -> None:
        """Each terrain's colour appears in the profile's SVG."""
        edges = [0.0, 100.0, 200.0, 300.0]
        svg = profile_chart(
            edges, [100.0, 110.0, 100.0, 100.0], [Terrain.UPHILL, Terrain.DOWNHILL, Terrain.FLAT]
        ).decode()
        for colour in ("#c0392b", "#e67e22", "#2e86c1"):
            assert colour in svg
        with pytest.raises(ValueError, match="edge"):
            profile_chart([0.0, 100.0], [1.0, 2.0], [Terrain.UPHILL, Terrain.FLAT])


class TestRender:
    """The dashboard is written as one PNG or as one self-contained HTML page."""

    def test_png(self, tmp_path: Path) -> None:
        """A .png output is one bounded image holding the balance and both charts."""
        out = tmp_path / "report.png"
        render_report(dashboard(), out)
        width, height = png_size(out.read_bytes())
        assert width <= 1000
        assert height > 2 * width * 0.5  # two charts and the balance above each other

    def test_html_is_self_contained(self, tmp_path: Path) -> None:
        """The page embeds both charts, shows the balance and the runs, and fetches nothing."""
        out = tmp_path / "report.html"
        render_report(dashboard(), out)
        page = out.read_text(encoding="utf-8")
        images = re.findall(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', page)
        assert len(images) == 2
        assert all(base64.b64decode(i).lstrip().startswith(b"<?xml") for i in images)
        assert "25 %" in page  # the share
        assert "30 %–55 %" in page  # the band
        assert "Add one hill session a week." in page
        assert "1234 m" in page
        assert "Schauinsland &lt;climb&gt;" in page  # escaped
        assert "gain 52 m/km from the device" in page
        assert "<style>" in page
        assert not re.search(r"(src|href)=\"(https?:)?//", page)

    def test_other_suffix_is_usage_error(self, tmp_path: Path) -> None:
        """Any suffix but .png or .html is a usage error, and nothing is written."""
        out = tmp_path / "report.pdf"
        with pytest.raises(UsageError, match=r"\.html or \.png"):
            render_report(dashboard(), out)
        assert not out.exists()


def test_goal_band_literal_matches_design() -> None:
    """The test's trail band is DESIGN's (a guard against a silently changed table)."""
    assert GOAL_BANDS[GoalProfile.TRAIL] == (0.30, 0.55, 0.25)


class TestReportCommand:
    """`hillsync report` on a synced folder of the bundled sample runs."""

    @pytest.fixture
    def synced(self, tmp_path: Path) -> tuple[Path, dict[str, str]]:
        from importlib import resources

        from hillsync.cli import main

        demo = Path(str(resources.files("hillsync") / "demo"))
        config = tmp_path / "config.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "h.db"}"\n'
            f'[goal]\nprofile = "trail"\n[[sources.folder]]\npath = "{demo}"\n'
        )
        env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
        assert main(["--config", str(config), "-q", "sync"], environ=env) == 0
        return config, env

    def test_thousand_weeks_png_is_bounded(
        self, synced: tuple[Path, dict[str, str]], tmp_path: Path
    ) -> None:
        """`--weeks 1000` writes a PNG no wider than one screen (it used to be 55,200 px)."""
        from hillsync.cli import main

        config, env = synced
        out = tmp_path / "r.png"
        code = main(
            ["--config", str(config), "report", "--weeks", "1000", "--out", str(out)], environ=env
        )
        assert code == 0
        width, _height = png_size(out.read_bytes())
        assert width <= 1000

    def test_html_lists_the_sample_runs(
        self, synced: tuple[Path, dict[str, str]], tmp_path: Path
    ) -> None:
        """The HTML report names the latest sample run and the trail band."""
        from hillsync.cli import main

        config, env = synced
        out = tmp_path / "r.html"
        assert main(["--config", str(config), "report", "--out", str(out)], environ=env) == 0
        page = out.read_text(encoding="utf-8")
        assert "2026-11-29" in page  # the last bundled run's date
        assert "30 %–55 %" in page
