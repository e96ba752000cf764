"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    """The folder of test input files (real device files and hand-made tracks)."""
    return DATA
