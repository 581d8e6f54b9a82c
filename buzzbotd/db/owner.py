"""The database owner: one thread holds the only writing connection.

Every other thread hands it a function and waits for the result, so writes
are serialised in-process and SQLite never has two writers to arbitrate
("database is locked" cannot happen inside the daemon). Each call runs in a
`BEGIN IMMEDIATE` transaction: in WAL mode a deferred transaction that reads
and then writes fails at once with SQLITE_BUSY if anyone else wrote between,
whereas IMMEDIATE takes the write lock up front and waits for it.
Other processes (`buzzbotd status`) read through `open_readonly`; WAL lets
them read while the owner writes.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import peewee

from buzzbotd import faults
from buzzbotd.db import migrations
from buzzbotd.db.models import database

log = logging.getLogger("buzzbotd.db")
T = TypeVar("T")
BACKUPS_KEPT = 7
_STOP = object()

PRAGMAS = {
    "journal_mode": "wal",
    # FULL: every commit fsyncs the WAL before it returns, so a ledger move is on
    # disk before the POST it announces (NORMAL syncs only at checkpoints: a power
    # cut could roll back a `sending` row and the slot would be posted again).
    "synchronous": "full",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
}


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


class DatabaseError(Exception):
    """The database cannot be used (unreadable, corrupt, schema too new…)."""


class NotOwnerThread(RuntimeError):
    """A thread other than the owner tried to open a connection (a bug)."""


class _OwnedDatabase(peewee.SqliteDatabase):
    """Refuses to open a connection in any thread but the owner's."""

    owner_thread: threading.Thread | None = None

    def connect(self, reuse_if_open: bool = False) -> bool:
        if self.owner_thread is not None and threading.current_thread() is not self.owner_thread:
            raise NotOwnerThread(f"thread {threading.current_thread().name} touched the "
                                "database directly; send the work to DatabaseOwner.call()")
        return super().connect(reuse_if_open)


class DatabaseOwner:
    def __init__(self, path: Path, on_beat: Callable[[], None] | None = None) -> None:
        self.path = Path(path)
        self.backup_dir = self.path.parent / "backups"
        self._on_beat = on_beat
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._db = _OwnedDatabase(str(self.path), pragmas=PRAGMAS, lock_type="IMMEDIATE")
        self._thread = threading.Thread(target=self._loop, name="db-owner", daemon=True)

    # -- life cycle ------------------------------------------------------

    def start(self) -> list[int]:
        """Opens the database, checks it and migrates it; returns the migrations applied."""
        self._db.owner_thread = self._thread
        database.initialize(self._db)
        self._thread.start()
        return self.call(self._open, transaction=False)

    def stop(self, timeout: float = 5.0) -> None:
        """Finishes the queued work, checkpoints the WAL and closes."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("database owner did not stop within %.0fs", timeout)

    # -- the interface for other threads --------------------------------

    def submit(self, fn: Callable[..., T], *args: Any, transaction: bool = True) -> Future[T]:
        future: Future[T] = Future()
        if threading.current_thread() is self._thread:
            future.set_result(fn(*args))   # already inside the owner: run in place
            return future
        self._queue.put((future, fn, args, transaction))
        return future

    def call(self, fn: Callable[..., T], *args: Any, transaction: bool = True,
             timeout: float | None = 60.0) -> T:
        """Runs fn(*args) in the owner thread (in a write transaction) and returns its result."""
        return self.submit(fn, *args, transaction=transaction).result(timeout)

    def ping(self) -> Future[None]:
        return self.submit(_nothing, transaction=False)

    def backup(self, today: datetime | None = None) -> Path:
        """An online backup into backups/, keeping the newest BACKUPS_KEPT."""
        return self.call(self._backup, today or datetime.now(UTC), transaction=False)

    # -- inside the owner thread -----------------------------------------

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            faults.maybe_hang("db")
            future, fn, args, transaction = item
            if not future.set_running_or_notify_cancel():
                continue
            committed: list[Callable[[], object]] = []
            try:
                if transaction:
                    _transaction.after_commit = committed
                    with self._db.atomic():
                        result = fn(*args)
                else:
                    result = fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the caller, who decides
                future.set_exception(e)
            else:
                for callback in committed:
                    callback()
                future.set_result(result)
            finally:
                _transaction.after_commit = None
            if self._on_beat:
                self._on_beat()
        self._close()

    def _open(self) -> list[int]:
        try:
            self._db.connect()
            check = self._db.execute_sql("PRAGMA quick_check").fetchone()[0]
        except (peewee.DatabaseError, sqlite3.DatabaseError) as e:
            raise DatabaseError(f"{self.path}: cannot open the database: {e}; move it aside "
                                f"and restore the newest copy from {self.backup_dir}") from None
        if check != "ok":
            raise DatabaseError(f"{self.path}: integrity check failed ({check}); move it aside "
                                f"and restore the newest copy from {self.backup_dir}")
        try:
            return migrations.migrate(self._db)
        except migrations.SchemaTooNew as e:
            raise DatabaseError(f"{self.path}: {e}") from None

    def _backup(self, today: datetime) -> Path:
        self.backup_dir.mkdir(mode=0o750, exist_ok=True)
        target = self.backup_dir / f"buzzbotd-{today:%Y-%m-%d}.db"
        partial = target.with_suffix(".db.partial")
        destination = sqlite3.connect(partial)
        try:
            self._db.connection().backup(destination)
        finally:
            destination.close()
        partial.replace(target)
        for old in sorted(self.backup_dir.glob("buzzbotd-*.db"))[:-BACKUPS_KEPT]:
            old.unlink()
        return target

    def _close(self) -> None:
        if not self._db.is_closed():
            try:
                self._db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            except peewee.DatabaseError as e:
                log.warning("WAL checkpoint at close failed: %s", e)
            self._db.close()


def _nothing() -> None:
    return None


def open_readonly(path: Path) -> peewee.SqliteDatabase:
    """A read-only connection for another process (e.g. `buzzbotd status`)."""
    if not Path(path).exists():
        raise DatabaseError(f"{path}: no database yet (the daemon creates it on its first start)")
    db = peewee.SqliteDatabase(f"file:{quote(str(path))}?mode=ro", uri=True,
                               pragmas={"query_only": 1, "busy_timeout": 10_000})
    database.initialize(db)
    try:
        db.connect()
        version = migrations.schema_version(db)
    except (peewee.DatabaseError, sqlite3.DatabaseError) as e:
        raise DatabaseError(f"{path}: cannot read the database: {e}") from None
    if version != migrations.LATEST:
        raise DatabaseError(f"{path}: schema version {version}, this buzzbotd reads "
                            f"{migrations.LATEST}; start the daemon once to migrate it")
    return db
