"""Weekday reminders (/remind 08:30 mon-fri Europe/Berlin): the words, and the days
as the reminder's own zone counts them, on a real database owner (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from buzzbotd import reminders
from buzzbotd.reminders.request import EVERY_DAY, days_text, parse_days
from buzzbotd.timeinput import InputError


@pytest.mark.parametrize(("word", "days", "shown"), [
    ("daily", EVERY_DAY, "daily"),
    ("mon-fri", 0b0011111, "mon-fri"),
    ("sat,sun", 0b1100000, "sat,sun"),
    ("mon,wed-fri", 0b0011101, "mon,wed-fri"),
    ("fri-mon", 0b1110001, "mon,fri-sun"),     # a range may wrap round the week
    ("Tuesday", 0b0000010, "tue"),
])
def test_days_words(word: str, days: int, shown: str) -> None:
    assert parse_days(word) == days
    assert days_text(days) == shown


@pytest.mark.parametrize(("words", "problem"), [
    ("08:30 funday", '"funday" is neither days (daily, mon-fri, sat,sun, or any list or range '
                     "of mon … sun) nor a timezone I know"),
    ("08:30 mon-xyz", '"mon-xyz" is not a day of the week; expected daily, mon-fri'),
    ("08:30 Europe/Berlin mon-fri", "(the days come before the timezone)"),
    ("08:30 mon-fri Mars/Olympus", '"Mars/Olympus" is not a timezone I know'),
])
def test_bad_days_name_the_problem_and_the_form(words: str, problem: str) -> None:
    with pytest.raises(InputError) as caught:
        reminders.parse_request(words.split())
    assert problem in str(caught.value)


def test_the_request_reads_time_days_and_zone() -> None:
    request = reminders.parse_request("08:30 mon-fri Europe/Berlin".split())
    assert (request.at, request.days, request.timezone) == (time(8, 30), 0b0011111,
                                                           "Europe/Berlin")
    assert reminders.parse_request(["08:30"]).days == EVERY_DAY


def test_a_monday_in_auckland_is_not_a_monday_in_utc() -> None:
    auckland = ZoneInfo("Pacific/Auckland")
    # Sunday 2026-12-06 20:00 UTC is Monday 09:00 in Auckland: Monday's 08:30 has
    # passed there, so a mon-fri reminder is next due on Tuesday 08:30, local.
    after = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)
    due = reminders.next_due(time(8, 30), auckland, after, None, 0b0011111)
    assert due.astimezone(auckland).strftime("%a %H:%M") == "Tue 08:30"
    # A weekend reminder set then waits for Saturday, local.
    weekend = reminders.next_due(time(8, 30), auckland, after, None, 0b1100000)
    assert weekend.astimezone(auckland).strftime("%a %d %H:%M") == "Sat 12 08:30"


@pytest.fixture
def owner(make_owner):
    owner = make_owner()
    owner.start()
    return owner


def test_a_mon_fri_reminder_is_sent_on_five_local_days_a_week(owner) -> None:
    start = datetime(2026, 12, 6, 0, 0, tzinfo=UTC)            # a Sunday
    result = owner.call(reminders.set_reminder, 7, 7, time(8, 30), "America/New_York", start,
                        "UTC", 0b0011111)
    assert result.outcome == "created" and result.reminder.days == 0b0011111
    sent = []
    now = start
    while now < start + timedelta(days=14):
        now += timedelta(minutes=30)
        page = owner.call(reminders.due_page, now, 3600)
        for due in page.due:
            owner.call(reminders.mark_sent, due.id, due.due_at, now)
            sent.append(due.due_at.astimezone(ZoneInfo("America/New_York")))
    assert [d.strftime("%a %H:%M") for d in sent] == ["Mon 08:30", "Tue 08:30", "Wed 08:30",
                                                      "Thu 08:30", "Fri 08:30"] * 2
    # Setting the same time with other days changes it, and /reminders shows them.
    changed = owner.call(reminders.set_reminder, 7, 7, time(8, 30), None, now, "UTC",
                         0b1100000)
    assert changed.outcome == "updated"
    [view] = owner.call(reminders.user_reminders, 7)
    assert reminders.days_text(view.days) == "sat,sun"
    # `now` is Saturday 19:00 in New York, past its 08:30: next is Sunday's.
    assert view.next_due_at.astimezone(ZoneInfo("America/New_York")).strftime("%a %H:%M") == \
        "Sun 08:30"
