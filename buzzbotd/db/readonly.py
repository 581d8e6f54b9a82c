"""Reading the SQLite database from another process (`buzzbotd status`,
`buzzbotd export`), while the daemon's owner thread writes it (WAL lets both
happen at once) or while the daemon is stopped.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

import peewee

from buzzbotd.db import migrations
from buzzbotd.db.models import database
from buzzbotd.db.owner import DatabaseError, DatabaseTooNew


def open_readonly(path: Path, writer_running: bool = True) -> peewee.SqliteDatabase:
    """A read-only connection for another process (e.g. `buzzbotd status`).

    A WAL database needs its -shm file, which a reader creates if it is
    missing; a member of group buzzbotd cannot (the state dir is 0750), so
    while the daemon is stopped (a clean stop removes -wal and -shm) the file
    is opened `immutable` instead. That is safe only with no writer and no WAL
    left to replay, which `writer_running` and the -wal file's size tell."""
    if not Path(path).exists():
        raise DatabaseError(f"{path}: no database yet (the daemon creates it on its first start)")
    try:
        return _connect_readonly(path, "mode=ro")
    except DatabaseError:
        wal = Path(f"{path}-wal")
        if writer_running or (wal.exists() and wal.stat().st_size > 0):
            raise
    return _connect_readonly(path, "mode=ro&immutable=1")


def _connect_readonly(path: Path, options: str) -> peewee.SqliteDatabase:
    db = peewee.SqliteDatabase(f"file:{quote(str(path))}?{options}", uri=True,
                               pragmas={"query_only": 1, "busy_timeout": 10_000})
    database.initialize(db)
    try:
        db.connect()
        version = migrations.schema_version(db)
    except (peewee.DatabaseError, sqlite3.DatabaseError) as e:
        db.close()
        raise DatabaseError(f"{path}: cannot read the database: {e}") from None
    if version != migrations.LATEST:
        db.close()
        if version > migrations.LATEST:
            raise DatabaseTooNew(f"{path}: schema version {version}, newer than this buzzbotd "
                                 f"knows ({migrations.LATEST}); install the newer buzzbotd "
                                 "again or restore a backup")
        raise DatabaseError(f"{path}: schema version {version}, this buzzbotd reads "
                            f"{migrations.LATEST}; start the daemon once to migrate it")
    return db
