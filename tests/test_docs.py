"""The README and docs/ link only to files a checkout has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


class TestLinks:
    """Every relative link in the README and docs/ names a file of the repository."""

    @pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
    def test_relative_links_resolve(self, doc: Path) -> None:
        """No link leaves the checkout (../shared) or names a missing file."""
        targets = [t for t in LINK.findall(doc.read_text()) if "://" not in t]
        for target in targets:
            resolved = (doc.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), f"{doc.name} links outside: {target}"
            assert resolved.exists(), f"{doc.name} links to a missing file: {target}"

    def test_docs_are_linked_from_the_readme(self) -> None:
        """The architecture and the reference are reachable from the README."""
        readme = (ROOT / "README.md").read_text()
        assert "docs/architecture.md" in readme
        assert "docs/reference.md" in readme
