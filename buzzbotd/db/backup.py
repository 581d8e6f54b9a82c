"""SQLite backups: one online copy a day into backups/, the newest BACKUPS_KEPT kept.

Taken by the database owner's thread (DatabaseOwner.backup) through SQLite's
online backup API, PAGES_PER_STEP pages at a time: between steps the owner
answers the watchdog's pings, so a large database never makes it look hung. A copy is written
to a `.partial` file and renamed only once complete: a crash or a full disk
never leaves a truncated backup under a backup's name. PostgreSQL is backed
up by the operator's own tools (pg_dump).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

BACKUPS_KEPT = 7
PAGES_PER_STEP = 256        # 1 MiB at SQLite's default page size: milliseconds a step


def path_for(backup_dir: Path, day: datetime) -> Path:
    """The backup of `day` (one a day: a second the same day replaces it)."""
    return backup_dir / f"buzzbotd-{day:%Y-%m-%d}.db"


def write(connection: sqlite3.Connection, backup_dir: Path, today: datetime,
          between_steps: Callable[[], None] = lambda: None) -> Path:
    """Copies the open database into backup_dir, calling `between_steps` after each
    step of PAGES_PER_STEP pages; returns the backup's path."""
    backup_dir.mkdir(mode=0o750, exist_ok=True)
    target = path_for(backup_dir, today)
    partial = target.with_suffix(".db.partial")
    destination = sqlite3.connect(partial)
    try:
        connection.backup(destination, pages=PAGES_PER_STEP,
                          progress=lambda status, remaining, total: between_steps())
    except BaseException:
        destination.close()
        partial.unlink(missing_ok=True)    # on a full disk, give the space back
        raise
    destination.close()
    partial.replace(target)
    for old in sorted(backup_dir.glob("buzzbotd-*.db"))[:-BACKUPS_KEPT]:
        old.unlink()
    return target
