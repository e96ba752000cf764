"""Reading files in a process pool, in order, with a bounded number in flight.

Parsing is most of a folder import (the per-point loop over the XML tree, fitdecode's
frames), and it holds the GIL: threads would not help, processes do. The results come back
in the order of the input, so the batches, their cursor and what a crash leaves behind are
exactly those of a serial import; the one writer stays in the calling process. At most
`window` results wait at a time, so the memory of an import stays flat whatever the number
of files.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor


class Mapper(Protocol):
    """Maps `fn` over items in order, lazily: the builtin `map`, or a pool's ordered map."""

    def __call__[A, R](self, fn: Callable[[A], R], items: Iterable[A], /) -> Iterator[R]: ...


#: Fewer items than this are read in the calling process: a pool costs a fork per worker.
MIN_ITEMS_FOR_POOL = 8


def serial_map[A, R](fn: Callable[[A], R], items: Iterable[A], /) -> Iterator[R]:
    """The builtin map, typed as a Mapper."""
    return map(fn, items)


def ordered_map[A, R](
    executor: ProcessPoolExecutor, fn: Callable[[A], R], items: Iterable[A], window: int
) -> Iterator[R]:
    """fn over items in the pool, yielded in input order, at most `window` in flight.

    Raises whatever fn raises (it should return its failures instead, to keep the order).
    """
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(executor.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


#: How often a pool worker checks that the process that started it is still alive.
PARENT_CHECK_S = 0.5


def _worker_init(parent: int) -> None:
    """In each pool worker: leave Ctrl-C to the parent, and die with it.

    A worker's pipes to the parent are shared with its siblings, so a parent killed with
    SIGKILL would never show them an end of file: without this they would wait forever.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@contextmanager
def pool_mapper(workers: int, *, window_per_worker: int = 4) -> Iterator[Mapper]:
    """A Mapper backed by `workers` processes (the builtin map for one worker).

    The pool is forked (the parent's imports are reused, nothing is pickled but the
    items and the results) and shut down on exit, unfinished work cancelled. A killed
    parent leaves no worker behind: each exits within PARENT_CHECK_S of its death.
    """
    if workers <= 1:
        yield serial_map
        return
    # Here, not at the top: a quiet poll (nothing to read) never needs them.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    executor = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )
    try:

        def mapper[A, R](fn: Callable[[A], R], items: Iterable[A], /) -> Iterator[R]:
            return ordered_map(executor, fn, items, workers * window_per_worker)

        yield mapper
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
