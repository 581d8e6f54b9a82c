"""Slot arithmetic across DST changes, with an injected clock (no waiting on real
time): timeofday's rules, and the real Poster posting through the real tweepy
client to the fake X server at those instants. Also the ledger's rules that
hold whoever drives it: one settler per key, compare-and-set moves, and the
truth about text X refuses as a duplicate. Every test with a database runs on
SQLite and on PostgreSQL (conftest's `backend`)."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from buzzbotd import config, timeofday
from buzzbotd.db import DatabaseOwner, Post, meta
from buzzbotd.db.models import PostEvent
from buzzbotd.posting import ledger
from buzzbotd.posting.poster import Poster
from buzzbotd.price import PriceClient
from tests.fakes.price import FakePrice
from tests.fakes.x import FakeX, Tweet
from tests.support import ManualClock
from tests.support.x_world import x_config

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_time_in_the_spring_gap_happens_when_the_gap_ends() -> None:
    # 2027-03-28: Berlin jumps from 02:00 CET to 03:00 CEST (01:00 UTC).
    assert timeofday.instant(date(2027, 3, 28), time(2, 30), BERLIN) == utc("2027-03-28T01:00")
    assert timeofday.instant(date(2027, 3, 27), time(2, 30), BERLIN) == utc("2027-03-27T01:30")
    assert timeofday.instant(date(2027, 3, 29), time(2, 30), BERLIN) == utc("2027-03-29T00:30")


def test_a_time_that_happens_twice_in_the_fall_happens_once() -> None:
    # 2027-11-07: New York falls back from 02:00 EDT to 01:00 EST; 01:30 happens twice.
    day = list(timeofday.occurrences([time(1, 30)], NEW_YORK, utc("2027-11-07T00:00"),
                                     utc("2027-11-08T00:00")))
    assert day == [utc("2027-11-07T05:30")]                      # 01:30 EDT, the first
    assert timeofday.next_occurrence([time(1, 30)], NEW_YORK, day[0]) == \
        utc("2027-11-08T06:30")                                  # the next day, EST


def test_hh_mm_ss_slots_and_their_keys() -> None:
    times = [time(8, 0, 30), time(20, 15, 5)]
    got = list(timeofday.occurrences(times, BERLIN, utc("2026-11-22T00:00"),
                                     utc("2026-11-23T00:00")))
    assert [timeofday.slot_key(t) for t in got] == ["2026-11-22T07:00:30Z",
                                                    "2026-11-22T19:15:05Z"]
    assert timeofday.local_label(got[0], BERLIN) == "08:00:30 CET"


@pytest.fixture
def fakes(x: FakeX, price: FakePrice) -> tuple[FakeX, FakePrice]:
    return x, price


def poster(tmp_path: Path, make_owner, fakes, local_time: str, zone: str, clock: ManualClock,
           **x_settings: object) -> tuple[Poster, DatabaseOwner]:
    """The real Poster on a new database of the test's backend (conftest.make_owner)."""
    x, price = fakes
    settings = config.load(x_config(tmp_path, x, price, [local_time]))
    settings = replace(settings, x=replace(settings.x, timezone=zone, **x_settings))
    owner = make_owner()
    owner.start()
    owner.call(meta.first_start, clock.now - timedelta(days=2))
    return Poster(settings, owner, PriceClient(settings.price), clock=clock), owner


def posted_keys(owner: DatabaseOwner) -> list[str]:
    return owner.call(lambda: [p.slot_key for p in Post.select().where(Post.state == "posted")
                               .order_by(Post.due_at)])


@pytest.mark.parametrize(("local_time", "zone", "day_start", "slot", "day_end"), [
    ("02:30", "Europe/Berlin", "2027-03-27T23:00", "2027-03-28T01:00", "2027-03-28T22:00"),
    ("01:30", "America/New_York", "2027-11-07T04:00", "2027-11-07T05:30", "2027-11-08T04:59"),
])
def test_the_poster_posts_once_on_a_dst_day(tmp_path: Path, make_owner, fakes, local_time,
                                            zone, day_start, slot, day_end) -> None:
    x, _ = fakes
    clock = ManualClock(utc(day_start))
    post, owner = poster(tmp_path, make_owner, fakes, local_time, zone, clock)
    try:
        assert post.next_slot(clock.now) == utc(slot)
        # The scheduler would run it at the slot and then at every other instant of
        # that local day it might wake: here every 10 minutes of it.
        while clock.now <= utc(day_end):
            post.run_due()
            clock.now += timedelta(minutes=10)
        assert posted_keys(owner) == [timeofday.slot_key(utc(slot))]
        assert len(x.tweets) == 1
        assert post.next_slot(utc(slot)) > utc(day_end)
    finally:
        owner.stop()


def events_of(owner: DatabaseOwner, key: str) -> list[str]:
    return owner.call(lambda: [e.event for e in ledger.get("x", key).events.order_by(PostEvent.id)])


def test_an_illegal_ledger_move_is_refused_logged_and_not_applied(owner: DatabaseOwner,
                                                                   caplog) -> None:
    now = utc("2026-11-22T08:00")
    try:
        claimed = owner.call(ledger.claim, "x", "k", "scheduled", now, now)
        sending = owner.call(ledger.sending, claimed, "BTC $1", now)
        posted = owner.call(ledger.posted, sending, "42", "created", now)
        assert "sending" in ledger.TRANSITIONS["claimed"] and not ledger.TRANSITIONS["posted"]
        with caplog.at_level(logging.ERROR, "buzzbotd.x"):
            with pytest.raises(ledger.IllegalMove):                 # posted → sending
                owner.call(ledger.sending, posted, "BTC $2", now)
            with pytest.raises(ledger.IllegalMove):                 # a stale read of `sending`
                owner.call(ledger.not_sent, sending, "503 from X", now)
            with pytest.raises(ledger.IllegalMove):                 # claimed → posted
                owner.call(ledger.posted, claimed, None, "created", now)
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert errors == [
            "slot k: refused ledger move posted → sending: not a legal move "
            "(a bug; nothing changed)",
            "slot k: refused ledger move sending → claimed: the row is posted, not sending "
            "as read (a bug; nothing changed)",
            "slot k: refused ledger move claimed → posted: not a legal move "
            "(a bug; nothing changed)"], errors
        row = owner.call(ledger.get, "x", "k")
        assert (row.state, row.text, row.tweet_id, row.attempts) == ("posted", "BTC $1", "42", 1)
        assert events_of(owner, "k") == ["claimed", "sending", "posted"]
    finally:
        owner.stop()


def test_a_second_settler_of_a_key_leaves_it_to_the_first(tmp_path: Path, make_owner,
                                                          fakes) -> None:
    """A /tweet's POST is at X when the scheduler's run_due finds its row open:
    the old code settled it a second time (timeline: not there yet → POST again)."""
    x, _ = fakes
    clock = ManualClock(utc("2026-11-22T07:59:02"))
    post, owner = poster(tmp_path, make_owner, fakes, "12:00", "UTC", clock)
    at_x, release = threading.Event(), threading.Event()

    def hold_the_first_post(request: object) -> None:
        if not at_x.is_set():
            at_x.set()
            release.wait(15)

    x.on_post = hold_the_first_post
    result: dict[str, Post] = {}
    tweet = threading.Thread(target=lambda: result.update(row=post.post_now()),
                             name="test-slash-tweet")
    tweet.start()
    try:
        assert at_x.wait(15), "the /tweet's POST never reached X"
        post.run_due()                          # the scheduler, meanwhile, in this thread
    finally:
        release.set()
        tweet.join(30)
        owner_rows = posted_keys(owner)
        owner.stop()
    assert len(x.tweets) == 1, x.texts()
    assert x.post_attempts == 1 and x.timeline_reads == 0
    assert result["row"].state == "posted" and owner_rows == ["manual-2026-11-22T07:59:02Z"]


def test_a_slot_whose_text_x_holds_for_another_key_is_skipped_naming_it(
        tmp_path: Path, make_owner, fakes) -> None:
    x, _ = fakes
    x.reject_duplicates = True
    clock = ManualClock(utc("2026-11-22T07:59:02"))
    post, owner = poster(tmp_path, make_owner, fakes, "08:00", "UTC", clock,
                         template="Bitcoin is at ${price:,.2f} #BTC")    # no {time}
    try:
        assert post.post_now().state == "posted"                    # /tweet at 07:59:02
        again = post.post_now()                                     # a second, same second
        clock.now = utc("2026-11-22T08:00")
        post.run_due()                                              # the slot, same price
        slot = owner.call(ledger.get, "x", timeofday.slot_key(clock.now))
    finally:
        owner.stop()
    assert again.slot_key == "manual-2026-11-22T07:59:02Z-2"
    assert (again.state, again.reason) == (
        "skipped", "same text as manual-2026-11-22T07:59:02Z (X refused the text as a "
        "duplicate)")
    assert slot.state == "skipped" and slot.tweet_id is None
    assert slot.reason.startswith("same text as manual-2026-11-22T07:59:02Z "), slot.reason
    assert len(x.tweets) == 1 and x.post_attempts == 3


def test_two_rows_of_one_text_found_on_the_timeline_each_get_their_own_tweet(
        tmp_path: Path, make_owner, fakes) -> None:
    """A /tweet in a slot's own second words the slot's text. Killed after X stored
    both POSTs and before either answer was recorded, the restart finds two tweets
    of that text: each row gets its own. (The old code gave both rows the newest
    and left the other tweet nobody's: the kill -9 trials counted it as a second
    tweet of the slot.)"""
    x, _ = fakes
    due = utc("2026-11-22T08:00:00")
    clock = ManualClock(due)
    post, owner = poster(tmp_path, make_owner, fakes, "08:00", "UTC", clock)
    text = "BTC $67,890.12 (-1.23% 24h) at 08:00 UTC"
    keys = (timeofday.slot_key(due), f"manual-{timeofday.slot_key(due)}")

    def both_sending() -> None:
        for key, kind in zip(keys, ("scheduled", "manual"), strict=True):
            ledger.sending(ledger.claim("x", key, kind, due, due), text, due)

    owner.call(both_sending)
    x.tweets += [Tweet("1800000000000000001", text, due), Tweet("1800000000000000002", text, due)]
    clock.now = due + timedelta(seconds=30)     # the restart, within the slot's grace
    try:
        post.run_due()
        rows = [owner.call(ledger.get, "x", key) for key in keys]
    finally:
        owner.stop()
    assert [row.state for row in rows] == ["posted", "posted"]
    assert sorted(row.tweet_id for row in rows) == ["1800000000000000001",
                                                     "1800000000000000002"]
    assert x.post_attempts == 0 and x.timeline_reads == 2
