"""The counts of reminders and users the database's triggers keep (buzzbotd.db.tally)
always equal a real COUNT(*), on both backends, whatever changes the rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import peewee

from buzzbotd.db import (
    Reminder,
    SqliteOwner,
    TelegramUser,
    database,
    migrations,
    tally,
)

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def counted() -> tuple[dict[tuple[bool, str], int], int]:
    """What a scan of every row says: {(enabled, timezone): n} and the users."""
    count = peewee.fn.COUNT(peewee.SQL("*"))
    rows = (Reminder.select(Reminder.enabled, Reminder.timezone, count)
            .group_by(Reminder.enabled, Reminder.timezone).tuples())
    return {(bool(e), z): n for e, z, n in rows}, TelegramUser.select().count()


def kept() -> tuple[dict[tuple[bool, str], int], int]:
    return {(e, z): n for e, z, n in tally.reminders_by_zone()}, tally.users()


def add_user(user_id: int, zone: str, reminders: int, enabled: bool = True) -> None:
    user = TelegramUser.create(id=user_id, chat_id=user_id, timezone=zone, created_at=NOW,
                               updated_at=NOW)
    for i in range(reminders):
        Reminder.create(user=user, chat_id=user_id, local_time=f"0{i}:00", timezone=zone,
                        next_due_at=NOW, enabled=enabled, created_at=NOW)


def test_the_counts_follow_every_kind_of_change(owner) -> None:
    def check() -> None:
        assert owner.call(kept) == owner.call(counted)

    check()
    assert owner.call(kept) == ({}, 0)
    owner.call(add_user, 1, "UTC", 3)
    owner.call(add_user, 2, "Asia/Kolkata", 2)
    owner.call(add_user, 3, "UTC", 1, False)
    check()
    assert owner.call(tally.reminders) == {True: 5, False: 1}
    # /stop and /start: enabled flips; /timezone: the zone moves.
    owner.call(lambda: Reminder.update(enabled=False).where(Reminder.user == 1).execute())
    check()
    owner.call(lambda: Reminder.update(timezone="+05:30").where(Reminder.user == 2).execute())
    check()
    # A save() of every column, as the dispatcher does after a delivery, counts nothing twice.
    def deliver() -> None:
        reminder = Reminder.get(Reminder.user == 2)
        reminder.next_due_at = NOW
        reminder.save()
    owner.call(deliver)
    check()
    # Removing one reminder, and a user (their reminders go by ON DELETE CASCADE).
    owner.call(lambda: Reminder.delete().where(Reminder.local_time == "00:00").execute())
    check()
    owner.call(lambda: TelegramUser.delete().where(TelegramUser.id == 2).execute())
    check()
    assert owner.call(tally.users) == 2
    assert owner.call(tally.reminders) == {True: 0, False: 2}
    # A rolled-back transaction leaves the counts as they were.
    def fails() -> None:
        add_user(4, "UTC", 2)
        raise RuntimeError("rolled back")
    try:
        owner.call(fails)
    except RuntimeError:
        pass
    check()
    assert owner.call(tally.users) == 2


def test_a_database_migrated_with_rows_starts_with_their_counts(tmp_path: Path) -> None:
    old = peewee.SqliteDatabase(str(tmp_path / "buzzbotd.db"), pragmas={"foreign_keys": 1})
    migrations.migrate(old, migrations.MIGRATIONS[:4])     # before the counts were kept
    database.initialize(old)
    with old.atomic():
        add_user(1, "UTC", 2)
        add_user(2, "Europe/Berlin", 1, False)
    old.close()
    owner = SqliteOwner(tmp_path / "buzzbotd.db")
    try:
        assert owner.start() == list(range(5, migrations.LATEST + 1))
        assert owner.call(kept) == ({(True, "UTC"): 2, (False, "Europe/Berlin"): 1}, 2)
        owner.call(add_user, 3, "UTC", 1)
        assert owner.call(kept) == owner.call(counted)
    finally:
        owner.stop()
