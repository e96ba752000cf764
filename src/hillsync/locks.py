"""The one lock helper: an exclusive advisory file lock that never blocks for long.

A lock is tried without blocking and, while another process holds it, tried again until a
short timeout; then `LockBusy` is raised, so a caller (a source refreshing tokens, a sync
beside the daemon) gives up for this poll instead of hanging a shutdown. The waiting goes
through the `sleep` and `monotonic` passed in, so tests never sleep.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hillsync.errors import LockBusy

#: How long a lock is waited for by default: long enough for another process's token
#: refresh (one HTTP request), far below systemd's stop timeout.
DEFAULT_TIMEOUT_S = 5.0
#: How often a held lock is tried again while waiting.
POLL_S = 0.05


@contextmanager
def file_lock(
    path: Path,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    what: str = "",
    stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created mode 0600, its folder 0700) for the block.

    `timeout_s` 0 tries once. `what` names the locked thing in the error ("strava tokens").
    `stop()` turning true gives up waiting at once (a daemon asked to shut down).
    Raises LockBusy when another process holds the lock beyond the timeout, OSError when
    the lock file cannot be created.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = monotonic() + max(0.0, timeout_s)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = deadline - monotonic()
                if left <= 0 or stop():
                    raise LockBusy(
                        f"{what or path.name} is in use by another hillsync process: will retry"
                    ) from None
                sleep(min(POLL_S, left))
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
