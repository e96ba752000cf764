"""`hillsync notify test`: a test message to every configured notification URL."""

from __future__ import annotations

from dataclasses import dataclass

from hillsync.app.context import AppContext
from hillsync.registry import notify_urls


@dataclass(frozen=True)
class TestSend:
    """How the test message fared at one URL (shown without its secret parts)."""

    url: str
    ok: bool
    error: str | None


def notify_test(ctx: AppContext) -> list[TestSend]:
    """Send a test message to every URL of every athlete; empty when none is configured
    (messages then go to the log). A failing URL is reported, never raised."""
    from hillsync.notify import Notifier

    urls = notify_urls(ctx.settings)
    if not urls:
        return []
    return [TestSend(*r) for r in Notifier(urls, clock=ctx.clock).send_test()]
