"""The one retry policy for transient failures (5xx answers, timeouts) inside one sync.

Bounded exponential backoff with full jitter (tenacity). The policy is passed in to every
source, so tests use `no_wait` and never sleep, and the daemon makes it interruptible
(`interruptible`): a stop request ends the retries and cuts the wait short.
"""

from __future__ import annotations

from collections.abc import Callable

import tenacity

#: Attempts of one request, the first included.
ATTEMPTS = 4
#: The longest single wait between two attempts, in seconds.
MAX_WAIT_S = 20.0


def default_retrying() -> tenacity.Retrying:
    """A fresh policy: 4 attempts, random exponential waits up to 20 s, the last error
    re-raised. Raises nothing."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_random_exponential(multiplier=1, max=MAX_WAIT_S),
        reraise=True,
    )


def no_wait() -> tenacity.Retrying:
    """The same attempts without any wait (tests, and sources that must not wait)."""
    return default_retrying().copy(wait=tenacity.wait_none(), sleep=lambda _s: None)


def interruptible(
    base: Callable[[], tenacity.Retrying],
    *,
    stopping: Callable[[], bool],
    sleep: Callable[[float], None],
) -> Callable[[], tenacity.Retrying]:
    """`base`, made to stop once `stopping()` is true and to wait through `sleep` (which a
    daemon cuts short on a signal and uses to feed its watchdog). Raises nothing."""

    def make() -> tenacity.Retrying:
        policy = base()
        base_stop = policy.stop

        def stop(state: tenacity.RetryCallState) -> bool:
            return stopping() or bool(base_stop(state))

        return policy.copy(stop=stop, sleep=sleep)

    return make
