"""Leadership among daemons sharing one PostgreSQL database (SPEC "Database:
SQLite or PostgreSQL, and a standby"): exactly one leader acts (polls
Telegram, posts, sends); the others stand by.

The leader holds a session-level `pg_try_advisory_lock(LOCK_KEY)` on a
connection of its own (not the owner's, not pooled: the lock lives exactly
as long as that session). The server drops the session, and so the lock,
when the leader's process dies (at once) or its network goes (keepalives:
~3 s, buzzbotd.db.postgres). A standby tries the lock every HEARTBEAT_S;
when it gets it, it bumps the leadership row's `epoch` and only then starts
work, catching up like a restart.

Before it acts, a new leader waits TAKEOVER_WAIT_S unless the old leader is
known dead (a process of this host that is gone): an old leader cut off from
the database keeps acting until its own heartbeat misses (LOSE_AFTER_S after
its last answer, which came before the server dropped its session), and two
getUpdates on one token, even for a second, is what the standby must never
cause. The epoch is bumped at once, so the old leader commits nothing more.

Fencing: every write the leader's owner makes checks, in its own
transaction, that the row still holds its epoch (db.postgres.check_epoch),
so a leader that was cut off and has not noticed yet cannot commit a post.
It notices within LOSE_AFTER_S: the heartbeat on the lock's connection must
answer, and a watcher thread does not wait for a hung socket. The heartbeat
proves the session and the epoch, which live in the server's memory, so its
commits do not wait for the server's disk (synchronous_commit off on this
connection; the takeover's epoch bump alone waits): a WAL fsync stalled for
seconds (a busy disk, an SD card) slows the server, it does not cut a leader
off, and must not make it give up.

A leader that loses leadership stops acting at once by ending its process
(exit 1: systemd restarts it, and it comes back as a standby): nothing it
had in flight can act afterwards, and the ledger already settles a killed
leader's work (a `sending` row is looked up on X).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from buzzbotd.clock import Clock
from buzzbotd.db.models import utc_text
from buzzbotd.db.pgdriver import NotLeader, connect

log = logging.getLogger("buzzbotd.leadership")
LOCK_KEY = 0x6275_7A7A_0002      # "buzz" + 2; migrations use …0001
HEARTBEAT_S = 0.5
LOSE_AFTER_S = 3.0       # a leader without an answer this long stops (SPEC: within 5 s)
RECONNECT_S = 1.0
# An old leader that lost its session stops within LOSE_AFTER_S of its last answer
# (plus its watcher's 0.2 s tick): the new one starts acting only after that.
TAKEOVER_WAIT_S = LOSE_AFTER_S + 0.5


class Leadership:
    def __init__(self, url: str, password: str | None, on_gained: Callable[[], None],
                 on_lost: Callable[[str], None], wall: Clock) -> None:
        self.url, self._password = url, password
        self.on_gained, self.on_lost = on_gained, on_lost
        self.wall = wall
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.name = f"{self.host}:{self.pid}"
        self.epoch: int | None = None
        self._act_at: float | None = None     # monotonic time from which a new leader acts
        self._acting = False
        self.leader: tuple[str, int, str] | None = None      # (host, pid, since) seen last
        self._last_ok = time.monotonic()
        self._lost = False
        self._stop = threading.Event()
        self._conn: Any = None
        self._thread = threading.Thread(target=self._loop, name="leadership", daemon=True)
        self._watch = threading.Thread(target=self._watcher, name="leadership-watch",
                                       daemon=True)

    # -- for the daemon ------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.epoch is not None and self._acting and not self._lost

    def fence(self) -> int:
        """The owner's check before each write: our epoch, or NotLeader."""
        if self.epoch is None:
            raise NotLeader("this daemon is a standby: it writes nothing but its own presence")
        if self._lost or time.monotonic() - self._last_ok > LOSE_AFTER_S:
            raise NotLeader("this daemon lost its leadership session; nothing committed")
        return self.epoch

    def start(self) -> None:
        """Connects and makes the first try at once (a lone daemon leads before READY)."""
        try:
            self._connect()
            self._beat()
        except Exception as e:  # noqa: BLE001 - the loop keeps trying
            log.warning("leadership: cannot reach PostgreSQL yet: %s", e)
            self._drop()
        self._thread.start()
        self._watch.start()

    def stop(self) -> None:
        self._stop.set()
        self._drop()

    def status_line(self) -> str:
        if self.is_leader:
            return "leader"
        if self.epoch is not None and not self._lost:
            return (f"taking over (epoch {self.epoch}): acting once the old leader "
                    "has surely stopped")
        if self.leader and self.leader[1]:
            host, pid, since = self.leader
            return f"standby: leader {host} (pid {pid}) since {since}"
        return "standby: no leader seen yet"

    # -- the threads -----------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if self._conn is None:
                    self._connect()
                self._beat()
                self._act_when_due()
            except NotLeader as e:
                self._lose(str(e))
            except Exception as e:  # noqa: BLE001 - a lost connection: lose or retry
                self._drop()
                if self.epoch is not None:
                    self._lose(f"the leadership session failed: {e}")
                else:
                    log.warning("leadership: PostgreSQL unreachable (%s); standby keeps trying",
                                str(e).strip().splitlines()[0] if str(e).strip() else e)
                    self._stop.wait(RECONNECT_S)

    def _watcher(self) -> None:
        """A heartbeat stuck on a silent socket must not keep a cut-off leader acting."""
        while not self._stop.wait(0.2):
            if self.epoch is not None and time.monotonic() - self._last_ok > LOSE_AFTER_S:
                self._lose(f"no answer from PostgreSQL for {LOSE_AFTER_S:.0f}s")

    def _connect(self) -> None:
        conn = connect(self.url, self._password)
        conn.execute("SET synchronous_commit = off")      # see the module's doc
        self._conn = conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as e:  # noqa: BLE001 - it is gone either way
                log.debug("closing the leadership connection: %s", e)

    def _beat(self) -> None:
        conn = self._conn
        now = utc_text(self.wall())
        if self.epoch is None:
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]:
                with conn.transaction():
                    conn.execute("SET LOCAL synchronous_commit = on")  # durable, then act
                    old = conn.execute("SELECT host, pid FROM leadership WHERE id = 1"
                                       ).fetchone()
                    epoch = conn.execute(
                        "UPDATE leadership SET epoch = epoch + 1, host = %s, pid = %s, "
                        "since = %s WHERE id = 1 RETURNING epoch",
                        (self.host, self.pid, now)).fetchone()[0]
                self._last_ok = time.monotonic()
                self.epoch = epoch
                self.leader = (self.host, self.pid, now)
                wait = 0.0 if old is None or self._gone(old[0], old[1]) else TAKEOVER_WAIT_S
                self._act_at = time.monotonic() + wait
                if wait:
                    log.warning("leadership: took the lock (epoch %d); acting in %.1fs, once "
                                "the old leader %s (pid %s) has surely stopped", epoch, wait,
                                old[0], old[1])
                self._presence(conn, now)
                return
            row = conn.execute("SELECT host, pid, since FROM leadership WHERE id = 1").fetchone()
            self.leader = (row[0], row[1], row[2]) if row else None
        else:
            row = conn.execute("SELECT epoch FROM leadership WHERE id = 1").fetchone()
            if row is None or row[0] != self.epoch:
                raise NotLeader(f"the leadership row moved to epoch {row and row[0]}")
            self._last_ok = time.monotonic()
        self._presence(conn, now)

    def _gone(self, host: str | None, pid: int | None) -> bool:
        """Whether the old leader cannot act: none, or a process of this host that
        is gone (a zombie counts: a kill -9'd process awaiting its parent)."""
        if not pid or not host:
            return True
        if host != self.host:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")

    def _act_when_due(self) -> None:
        if self._acting or self._act_at is None or time.monotonic() < self._act_at:
            return
        self._acting = True
        log.warning("leadership: this daemon is the leader now (epoch %d); catching up",
                    self.epoch)
        self.on_gained()

    def _presence(self, conn: Any, now: str) -> None:
        role = "leader" if self.is_leader else "standby"
        conn.execute("INSERT INTO daemon_node (name, host, pid, role, seen_at) "
                     "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                     "role = EXCLUDED.role, seen_at = EXCLUDED.seen_at",
                     (self.name, self.host, self.pid, role, now))

    def _lose(self, reason: str) -> None:
        # stop() closes the session under a heartbeat that may be in flight: its
        # error is the daemon's own clean stop, not a lost leadership (exit 1).
        if self._lost or self._stop.is_set():
            return
        self._lost = True
        log.error("leadership lost: %s; stopping at once (a standby takes over)", reason)
        self.on_lost(reason)
