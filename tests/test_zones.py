"""Time zones as stored and loaded: legacy names become current ones (Debian 13
moved US/Eastern and its kind to tzdata-legacy), a zone that cannot be loaded
stops only its own reminder, and every zone's DST changes of the next two
years give one reminder per local day."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import closing
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

import peewee
import pytest

from buzzbotd import reminders
from buzzbotd.db import DatabaseOwner, Reminder, TelegramUser
from buzzbotd.db.migrations import MIGRATIONS, migrate
from buzzbotd.reminders import after_send, next_due, occurrence_day
from buzzbotd.timeinput import REFUSED_ZONES, InputError, parse_zone
from buzzbotd.timeofday import slot_key
from tests.support.telegram_world import World, database_of, minute_of, reminder_rows

MINUTE = timedelta(minutes=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("typed, stored", [
    ("us/eastern", "America/New_York"), ("GB", "Europe/London"), ("Japan", "Asia/Tokyo"),
    ("Zulu", "Etc/UTC"), ("EST5EDT", "America/New_York"), ("asia/calcutta", "Asia/Kolkata"),
    ("Europe/Berlin", "Europe/Berlin"), ("UTC", "UTC"),
    # POSIX's sign: Etc/GMT+5 is five hours behind UTC, stored as what it means.
    ("Etc/GMT+5", "-05:00"), ("etc/gmt-14", "+14:00"),
])
def test_remind_stores_the_current_name(typed: str, stored: str) -> None:
    assert parse_zone(typed) == stored


@pytest.mark.parametrize("name", sorted(REFUSED_ZONES))
def test_the_hosts_own_zone_files_are_refused(name: str) -> None:
    with pytest.raises(InputError):
        parse_zone(name)


def without_tzdata_legacy(directory: Path) -> Path:
    """A copy of the zoneinfo database as Debian 13 installs it without tzdata-legacy
    (as far as these tests need: no US/, GB, Japan)."""
    copy = directory / "zoneinfo"
    shutil.copytree("/usr/share/zoneinfo", copy, symlinks=True,
                    ignore=lambda d, names: [n for n in names
                                             if n in ("US", "GB", "Japan", "posix", "right")])
    return copy


def test_legacy_names_work_without_tzdata_legacy(tmp_path: Path) -> None:
    copy = without_tzdata_legacy(tmp_path)
    script = ("from zoneinfo import ZoneInfo\n"
              "from buzzbotd.timeinput import parse_zone, zone\n"
              "try:\n    ZoneInfo('US/Eastern')\nexcept Exception:\n    print('no US/Eastern')\n"
              "print(parse_zone('us/eastern'), parse_zone('GB'))\n"
              "print(zone('US/Eastern').key)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PYTHONTZPATH": str(copy)}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["no US/Eastern", "America/New_York Europe/London",
                                             "America/New_York"]


def test_the_migration_rewrites_stored_legacy_names_losing_nothing(tmp_path: Path) -> None:
    db = peewee.SqliteDatabase(str(tmp_path / "old.db"))
    migrate(db, MIGRATIONS[:5])
    now = "2027-01-01T00:00:00Z"
    zones = {1: "US/Eastern", 2: "Etc/GMT+5", 3: "Asia/Kolkata", 4: "Japan"}
    for user, name in zones.items():
        db.execute_sql("INSERT INTO telegram_user (id, chat_id, timezone, created_at, updated_at)"
                       " VALUES (?, ?, ?, ?, ?)", (user, user, name, now, now))
        db.execute_sql("INSERT INTO reminder (user_id, chat_id, local_time, timezone, "
                       "next_due_at, last_sent_local_date, created_at) "
                       "VALUES (?, ?, '08:00', ?, ?, '2026-12-31', ?)",
                       (user, user, name, now, now))
    assert migrate(db)[-1] == len(MIGRATIONS)      # the last one renames the zones
    expected = {1: "America/New_York", 2: "-05:00", 3: "Asia/Kolkata", 4: "Asia/Tokyo"}
    rows = db.execute_sql("SELECT user_id, timezone, next_due_at, last_sent_local_date "
                          "FROM reminder ORDER BY user_id").fetchall()
    assert rows == [(u, z, now, "2026-12-31") for u, z in expected.items()]
    users = dict(db.execute_sql("SELECT id, timezone FROM telegram_user").fetchall())
    assert users == expected
    tally = dict(db.execute_sql("SELECT timezone, n FROM reminder_tally WHERE n > 0"
                                ).fetchall())
    assert tally == {z: 1 for z in expected.values()}


# -- a zone that cannot be loaded ------------------------------------------------------------


def test_after_the_upgrade_to_debian_13_every_reminder_still_arrives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real daemon, on a database of schema 5 holding US/Eastern (stored as typed
    then) and a name no tzdata has, with a zoneinfo without tzdata-legacy."""
    monkeypatch.setenv("PYTHONTZPATH", str(without_tzdata_legacy(tmp_path)))
    due = minute_of(datetime.now(UTC)) + 2 * MINUTE
    path = database_of(tmp_path)
    path.parent.mkdir(parents=True)
    db = peewee.SqliteDatabase(str(path))
    migrate(db, MIGRATIONS[:5])
    users = {101: ("US/Eastern", ZoneInfo("America/New_York"), due), 102: ("UTC", UTC, due),
             103: ("Mars/Olympus", UTC, due), 104: ("UTC", UTC, due + MINUTE),
             # Missed while down: skipped in the due query, where a zone that failed
             # to load failed the whole round, every minute.
             105: ("US/Eastern", ZoneInfo("America/New_York"), due - timedelta(hours=2))}
    for user, (name, local, when) in users.items():
        created = "2026-01-01T00:00:00Z"
        db.execute_sql("INSERT INTO telegram_user (id, chat_id, timezone, created_at, "
                       "updated_at) VALUES (?, ?, ?, ?, ?)", (user, user, name, created, created))
        db.execute_sql("INSERT INTO reminder (user_id, chat_id, local_time, timezone, "
                       "next_due_at, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (user, user, when.astimezone(local).strftime("%H:%M"), name,
                        slot_key(when), created))
    db.close()
    with closing(World(tmp_path)) as world:
        daemon = world.start()
        world.clock.move_to(due - timedelta(seconds=2))
        for user in (101, 102):
            assert "Your daily Bitcoin reminder" in world.telegram.wait_for_message(
                user, "reminder", timeout=20).text
        notice = world.telegram.wait_for_message(103, "is paused", timeout=20).text
        assert "(Mars/Olympus)" in notice
        daemon.wait_log("reminders due by", timeout=10)
        rows = {r["user_id"]: r for r in reminder_rows(world.database)}
        assert rows[101]["timezone"] == "America/New_York"
        assert rows[101]["last_sent_at"] and rows[102]["last_sent_at"]
        assert not rows[103]["enabled"]
        # The next round: 104's, and nothing again; the paused one stays quiet.
        world.clock.move_to(due + MINUTE - timedelta(seconds=2))
        world.telegram.wait_for_message(104, "reminder", timeout=20)
        daemon.wait_log(": 1 sent,", timeout=10)             # that round is over
        assert [len(world.telegram.messages_to(u)) for u in users] == [1, 1, 1, 1, 0]
        assert "reminder 5 for user 105 due" in daemon.wait_log("user 105", timeout=1)
        assert daemon.log.count("paused:") == 1 and "Traceback" not in daemon.log


def _insert(user: int, name: str, due: datetime) -> None:
    TelegramUser.create(id=user, chat_id=user, timezone="UTC", created_at=due, updated_at=due)
    Reminder.create(user=user, chat_id=user, local_time=due.strftime("%H:%M"), timezone=name,
                    next_due_at=due, enabled=True, created_at=due)


@pytest.mark.parametrize("late", [False, True], ids=["within-grace", "beyond-grace"])
def test_a_zone_that_cannot_be_loaded_pauses_only_its_own_reminder(
        owner: DatabaseOwner, late: bool, caplog: pytest.LogCaptureFixture) -> None:
    now = utc(2027, 1, 1, 8, 0)
    due = now - (timedelta(hours=2) if late else timedelta(0))
    owner.call(_insert, 1, "Mars/Olympus", due)        # no tzdata has it
    owner.call(_insert, 2, "UTC", now)
    sent: list[reminders.Due] = []

    def send(page: list[reminders.Due], text: str) -> reminders.Tally:
        sent.extend(page)
        for d in page:
            owner.call(reminders.mark_sent, d.id, d.due_at, now)
        return reminders.Tally(sent=len(page))

    reminders.dispatch(owner, lambda: "price", send, lambda: now, 3600)
    notices = {d.user_id: d.notice for d in sent}
    assert notices[2] is None
    assert "is paused" in notices[1] and "Mars/Olympus" in notices[1]
    rows = {r.user_id: r for r in owner.call(lambda: list(Reminder.select()))}
    assert not rows[1].enabled
    assert rows[2].enabled and rows[2].next_due_at == utc(2027, 1, 2, 8, 0)
    sent.clear()
    reminders.dispatch(owner, lambda: "price", send, lambda: now + MINUTE, 3600)
    assert sent == []                                  # told once, logged once
    assert sum("paused" in r.message for r in caplog.records) == 1
    # Writing to the bot again does not re-enable it (it could not be scheduled)...
    assert owner.call(reminders.touch_user, 1, 1, now + MINUTE, "UTC") == 0
    # ... setting it again with a zone this system has does.
    owner.call(lambda: Reminder.update(last_sent_local_date="2026-12-31").execute())
    result = owner.call(reminders.set_reminder, 1, 1, due.time(), "Europe/Berlin",
                        now + MINUTE, "UTC")
    assert result.outcome == "updated" and result.reminder.enabled


def test_each_record_of_a_batch_succeeds_or_fails_alone(owner: DatabaseOwner) -> None:
    now = utc(2027, 1, 1, 8, 0)
    owner.call(_insert, 1, "Mars/Olympus", now)
    owner.call(_insert, 2, "UTC", now)
    failed = owner.call(reminders.mark_each_sent, [(1, now), (2, now)], now)
    assert list(failed) == [(1, now)]
    row = owner.call(lambda: Reminder.get_by_id(2))
    assert row.next_due_at == utc(2027, 1, 2, 8, 0) and row.last_sent_at == now


# -- one reminder per local day ----------------------------------------------------------------


def _run(owner: DatabaseOwner, start: datetime, end: datetime, step: timedelta = MINUTE
         ) -> list[datetime]:
    """The due round each `step` from start to end; returns when each was sent."""
    sent: list[datetime] = []
    clock = [start]

    def send(page: list[reminders.Due], text: str) -> reminders.Tally:
        for d in page:
            sent.append(clock[0])
            owner.call(reminders.mark_sent, d.id, d.due_at, clock[0])
        return reminders.Tally(sent=len(page))

    while clock[0] <= end:
        reminders.dispatch(owner, lambda: "price", send, lambda: clock[0], 3600)
        clock[0] += step
    return sent


def remind(owner: DatabaseOwner, at: str, name: str, now: datetime) -> None:
    owner.call(reminders.set_reminder, 7, 7, time.fromisoformat(at), name, now, "UTC")


@pytest.mark.parametrize("name", ["America/Nuuk", "America/Scoresbysund"])
def test_a_2330_reminder_survives_the_spring_forward_sunday(owner: DatabaseOwner,
                                                            name: str) -> None:
    # 2027-03-27, a Saturday: at 01:00 UTC (23:00 at -02:00, both since 2024) the
    # clocks go to 00:00 Sunday: Saturday's 23:30 happens at Sunday 00:00.
    zone_ = ZoneInfo(name)
    at = "23:30"
    start = utc(2027, 3, 26, 12, 0)
    remind(owner, at, name, start)
    sent = _run(owner, start, utc(2027, 3, 30, 6, 0), step=10 * MINUTE)
    days = [occurrence_day(t, time.fromisoformat(at), zone_) for t in sent]
    assert days == [date(2027, 3, d) for d in range(26, 30)], sent


def test_zone_hopping_gives_one_reminder_per_local_day(owner: DatabaseOwner) -> None:
    start = utc(2027, 6, 1, 7, 58)
    remind(owner, "08:00", "UTC", start)
    sent = _run(owner, start, start + 5 * MINUTE)              # 08:00 UTC, 1 June
    remind(owner, "08:00", "+14:00", start + 10 * MINUTE)      # 22:10 there: 1 June had one
    remind(owner, "08:00", "-05:00", start + 20 * MINUTE)      # 03:20 on 1 June there
    sent += _run(owner, start + 20 * MINUTE, utc(2027, 6, 2, 14, 0))
    # In -05:00 they had theirs at 03:00 on 1 June: the next is 08:00 on 2 June, not
    # 08:00 on 1 June (13:00 UTC), which the date of the +14:00 detour would allow.
    assert sent == [utc(2027, 6, 1, 8, 0), utc(2027, 6, 2, 13, 0)]


def _transitions(zone_: ZoneInfo, start: datetime, days: int) -> list[datetime]:
    found = []
    before = start
    for _ in range(days):
        after = before + timedelta(days=1)
        if before.astimezone(zone_).utcoffset() != after.astimezone(zone_).utcoffset():
            low, high = before, after
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone_).utcoffset() == low.astimezone(zone_).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high.replace(microsecond=0))
        before = after
    return found


def test_every_zone_gets_one_reminder_per_local_day_across_its_changes() -> None:
    """Each IANA zone's offset changes of the next two years, with reminders at the
    local times around each change: every local day gets exactly one, for that day."""
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    checked = 0
    for name in sorted(available_timezones() - REFUSED_ZONES):
        zone_ = ZoneInfo(name)
        for change in _transitions(zone_, start, 2 * 366):
            old_wall = (change - timedelta(seconds=1)).astimezone(zone_) + timedelta(seconds=1)
            new_wall = change.astimezone(zone_)
            times = set()
            for wall in (old_wall, new_wall):
                for shift in (-30, -1, 0, 1, 30):
                    times.add((wall + timedelta(minutes=shift)).time().replace(second=0))
            for at in times:
                when = next_due(at, zone_, change - timedelta(days=3), None)
                last = occurrence_day(when, at, zone_)
                while last < change.astimezone(zone_).date() + timedelta(days=3):
                    # Sent at its instant, as the due round records it.
                    sent_day, following = after_send(at, zone_, when, when)
                    assert sent_day == last, (name, at, change, when)
                    when, last = following, occurrence_day(following, at, zone_)
                    assert last == sent_day + timedelta(days=1), (name, at, change, when)
                checked += 1
    assert checked > 1000
