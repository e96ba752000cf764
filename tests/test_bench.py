"""`python -m bench --quick`: the benchmark table's shape (never its timings)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

#: Every figure DESIGN.md section 12 asks for, by a word of its name, with its target.
EXPECTED = [
    ("GPX runs into SQLite", "<= 0.7x"),
    ("FIT runs into SQLite", "<= 0.8x"),
    ("peak RSS, import", "<= 1.1x"),
    ("quiet poll", "<= 0.1 s"),
    ("`activities --json`", "<= 0.5 s"),
    ("`balance`", "<= 0.5 s"),
    ("`status`", "<= 0.5 s"),
    ("`--help`", "<= 0.15 s"),
    ("-point GPX", "<= 150 MB"),
    ("classify", "<= 1.3x"),
    ("classify", "-"),
    ("Strava requests per activity", "<= 0.2 req"),
    ("peak RSS", "<= 60 MB"),
    ("CPU per minute", "< 0.5 s"),
]
#: With a PostgreSQL to measure on (issue 14's figure): 2 and 4 workers against one.
EXPECTED_WORKERS = [("by 2 workers", "-"), ("by 4 workers", "<= 0.4x")]


class TestBenchTable:
    """The quick benchmark prints one Markdown table with every figure and its target."""

    def test_quick_table_has_every_row(self, tmp_path: Path) -> None:
        """Every expected row appears once, in order, with six cells and a met column."""
        env = dict(os.environ, TMPDIR=str(tmp_path))
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *sys.path])
        proc = subprocess.run(
            [sys.executable, "-m", "bench", "--quick"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = [line for line in proc.stdout.splitlines() if line.startswith("|")]
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        assert header == ["figure", "hillsync", "reference (same run)", "ratio", "target", "met"]
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
        expected = list(EXPECTED)
        if os.environ.get("HILLSYNC_TEST_DATABASE_URL", "").startswith("postgresql"):
            expected += EXPECTED_WORKERS
        assert len(rows) == len(expected)
        for cells, (word, target) in zip(rows, expected, strict=True):
            assert len(cells) == 6, cells
            assert word in cells[0], (word, cells)
            assert cells[4] == target, (target, cells)
            assert cells[5] in ({"-"} if target == "-" else {"yes", "**no**"}), cells
        assert "target(s) not met" in proc.stdout
