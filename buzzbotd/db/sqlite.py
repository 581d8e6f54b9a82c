"""SqliteOwner: the database owner on SQLite in WAL mode (state_dir/buzzbotd.db).

SQLite never has two writers to arbitrate inside the daemon ("database is
locked" cannot happen from within): only the owner's thread writes. Each call
runs in a `BEGIN IMMEDIATE` transaction: in WAL mode a deferred transaction
that reads and then writes fails at once with SQLITE_BUSY if anyone else wrote
between, whereas IMMEDIATE takes the write lock up front and waits for it.
Other processes (`buzzbotd status`) read through `open_readonly` (readonly.py);
WAL lets them read while the owner writes. The daemon takes one online backup
a day (backup.py), in steps between which the owner answers pings.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import peewee

from buzzbotd.db import backup, migrations
from buzzbotd.db.owner import (
    WAIT_SLICE_S,
    DatabaseError,
    DatabaseOwner,
    DatabaseTooNew,
    OwnerThreadOnly,
    Unavailable,
    log,
)

PRAGMAS = {
    "journal_mode": "wal",
    # FULL: every commit fsyncs the WAL before it returns, so a ledger move is on
    # disk before the POST it announces (NORMAL syncs only at checkpoints: a power
    # cut could roll back a `sending` row and the slot would be posted again).
    "synchronous": "full",
    "foreign_keys": 1,
    "busy_timeout": int(WAIT_SLICE_S * 1000),
}
# SQLite's primary result codes for "not now": another connection holds the
# lock, the disk is full, a write failed, the file cannot be written.
_LOCKED_CODES = {5: "locked by another process", 6: "locked by another process"}
_WRITE_CODES = {13: "database or disk is full", 10: "disk I/O error",
                8: "the database file is read-only"}


class _OwnedDatabase(OwnerThreadOnly, peewee.SqliteDatabase):
    pass


class SqliteOwner(DatabaseOwner):
    """DatabaseOwner on an SQLite file; backups/ beside it."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.backup_dir = self.path.parent / "backups"

    @property
    def backend(self) -> str:
        return "sqlite"

    @property
    def takes_backups(self) -> bool:
        return True

    def backup(self, today: datetime) -> Path:
        """An online backup into backups/ named by `today` (the daemon's clock);
        see db/backup.py."""
        return self.call(self._backup, today, transaction=False)

    def backup_if_due(self, today: datetime) -> Path | None:
        if backup.path_for(self.backup_dir, today).exists():
            return None
        return self.backup(today)

    def _make_db(self) -> peewee.Database:
        return _OwnedDatabase(str(self.path), pragmas=PRAGMAS, lock_type="IMMEDIATE")

    def _unavailable_reason(self, error: BaseException) -> Unavailable | None:
        return _unavailable_reason(error)

    def _end_failed_transaction(self) -> None:
        """After a failed COMMIT SQLite may or may not have rolled back; the
        next call must start outside any transaction."""
        if self._db.is_closed():
            return
        try:
            if self._db.connection().in_transaction:
                self._db.connection().rollback()
        except sqlite3.Error as e:
            log.warning("rollback after a failed write failed: %s", e)

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
            raise DatabaseTooNew(f"{self.path}: {e}") from None

    def _backup(self, today: datetime) -> Path:
        return backup.write(self._db.connection(), self.backup_dir, today,
                            between_steps=self._answer_pings)

    def _close(self) -> None:
        if not self._db.is_closed():
            try:
                self._db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            except peewee.DatabaseError as e:
                log.warning("WAL checkpoint at close failed: %s", e)
            self._db.close()


def _unavailable_reason(error: BaseException) -> Unavailable | None:
    """Why the database cannot be written now, if that is what `error` says
    (peewee wraps sqlite3's exception; a failed rollback hides it in __context__)."""
    seen: BaseException | None = error
    while seen is not None:
        candidates = [seen, *(a for a in seen.args if isinstance(a, BaseException))]
        for candidate in candidates:
            code = getattr(candidate, "sqlite_errorcode", None)
            if isinstance(code, int):
                primary = code & 0xFF
                if primary in _LOCKED_CODES:
                    return Unavailable(_LOCKED_CODES[primary], waits_inside=True, alert=True)
                if primary in _WRITE_CODES:
                    return Unavailable(f"writes failing ({_WRITE_CODES[primary]})",
                                       waits_inside=False, alert=True)
        seen = seen.__context__
    return None
