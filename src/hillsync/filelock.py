"""One lock helper: an exclusive lock file, taken without blocking, given up after a timeout.

A process that waits for a lock must still obey SIGTERM within seconds: the lock is tried
without blocking, again every `poll_s` (through the `sleep` passed in, which a daemon cuts
short on a signal), until `timeout_s` has passed or `stop()` asks to give up.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from hillsync.errors import HillsyncError


class LockBusy(HillsyncError):
    """Another process holds the lock (after the timeout, or a stop request)."""


@contextlib.contextmanager
def exclusive(
    path: Path,
    *,
    timeout_s: float = 0.0,
    poll_s: float = 0.1,
    stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created 0600) for the `with` block.

    Raises LockBusy when another process holds it past `timeout_s` (0: do not wait) or
    when `stop()` becomes true while waiting; OSError when the file cannot be opened.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stop() or monotonic() >= deadline:
                    raise LockBusy(str(path)) from None
                sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
