"""Runs `buzzbotd run` as a real process, the way systemd does.

`NotifySocket` binds the unix datagram socket that NOTIFY_SOCKET names and
records every message with its arrival time; `Daemon` starts the process
with it, collects stderr (the journal) line by line, and can wait for a
message or a log line with a deadline (never a bare sleep).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_on

REPO = Path(__file__).resolve().parents[2]


SO_TIMESTAMPNS = 35     # Linux (asm-generic/socket.h); the socket module does not name it


def _sent_at(ancillary: list[tuple[int, int, bytes]]) -> float:
    """The kernel's stamp of a datagram (SCM_TIMESTAMPNS: a struct timespec of the
    wall clock) on the monotonic clock the tests use."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return time.monotonic() - (time.time() - (seconds + nanoseconds / 1e9))
    return time.monotonic()


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        # Each message is stamped by the kernel when the daemon sent it, as systemd
        # would see it, not when this process got round to reading it (a loaded
        # machine delayed that by up to a second: a false watchdog gap).
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.messages: list[tuple[float, str]] = []   # (monotonic, "KEY=value")
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._read, name="notify-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(16))
            except TimeoutError:
                continue
            except OSError:
                return
            now = _sent_at(ancillary)
            with self._cond:
                for line in data.decode().splitlines():
                    self.messages.append((now, line))
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float,
                 after: float = 0.0) -> tuple[float, str]:
        """The first message (arrived after `after`) satisfying predicate."""
        return wait_on(self._cond, lambda: next(
            ((at, line) for at, line in self.messages if at >= after and predicate(line)),
            None), timeout, lambda: f"no matching notify message in {timeout}s; got "
                                    f"{[m for _, m in self.messages][-20:]}")

    def wait_message(self, message: str, timeout: float, after: float = 0.0) -> float:
        return self.wait_for(lambda m: m == message, timeout, after)[0]

    def wait_count(self, message: str, count: int, timeout: float, after: float = 0.0
                   ) -> list[float]:
        """Arrival times of the first `count` copies of `message` after `after`."""
        def times() -> list[float]:
            return [at for at, m in self.messages if m == message and at >= after]
        return wait_on(self._cond, lambda: times()[:count] if len(times()) >= count else None,
                       timeout, lambda: f"{len(times())} of {count} {message!r} in {timeout}s")

    def times_of(self, message: str) -> list[float]:
        with self._cond:
            return [at for at, m in self.messages if m == message]

    def statuses(self) -> list[str]:
        with self._cond:
            return [m[len("STATUS="):] for _, m in self.messages if m.startswith("STATUS=")]

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        self._thread.join(2)


class Daemon:
    """One `python -m buzzbotd <args>` process (run under `wrapper`, e.g. strace, if given)."""

    def __init__(self, config: Path, notify: NotifySocket | None = None,
                 watchdog_usec: int | None = None, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ("run",), prefix: tuple[str, ...] = ()) -> None:
        """`prefix` goes before the python command, e.g. setpriv to run as another user."""
        # The test knobs (BUZZBOTD_TEST_*) come only from `env`, never from ours.
        environ = {k: v for k, v in os.environ.items()
                   if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                                "CREDENTIALS_DIRECTORY", "BUZZBOTD_CONFIG")
                   and not k.startswith("BUZZBOTD_TEST_")}
        environ["PYTHONPATH"] = str(REPO)
        environ["MALLOC_ARENA_MAX"] = "2"      # as the unit sets it
        if notify is not None:
            environ["NOTIFY_SOCKET"] = notify.path
        if watchdog_usec is not None:
            environ["WATCHDOG_USEC"] = str(watchdog_usec)
        environ.update(env or {})
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "buzzbotd", *args, "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=environ, cwd=REPO, text=True)
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._collect, args=(stream,), daemon=True,
                                          name="daemon-output")
                         for stream in (self.proc.stderr, self.proc.stdout)]
        for reader in self._readers:
            reader.start()

    def _collect(self, stream: Any) -> None:
        for line in stream:
            with self._cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        with self._cond:
            return "\n".join(line for _, line in self.lines)

    def wait_log(self, text: str, timeout: float) -> str:
        """The first output line containing `text`."""
        return self.wait_log_any((text,), timeout)

    def wait_log_any(self, texts: tuple[str, ...], timeout: float, after: float = 0.0) -> str:
        """The first output line (printed after `after`) containing any of `texts`."""
        return wait_on(self._cond, lambda: next(
            (line for at, line in self.lines if at >= after and any(t in line for t in texts)),
            None), timeout, lambda: f"no log line with {texts!r} in {timeout}s; log:\n{self.log}",
            ended=lambda: self.proc.poll() is not None and not any(
                r.is_alive() for r in self._readers))

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return rc

    def terminate(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait(10)


def read_sqlite(database: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """`sql`'s rows from a SQLite file, on a read-only connection of this call's own
    (another process's view: what is committed, nothing the daemon holds open)."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def rss_kib(pid: int) -> int:
    """The process's resident memory now (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def write_config(directory: Path, name: str = "buzzbotd.toml", **sections: dict[str, Any]
                 ) -> Path:
    """A config in `directory` with state and lock inside it; X and Telegram off
    unless a section says otherwise, and no HTTP server. Section values override
    the defaults. The price has no fallbacks unless a test gives them: the real
    Coinbase and Kraken are never asked from here."""
    base: dict[str, dict[str, Any]] = {
        "daemon": {"state_dir": str(directory / "state"),
                   "lock_file": str(directory / "run" / "buzzbotd.lock"),
                   "log_level": "info"},
        "price": {"fallbacks": []},
        "x": {"enabled": False},
        "telegram": {"enabled": False},
        "http": {"listen": ""},     # off unless a test asks: parallel daemons, one port
    }
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
    text = ""
    for section, values in base.items():
        text += f"[{section}]\n" + "".join(f"{k} = {toml_value(v)}\n"
                                          for k, v in values.items()) + "\n"
    path = directory / name
    path.write_text(text)
    return path
