"""All state: SQLite in WAL mode (or PostgreSQL), written only by the owner's thread."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from buzzbotd.db.models import MODELS, Meta, Post, PostEvent, Reminder, TelegramUser, database
from buzzbotd.db.owner import DatabaseError, DatabaseOwner, DatabaseTooNew, after_commit
from buzzbotd.db.readonly import open_readonly
from buzzbotd.db.sqlite import SqliteOwner

if TYPE_CHECKING:
    from buzzbotd.config import Settings


def open_owner(settings: Settings, **kwargs: Any) -> DatabaseOwner:
    """The owner of the configured database: SQLite at state_dir/buzzbotd.db,
    or the PostgreSQL server that database.url names (its driver imported only then)."""
    if settings.database.url:
        from buzzbotd.db.postgres import PostgresOwner
        return PostgresOwner(settings.database.url, settings.database.password.reveal() or None,
                             **kwargs)
    return SqliteOwner(settings.daemon.database, **kwargs)


__all__ = [
    "open_owner",
    "MODELS", "DatabaseError", "DatabaseOwner", "DatabaseTooNew", "Meta", "Post", "PostEvent",
    "Reminder", "SqliteOwner", "TelegramUser", "after_commit", "database", "open_readonly",
]
