"""The one error hierarchy of hillsync.

Every error a user can provoke (a bad config, a revoked token, a corrupt file, a network
outage) is a `HillsyncError`: cli.py shows its message on one line and maps it to an exit
code; anything else is a bug and shows a traceback with `-v`.

Messages must never hold a secret: they are printed and logged as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime


class HillsyncError(Exception):
    """Root of every expected failure: show the message, not the traceback."""

    exit_code: int = 1


class ConfigError(HillsyncError):
    """The configuration (file, key, secret reference or command-line usage) is wrong.

    `problems` lists every problem found, each starting with its key path.
    """

    exit_code = 2

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems: tuple[str, ...] = tuple(problems) or (message,)
        super().__init__(message)


class UsageError(ConfigError):
    """The command line asks for something that cannot be done as asked."""


class SourceError(HillsyncError):
    """A source could not be synced; the other sources are unaffected."""

    exit_code = 3

    def __init__(self, message: str, *, source: str = "") -> None:
        self.source = source
        super().__init__(message)


class AuthRequired(SourceError):
    """The account's tokens are missing, revoked or refused: the runner must reconnect.

    `command` is the exact command that reconnects the account.
    """

    def __init__(self, message: str, *, source: str = "", command: str = "") -> None:
        self.command = command
        super().__init__(message, source=source)


class AccessRevoked(AuthRequired):
    """The athlete revoked the application's access: what came only from it is deleted."""


class RateLimited(SourceError):
    """The API's budget is spent; the source is parked until `resume_at` (UTC)."""

    def __init__(self, message: str, *, resume_at: datetime, source: str = "") -> None:
        self.resume_at = resume_at
        super().__init__(message, source=source)


class SourceUnavailable(SourceError):
    """The service could not be reached or answered with a server error, after retries."""


class LockBusy(SourceUnavailable):
    """A lock file is held by another hillsync process beyond the wait allowed: try later."""


class BadActivity(HillsyncError):
    """One activity (a file or an API payload) cannot be read; the others still are."""

    exit_code = 3


class StoreError(HillsyncError):
    """The database cannot be opened, migrated or written."""

    exit_code = 1


class NotifyError(HillsyncError):
    """A notification URL could not be reached or refused the message."""

    exit_code = 3
