"""The interface every source implements.

A source reads activities from one place (a folder, an account) and yields them in
batches; the worker stores each batch together with the cursor that follows it. A source
never touches the database: what it needs to know of earlier syncs arrives in `SourceState`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from hillsync.model import Batch


@dataclass(frozen=True)
class SourceState:
    """What the worker knows of a source from earlier syncs.

    `cursor` is what the source last returned in a `Batch` (empty at the first sync).
    `seen` maps item keys to fingerprints already handled (a folder's files).
    `since` is the earliest start time to fetch at a first sync or with `--since`.
    `full` asks for the whole window to be listed again (edits and deletions).
    `newest_start` is the newest start time stored for this source, if any.
    """

    since: datetime
    cursor: Mapping[str, Any] = field(default_factory=dict)
    seen: Mapping[str, str] = field(default_factory=dict)
    full: bool = False
    newest_start: datetime | None = None


class Source(Protocol):
    """A place activities come from."""

    @property
    def name(self) -> str:
        """The source's name: `strava`, `garmin`, `folder`, a folder's own name."""
        ...

    @property
    def kind(self) -> str:
        """`strava`, `garmin` or `folder`."""
        ...

    def fetch(self, state: SourceState) -> Iterator[Batch]:
        """Yield batches of new or changed activities since `state`.

        Raises AuthRequired, RateLimited or SourceUnavailable when the source cannot go on;
        the batches yielded before the error have been committed and stay.
        """
        ...
