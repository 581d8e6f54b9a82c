"""Notifier: talks to systemd (sd_notify).

It sends READY/STATUS/STOPPING/WATCHDOG and is silent without NOTIFY_SOCKET.
What the parts' health is lives in buzzbotd.ops.health; when the watchdog may
be fed, in buzzbotd.runtime.watchdog.
"""

from __future__ import annotations

import logging
import os

import sdnotify

log = logging.getLogger("buzzbotd.notify")


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        environ = dict(os.environ) if environ is None else environ
        self._sd = sdnotify.SystemdNotifier()
        self.enabled = bool(environ.get("NOTIFY_SOCKET"))
        self.watchdog_interval = _watchdog_interval(environ)
        self.last_status = ""

    def _send(self, message: str) -> None:
        if self.enabled:
            # sdnotify encodes as Latin-1 and silently drops a message it cannot
            # encode (a STATUS= with "…" or "→", and READY=1 with it); systemd
            # reads UTF-8, so hand it the UTF-8 bytes spelled as Latin-1.
            self._sd.notify(message.encode("utf-8").decode("latin-1"))

    def ready(self, status: str) -> None:
        self.last_status = status
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        if status != self.last_status:
            self.last_status = status
            self._send(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> None:
        self.last_status = status
        self._send(f"STOPPING=1\nSTATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")


def _watchdog_interval(environ: dict[str, str]) -> float | None:
    """Half of WATCHDOG_USEC in seconds, as sd_watchdog_enabled(3) advises."""
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec), 1) / 2_000_000
    except ValueError:
        return None
