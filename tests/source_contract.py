"""The SourceContract: what every source promises, as one test class to subclass.

vdirsyncer's StorageTests pattern: the contract's tests are written once, against the
public Source protocol (sources/base.py) only; each source's test module subclasses
`SourceContract` and provides a `world` fixture (a `SourceWorld`: the place the source reads,
which the test can add runs and bad items to, and a way to build the source afresh, as a
restarted process would). DESIGN.md sections 1, 6, 7 and 13 are where the promises come
from: a source yields `Activity` batches with the cursor that follows them, resumes from
any committed batch, rejects bad items with a reason without stopping, never touches the
store, and fetching again from the same state gives the same activities.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Protocol

import grimp
import pytest
import sqlalchemy.orm

from hillsync.model import Activity, Batch
from hillsync.sources.base import Source, SourceState


class SourceWorld(Protocol):
    """The place a source reads from, under the test's control."""

    def source(self) -> Source:
        """A new source object reading this place (as a restarted process builds it)."""
        ...

    def first_state(self) -> SourceState:
        """The state of a first sync (nothing seen, the backfill window open)."""
        ...

    def add_runs(self, count: int) -> list[str]:
        """Put `count` new runs there, newer than any before; their source ids."""
        ...

    def add_bad(self) -> str:
        """Put one item there that the source must reject; the key it is rejected under."""
        ...


def commit(state: SourceState, batch: Batch) -> SourceState:
    """The state after the worker committed `batch` (its cursor and seen items)."""
    return replace(
        state,
        cursor=dict(batch.cursor) if batch.cursor is not None else state.cursor,
        seen={**state.seen, **batch.seen},
    )


def sync(source: Source, state: SourceState) -> tuple[list[Batch], SourceState]:
    """Every batch of one fetch, each committed: (the batches, the state after them)."""
    batches: list[Batch] = []
    for batch in source.fetch(state):
        batches.append(batch)
        state = commit(state, batch)
    return batches, state


def source_ids(batches: list[Batch]) -> list[str]:
    """The source id of every activity in the batches, in order."""
    return [a.source_id for b in batches for a in b.activities]


def essence(activity: Activity) -> tuple[object, ...]:
    """What identifies an activity's content (its profile arrays aside)."""
    return (
        activity.source,
        activity.source_id,
        activity.start_time,
        activity.sport,
        activity.distance_m,
        activity.name,
        activity.reported_gain_m,
        activity.reported_loss_m,
    )


@cache
def _import_graph() -> grimp.ImportGraph:
    return grimp.build_graph("hillsync")


class SourceContract:
    """What every source promises; subclasses provide the `world` fixture."""

    #: Runs put in place for the tests that need several batches.
    runs = 5
    #: How many runs a caught-up poll may yield again: an API source lists an overlap
    #: (late uploads) behind its newest run; a folder knows every file it has read.
    caught_up_repeats = 0

    @pytest.fixture
    def world(self) -> SourceWorld:
        """The subclass's world."""
        raise NotImplementedError("a SourceContract subclass provides the world fixture")

    def test_yields_batches_of_activities(self, world: SourceWorld) -> None:
        """A first sync yields Batch values holding each run once, as Activity values."""
        added = world.add_runs(self.runs)
        source = world.source()
        batches, _ = sync(source, world.first_state())
        assert batches
        assert all(isinstance(b, Batch) for b in batches)
        activities = [a for b in batches for a in b.activities]
        assert all(isinstance(a, Activity) for a in activities)
        assert sorted(source_ids(batches)) == sorted(added)
        assert {a.source for a in activities} == {source.name}
        assert all(a.start_time.tzinfo is not None for a in activities)

    def test_caught_up_poll_yields_nothing_new(self, world: SourceWorld) -> None:
        """After a complete sync, a fetch from its state yields nothing new, and repeats at
        most the overlap it lists behind its newest run."""
        added = world.add_runs(self.runs)
        first, state = sync(world.source(), world.first_state())
        again, _ = sync(world.source(), state)
        assert set(source_ids(again)) <= set(added)
        assert len(source_ids(again)) <= self.caught_up_repeats
        before = {essence(a) for b in first for a in b.activities}
        assert {essence(a) for b in again for a in b.activities} <= before

    def test_new_runs_after_sync(self, world: SourceWorld) -> None:
        """Runs added after a sync arrive at the next fetch from the committed state."""
        world.add_runs(self.runs)
        _, state = sync(world.source(), world.first_state())
        newer = world.add_runs(2)
        batches, _ = sync(world.source(), state)
        assert set(newer) <= set(source_ids(batches))

    def test_resumes_after_interruption(self, world: SourceWorld) -> None:
        """Stopped after its first batch, a new source resumes from that batch's state."""
        added = world.add_runs(self.runs)
        fetch = world.source().fetch(world.first_state())
        first = next(iter(fetch))
        close = getattr(fetch, "close", None)
        if close is not None:
            close()  # the process dies here: only the first batch was committed
        rest, _ = sync(world.source(), commit(world.first_state(), first))
        assert set(source_ids([first, *rest])) == set(added)

    def test_rejects_bad_items_with_reason(self, world: SourceWorld) -> None:
        """A bad item is rejected with a one-line reason; the good runs still arrive."""
        good = world.add_runs(2)
        key = world.add_bad()
        batches, _ = sync(world.source(), world.first_state())
        rejected = {r.key: r.reason for b in batches for r in b.rejected}
        assert key in rejected
        assert rejected[key].strip()
        assert "\n" not in rejected[key]
        assert "Traceback" not in rejected[key]
        assert set(good) <= set(source_ids(batches))

    def test_never_touches_the_store(
        self, world: SourceWorld, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The source's module cannot reach hillsync.store, and a fetch opens no session."""
        source = world.source()
        module = type(source).__module__
        assert not _import_graph().chain_exists(importer=module, imported="hillsync.store")

        def refuse(*_args: object, **_kwargs: object) -> None:
            raise AssertionError("a source opened a database session")

        monkeypatch.setattr(sqlalchemy.orm.Session, "__init__", refuse)
        world.add_runs(2)
        batches, _ = sync(source, world.first_state())
        assert len(source_ids(batches)) == 2

    def test_refetch_is_idempotent(self, world: SourceWorld) -> None:
        """Fetching twice from the same state gives the same activities and cursors."""
        world.add_runs(self.runs)
        one, state_one = sync(world.source(), world.first_state())
        two, state_two = sync(world.source(), world.first_state())
        assert [essence(a) for b in one for a in b.activities] == [
            essence(a) for b in two for a in b.activities
        ]
        assert dict(state_one.seen) == dict(state_two.seen)
        assert _without_rate(state_one.cursor) == _without_rate(state_two.cursor)


def _without_rate(cursor: object) -> object:
    # The rate budget a source keeps in its cursor for `status` is as the API last said.
    if isinstance(cursor, dict):
        return {k: v for k, v in cursor.items() if k != "rate"}
    return cursor


__all__ = ["SourceContract", "SourceWorld", "commit", "source_ids", "sync"]
