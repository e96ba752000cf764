"""The few lines of systemd's notify protocol (sd_notify), without a dependency.

A service of Type=notify tells systemd READY=1, WATCHDOG=1, STATUS=... and STOPPING=1 by
datagrams on the socket named by $NOTIFY_SOCKET. Outside systemd nothing is sent.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)


class SystemdNotifier:
    """Sends sd_notify messages when $NOTIFY_SOCKET is set; does nothing otherwise."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # an abstract socket
        self._address = address or None
        usec = environ.get("WATCHDOG_USEC", "")
        self.watchdog_s: float | None = int(usec) / 1e6 if usec.isdigit() and int(usec) else None
        # systemd names the process the watchdog is meant for; a child that inherited the
        # variables must not ping on its parent's behalf (sd_watchdog_enabled does the same).
        pid = environ.get("WATCHDOG_PID", "")
        if pid.isdigit() and int(pid) != os.getpid():
            self.watchdog_s = None
        self._last_ping: float | None = None

    @property
    def enabled(self) -> bool:
        """True under systemd (a notify socket was given)."""
        return self._address is not None

    def send(self, *lines: str) -> None:
        """Send one datagram of `KEY=value` lines; a failure is logged, never raised."""
        if self._address is None:
            return
        payload = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(payload)
        except OSError as exc:
            log.warning("sd_notify failed", error=str(exc))

    def ready(self, status: str) -> None:
        """The service is up: the database is open and migrated."""
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        """A one-line summary shown by `systemctl status`."""
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        """Still alive; pings closer together than a tenth of the period are dropped."""
        if self.watchdog_s is None:
            return
        now = time.monotonic()
        if self._last_ping is not None and now - self._last_ping < self.watchdog_s / 10:
            return
        self._last_ping = now
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        """Shutting down."""
        self.send("STOPPING=1", "STATUS=stopping")

    def reloading(self) -> None:
        """Reloading the configuration; READY=1 follows when done.

        MONOTONIC_USEC lets systemd (253+, Type=notify-reload) match this to the SIGHUP it sent.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the config")
