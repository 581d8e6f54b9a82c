"""The database owner: one thread holds the only writing connection.

Every other thread hands it a function and waits for the result, so writes
are serialised in-process; each call is one transaction. This module is the
backend-neutral part (the queue, the thread, the retries); SqliteOwner
(sqlite.py) and PostgresOwner (postgres.py) open, classify and close.

When the database cannot take a write for a while (another process holds its
lock, e.g. an operator's `sqlite3` shell in `BEGIN EXCLUSIVE`, the disk is
full, the server is out of reach), the owner keeps the call and retries it
(busy-timeout slices for a lock, every WRITE_RETRY_S otherwise), answering
pings between tries (the watchdog sees it degraded, not hung) and telling the
health registry, as the part "database", what its error's code says (SQLite's
result code, PostgreSQL's SQLSTATE: `_unavailable_reason`). A call is only
retried whole, its transaction rolled back, so a retry repeats nothing (owner
functions are pure database work; anything else goes through `after_commit`);
one not written within GIVE_UP_S fails with DatabaseUnavailable.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from buzzbotd import testhooks
from buzzbotd.db.models import database
from buzzbotd.ops.health import HEALTH, Health
from buzzbotd.ops.metrics import METRICS
from buzzbotd.runtime.throttle import KeyedThrottle

if TYPE_CHECKING:
    import peewee

    from buzzbotd.clock import Clock

log = logging.getLogger("buzzbotd.db")
T = TypeVar("T")
_STOP = object()
_PING = object()
# One try at the write lock waits this long inside SQLite (a release is seen within
# ~50 ms); well under the watchdog's ping timeout (0.5 s at least): pings wait for it.
WAIT_SLICE_S = 0.2
WRITE_RETRY_S = 0.5           # between tries of a write that failed (disk full)
# A call waits this long for a database it cannot write: well past the 120 s an
# outside lock may last (SPEC), short of a slot job's grace period.
GIVE_UP_S = 300.0
CALL_TIMEOUT_S = GIVE_UP_S + 60.0   # callers wait for the owner's answer, not less
PART = "database"           # its name in the health registry
LOG_EVERY_S = 60.0            # a lasting condition is logged once a minute, not per try


class Unavailable(NamedTuple):
    """Why the database cannot take a write now, as the error's code says."""
    reason: str
    waits_inside: bool      # the database waits itself (SQLite's busy_timeout): no pause
    alert: bool             # the admins hear of it (a lock, failing writes), not of a retry


_transaction = threading.local()     # .after_commit: the running call's callbacks


def after_commit(callback: Callable[[], object]) -> None:
    """Inside an owner call: runs `callback` once the call's transaction has
    committed, and never if it rolls back (e.g. a journal line about a row).
    Outside a transaction it runs at once."""
    pending = getattr(_transaction, "after_commit", None)
    if pending is None:
        callback()
    else:
        pending.append(callback)


class Election(Protocol):
    """The leadership among daemons sharing a database (PostgreSQL: db/leadership.py)."""

    @property
    def is_leader(self) -> bool: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def status_line(self) -> str: ...


class DatabaseError(Exception):
    """The database cannot be used (unreadable, corrupt, schema too new…)."""


class DatabaseTooNew(DatabaseError):
    """The database was written by a newer buzzbotd: a restart cannot fix that
    (exit 78, which the unit does not restart on), a newer buzzbotd or a backup can."""


class DatabaseUnavailable(DatabaseError):
    """A call gave up: the database could not be written for GIVE_UP_S."""


class NotOwnerThread(RuntimeError):
    """A thread other than the owner tried to open a connection (a bug)."""


class OwnerThreadOnly:
    """A peewee Database mixin: refuses to open a connection in any thread but the owner's."""

    owner_thread: threading.Thread | None = None

    def connect(self, reuse_if_open: bool = False) -> bool:
        if self.owner_thread is not None and threading.current_thread() is not self.owner_thread:
            raise NotOwnerThread(f"thread {threading.current_thread().name} touched the "
                                "database directly; send the work to DatabaseOwner.call()")
        return super().connect(reuse_if_open)  # type: ignore[misc]


class DatabaseOwner:
    """The backend-neutral owner: its queue, its thread, the retries. A backend
    (SqliteOwner, PostgresOwner) says how to open, classify errors and close."""

    def __init__(self, path: Path, on_beat: Callable[[], None] | None = None,
                 health: Health = HEALTH) -> None:
        """`health` hears of the part "database": degraded while writes wait (e.g.
        "locked by another process"), failing while calls fail for a reason the
        database gives; recovered and cleared when they work again."""
        self.path = Path(path)
        self._on_beat = on_beat
        self._health = health
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pings: list[Future[None]] = []
        self._pings_lock = threading.Lock()
        self._stopping = threading.Event()
        self._unavailable: tuple[str, float] | None = None   # (reason, since) monotonic
        self._still_logged = KeyedThrottle(LOG_EVERY_S)   # "still waiting" lines
        self._db = self._make_db()
        self._thread = threading.Thread(target=self._loop, name="db-owner", daemon=True)

    # -- life cycle ------------------------------------------------------

    def start(self) -> list[int]:
        """Opens the database, checks it and migrates it; returns the migrations applied."""
        self._db.owner_thread = self._thread
        database.initialize(self._db)
        self._thread.start()
        # Retried like a write: an operator's lock at start delays it, no more.
        return self._enqueue(self._open, (), transaction=False, retry=True).result(CALL_TIMEOUT_S)

    def stop(self, timeout: float = 5.0) -> None:
        """Finishes the queued work, checkpoints the WAL and closes."""
        if not self._thread.is_alive():
            return
        self._stopping.set()        # a call waiting for the database gives up now
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("database owner did not stop within %.0fs", timeout)

    # -- the interface for other threads --------------------------------

    def submit(self, fn: Callable[..., T], *args: Any, transaction: bool = True,
               fenced: bool = True) -> Future[T]:
        """Queues fn(*args) for the owner thread (a transaction is retried while the
        database cannot be written); `fenced=False`: no check of the leadership."""
        return self._enqueue(fn, args, transaction=transaction, retry=transaction)

    def _enqueue(self, fn: Callable[..., T], args: tuple[Any, ...], transaction: bool,
                 retry: bool) -> Future[T]:
        future: Future[T] = Future()
        if threading.current_thread() is self._thread:
            future.set_result(fn(*args))   # already inside the owner: run in place
            return future
        self._queue.put((future, fn, args, transaction, retry, time.monotonic() + GIVE_UP_S))
        return future

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in the owner thread (a write transaction), awaited from a loop."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args), which only reads, awaited from an event loop: not fenced, so
        a standby answers what the leader wrote (/health, /api/status, the page)."""
        return await asyncio.wrap_future(self.submit(fn, *args, fenced=False))

    def call(self, fn: Callable[..., T], *args: Any, transaction: bool = True,
             timeout: float | None = CALL_TIMEOUT_S, fenced: bool = True) -> T:
        """Runs fn(*args) in the owner thread (in a write transaction) and returns its result."""
        future = self.submit(fn, *args, transaction=transaction, fenced=fenced)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()     # never run later for a caller that gave up
            raise

    def ping(self) -> Future[None]:
        """Answered when the owner reaches it, or while it waits for the database."""
        future: Future[None] = Future()
        with self._pings_lock:
            self._pings.append(future)
        self._queue.put(_PING)
        return future

    def unavailable(self) -> tuple[str, float] | None:
        """(why writes wait, for how long), or None."""
        state = self._unavailable
        return None if state is None else (state[0], time.monotonic() - state[1])

    # -- inside the owner thread -----------------------------------------

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            testhooks.maybe_hang("db")
            if item is _PING:
                self._answer_pings()
                continue
            future, fn, args, transaction, retry, give_up_at = item
            if not future.set_running_or_notify_cancel():
                continue
            self._run(future, fn, args, transaction, give_up_at if retry else 0.0)
            if self._on_beat:
                self._on_beat()
        self._answer_pings()
        self._close()

    def _run(self, future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...],
             transaction: bool, give_up_at: float) -> None:
        """Runs one call, again while the database cannot be written, until `give_up_at`."""
        while True:
            committed: list[Callable[[], object]] = []
            started = time.monotonic()
            try:
                if transaction:
                    _transaction.after_commit = committed
                    with self._transaction(fn):
                        result = fn(*args)
                else:
                    result = fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the caller, who decides
                self._end_failed_transaction()
                METRICS.observe("db_call_seconds", time.monotonic() - started)
                why = self._unavailable_reason(e)
                if why is not None and why.alert:
                    self._health.problem(PART, why.reason)
                if why is None or not give_up_at:
                    future.set_exception(e)
                    return
                reason = why.reason
                if time.monotonic() >= give_up_at or self._stopping.is_set():
                    waited = self.unavailable()
                    future.set_exception(DatabaseUnavailable(
                        f"{self.path}: {reason} for {waited[1] if waited else 0:.0f}s; "
                        "gave up on this write"))
                    return
                self._wait_for_database(reason, locked=why.waits_inside)
                continue
            finally:
                _transaction.after_commit = None
            METRICS.observe("db_call_seconds", time.monotonic() - started)
            self._health.clear(PART)
            self._database_available()
            for callback in committed:
                callback()
            future.set_result(result)
            return

    def _transaction(self, fn: Callable[..., Any]) -> Any:
        """The context of the write call `fn` (PostgreSQL adds its fencing check)."""
        return self._db.atomic()

    # -- what each backend says (sqlite.py, postgres.py) --------------------

    @property
    def backend(self) -> str:
        """The backend's name: "sqlite" or "postgresql"."""
        raise NotImplementedError

    @property
    def takes_backups(self) -> bool:
        """Whether the daemon backs this database up itself (backup_if_due)."""
        return False

    def backup_if_due(self, today: datetime) -> Path | None:
        """Today's backup, if it is not taken yet: its path, else None."""
        raise NotImplementedError(f"{self.backend} is backed up by its own tools")

    def leadership(self, on_gained: Callable[[], None], on_lost: Callable[[str], None],
                   wall: Clock) -> Election | None:
        """The election among the daemons on this database, fencing this owner's
        writes; None where there is only ever one daemon (SQLite: the pid lock)."""
        return None

    def _make_db(self) -> peewee.Database:
        raise NotImplementedError

    def _open(self) -> list[int]:
        """In the owner thread: connects, checks, migrates."""
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _unavailable_reason(self, error: BaseException) -> Unavailable | None:
        """Why the database cannot be written now, if that is what `error` says."""
        raise NotImplementedError

    def _end_failed_transaction(self) -> None:
        """The next call must start outside any transaction."""
        raise NotImplementedError

    def _wait_for_database(self, reason: str, locked: bool) -> None:
        """One pause before the next try, answering pings; logs once a minute."""
        now = time.monotonic()
        if self._unavailable is None or self._unavailable[0] != reason:
            self._unavailable = (reason, now)
            self._still_logged.note(reason)
            self._health.degrade(PART, reason)
            log.error("database %s: %s; waiting, each write is retried (up to %.0fs) and "
                      "nothing is lost or repeated", self.path, reason, GIVE_UP_S)
        elif self._still_logged.allow(reason):
            log.error("database %s: still %s after %.0fs; waiting", self.path, reason,
                      now - self._unavailable[1])
        self._answer_pings()
        if not locked:       # a lock is waited for inside SQLite (busy_timeout)
            deadline = now + WRITE_RETRY_S
            while not self._stopping.wait(min(WAIT_SLICE_S, max(deadline - time.monotonic(),
                                                                0))):
                self._answer_pings()
                if time.monotonic() >= deadline:
                    break

    def _database_available(self) -> None:
        if self._unavailable is not None:
            reason, since = self._unavailable
            self._unavailable = None
            self._health.recover(PART)
            log.warning("database %s: writes work again after %.1fs (%s)", self.path,
                        time.monotonic() - since, reason)

    def _answer_pings(self) -> None:
        with self._pings_lock:
            pings, self._pings = self._pings, []
        for ping in pings:
            if ping.set_running_or_notify_cancel():
                ping.set_result(None)

