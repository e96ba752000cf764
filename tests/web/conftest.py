"""Fixtures of the web tests: the sample runs synced once, a site around a copy of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from web.websupport import Site, sync_samples


@pytest.fixture(scope="session")
def synced_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample runs synced once per test session (each test works on a copy)."""
    return sync_samples(tmp_path_factory.mktemp("web-sync"))


@pytest.fixture
def site(tmp_path: Path, synced_db: Path) -> Iterator[Site]:
    """A site over a fresh copy of the synced sample runs."""
    s = Site(tmp_path, synced_db)
    yield s
    s.db.close()
