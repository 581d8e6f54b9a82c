"""The versioned schema. `PRAGMA user_version` says which migrations ran.

Each migration is plain SQL (so it never changes when the models do) and is
applied in one transaction together with the new version number: a failure
leaves the database exactly as it was. Never edit a released migration;
append a new one.
"""

from __future__ import annotations

import logging

import peewee

log = logging.getLogger("buzzbotd.db")

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("X ledger and daemon state", [
        """CREATE TABLE meta (
            key TEXT PRIMARY KEY NOT NULL,
            value TEXT NOT NULL)""",
        """CREATE TABLE post (
            id INTEGER PRIMARY KEY NOT NULL,
            slot_key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('scheduled', 'manual')),
            due_at TEXT NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('claimed', 'sending', 'posted', 'failed', 'skipped')),
            text TEXT,
            tweet_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            reason TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
        "CREATE INDEX post_due_at ON post (due_at)",
        """CREATE TABLE post_event (
            id INTEGER PRIMARY KEY NOT NULL,
            post_id INTEGER NOT NULL REFERENCES post (id) ON DELETE CASCADE,
            at TEXT NOT NULL,
            event TEXT NOT NULL,
            detail TEXT)""",
        "CREATE INDEX post_event_post_id ON post_event (post_id)",
    ]),
    ("Telegram users and reminders", [
        """CREATE TABLE telegram_user (
            id INTEGER PRIMARY KEY NOT NULL,
            chat_id INTEGER NOT NULL,
            timezone TEXT NOT NULL CHECK (timezone <> ''),
            blocked INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
        """CREATE TABLE reminder (
            id INTEGER PRIMARY KEY NOT NULL,
            user_id INTEGER NOT NULL REFERENCES telegram_user (id) ON DELETE CASCADE,
            chat_id INTEGER NOT NULL,
            local_time TEXT NOT NULL,
            timezone TEXT NOT NULL CHECK (timezone <> ''),
            next_due_at TEXT NOT NULL,
            last_sent_local_date TEXT,
            enabled INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL)""",
        # The dispatcher's one query: enabled reminders due by now, oldest first.
        "CREATE INDEX reminder_due ON reminder (enabled, next_due_at)",
        "CREATE INDEX reminder_user_id ON reminder (user_id)",
    ]),
    # The status page's chart draws the posted prices; the text alone depends on
    # the template. Older rows keep NULL (not drawn).
    ("the price a post's text was composed from; reminders by timezone", [
        "ALTER TABLE post ADD COLUMN price REAL",
        # The status page counts enabled reminders per timezone from this index alone.
        "CREATE INDEX reminder_zone ON reminder (enabled, timezone)",
    ]),
]

LATEST = len(MIGRATIONS)


class SchemaTooNew(Exception):
    pass


def schema_version(db: peewee.SqliteDatabase) -> int:
    return db.execute_sql("PRAGMA user_version").fetchone()[0]


def migrate(db: peewee.SqliteDatabase, migrations: list[tuple[str, list[str]]] = MIGRATIONS
            ) -> list[int]:
    """Applies the missing migrations in order; returns the versions applied."""
    current = schema_version(db)
    if current > len(migrations):
        raise SchemaTooNew(f"the database has schema version {current}, newer than this "
                           f"buzzbotd knows ({len(migrations)}); install the newer buzzbotd "
                           "again or restore a backup")
    applied = []
    for version, (title, statements) in enumerate(migrations, start=1):
        if version <= current:
            continue
        with db.atomic():
            for sql in statements:
                db.execute_sql(sql)
            db.execute_sql(f"PRAGMA user_version = {version:d}")
        log.info("database migrated to version %d (%s)", version, title)
        applied.append(version)
    return applied
