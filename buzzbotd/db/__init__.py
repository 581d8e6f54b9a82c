"""All state: SQLite in WAL mode, written only by the DatabaseOwner's thread."""

from buzzbotd.db.models import MODELS, Meta, Post, PostEvent, Reminder, TelegramUser, database
from buzzbotd.db.owner import (
    DatabaseError,
    DatabaseOwner,
    DatabaseTooNew,
    after_commit,
    open_readonly,
)

__all__ = [
    "MODELS", "DatabaseError", "DatabaseOwner", "DatabaseTooNew", "Meta", "Post", "PostEvent",
    "Reminder", "TelegramUser", "after_commit", "database", "open_readonly",
]
