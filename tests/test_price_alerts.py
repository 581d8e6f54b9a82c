"""Price alerts on a real database owner (SQLite and PostgreSQL): what /alert's
words ask for, the crossings one evaluation finds, and that each crossing is
recorded once, however often the price is evaluated."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from buzzbotd.db.models import PriceAlert
from buzzbotd.pricealerts import crossing, store
from buzzbotd.pricealerts.request import AlertRequest, parse_request
from buzzbotd.timeinput import InputError

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
CURRENCIES = ("usd", "eur")


# -- the words -------------------------------------------------------------------------


@pytest.mark.parametrize(("words", "expected"), [
    ("above 100000", AlertRequest("above", 100000, None, False)),
    ("above 100,000 eur repeat", AlertRequest("above", 100000, "eur", True)),
    ("BELOW 90000 repeat EUR", AlertRequest("below", 90000, "eur", True)),
    ("move 5%", AlertRequest("move", 5, None, False)),
    ("move 2.5", AlertRequest("move", 2.5, None, False)),
])
def test_alert_words(words: str, expected: AlertRequest) -> None:
    assert parse_request(words.split(), CURRENCIES) == expected


@pytest.mark.parametrize(("words", "problem"), [
    ("", "Tell me when to alert you: /alert above 100000"),
    ("above -5", "-5 is not a price: the level must be above 0"),
    ("above 1e400", '"1e400" is not a price; write digits'),
    ("above 10000000000000", "not a price I can watch: expected a number above 0 and below"),
    ("above 0", "not a price I can watch"),
    ("move 0%", '"0%" is not a move I can watch: expected a percentage from 0.1% to 100%'),
    ("move 500%", "from 0.1% to 100%"),
    ("above 100000 xyz", '"xyz" is not one of the currencies (usd, eur) nor repeat'),
    ("sideways 5", '"sideways" is not a kind of alert; expected above, below or move'),
    ("above", "/alert above needs a price"),
    ("move 5% repeat", "a move alert repeats by itself"),
])
def test_bad_alert_words_name_the_problem_and_the_form(words: str, problem: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_request(words.split(), CURRENCIES)
    assert problem in str(caught.value)


# -- the store and the crossings (both backends) ----------------------------------------------


@pytest.fixture
def owner(make_owner):
    owner = make_owner()
    owner.start()
    return owner


def add(owner, owner_id: int, words: str, price: float, currency: str = "usd"):
    request = parse_request(words.split(), CURRENCIES)
    return owner.call(store.add_alert, owner_id, owner_id, request,
                      request.currency or currency, price, NOW)


def cross(owner, price: float, currency: str = "usd", at: datetime = NOW) -> list:
    owner.call(crossing.evaluate, currency, price, at)
    messages = owner.call(crossing.pending)
    for message in messages:
        owner.call(crossing.settle, message.id, "sent", at)
    return messages


def test_above_fires_once_when_reached_and_is_then_done(owner) -> None:
    assert add(owner, 1, "above 70000", 67890).outcome == "created"
    assert cross(owner, 69999.99) == []
    [message] = cross(owner, 70000)
    assert (message.chat_id, message.kind, message.level, message.price) == (1, "above",
                                                                              70000, 70000)
    assert "rose to your level $70,000" in crossing.message_text(message)
    assert cross(owner, 75000) == [] and cross(owner, 60000) == [] and cross(owner, 71000) == []
    [view] = owner.call(store.owner_alerts, 1)
    assert view.state == "fired"


def test_a_level_already_reached_is_refused(owner) -> None:
    assert add(owner, 1, "above 60000", 67890).outcome == "reached"
    assert add(owner, 1, "below 70000", 67890).outcome == "reached"
    assert owner.call(store.owner_alerts, 1) == []


def test_a_repeat_alert_hovering_at_its_level_sends_one_message_then_rearms(owner) -> None:
    add(owner, 1, "above 100000 repeat", 95000)
    sent = []
    # Ten minutes of a price hovering around the level, evaluated every minute.
    for price in (99990, 100010, 99950, 100200, 99500, 100000, 99400, 100300, 99100, 100050):
        sent += cross(owner, price)
    assert len(sent) == 1
    # Back 1 % below the level re-arms it (no message); the next rise sends again.
    assert cross(owner, 98999) == []
    assert len(cross(owner, 100001)) == 1


def test_below_with_repeat_mirrors_above(owner) -> None:
    add(owner, 1, "below 60000 repeat", 67890)
    assert len(cross(owner, 59000)) == 1
    assert cross(owner, 60500) == []          # not 1 % above yet
    assert cross(owner, 59000) == []
    assert cross(owner, 60601) == []          # re-armed, silently
    assert len(cross(owner, 59999)) == 1


def test_a_move_alert_fires_each_time_the_price_moved_that_much_from_the_last(owner) -> None:
    add(owner, 1, "move 5%", 100000)
    assert cross(owner, 104999) == []
    [first] = cross(owner, 105000)
    assert "moved +5.0% to $105,000 since $100,000" in crossing.message_text(first)
    assert cross(owner, 101000) == []          # -3.8 % from 105,000
    [second] = cross(owner, 99750)             # -5 % from 105,000
    assert second.reference == 105000
    assert len(cross(owner, 104737.5)) == 1    # +5 % from 99,750


def test_currencies_are_evaluated_apart(owner) -> None:
    add(owner, 1, "above 65000 eur", 62000)
    assert cross(owner, 70000, "usd") == []
    assert len(cross(owner, 65000, "eur")) == 1


def test_a_crossing_is_recorded_once_and_kept_until_settled(owner) -> None:
    """A kill -9 between the evaluation and the send: the crossing is in the outbox,
    and evaluating the same price again (the restarted daemon) adds nothing."""
    add(owner, 1, "above 70000", 67890)
    assert owner.call(crossing.evaluate, "usd", 70500, NOW) == 1
    assert owner.call(crossing.evaluate, "usd", 70500, NOW + timedelta(minutes=1)) == 0
    assert len(owner.call(crossing.pending)) == 1
    [message] = owner.call(crossing.pending)
    owner.call(crossing.settle, message.id, "sent", NOW)
    assert owner.call(crossing.pending) == []


def test_at_most_ten_per_owner_and_removal_by_number(owner) -> None:
    for level in range(70000, 80000, 1000):
        assert add(owner, 7, f"above {level}", 67890).outcome == "created"
    assert add(owner, 7, "above 90000", 67890).outcome == "full"
    assert add(owner, 8, "above 90000", 67890).outcome == "created"   # another owner
    assert owner.call(store.remove_alerts, 7, 3) == 1
    assert [v.level for v in owner.call(store.owner_alerts, 7)][:3] == [70000, 71000, 73000]
    assert owner.call(store.remove_alerts, 7, 42) == 0
    assert owner.call(store.remove_alerts, 7, None) == 9
    assert len(owner.call(store.owner_alerts, 8)) == 1


def test_a_blocked_chat_gets_no_more_crossings(owner) -> None:
    add(owner, 1, "above 70000", 67890)
    owner.call(store.disable_chat_alerts, 1)
    assert cross(owner, 71000) == []


def test_the_users_currency(owner) -> None:
    assert owner.call(store.user_currency, 5, "usd", CURRENCIES) == "usd"
    owner.call(store.set_user_currency, 5, 5, "eur", NOW, "UTC")
    assert owner.call(store.user_currency, 5, "usd", CURRENCIES) == "eur"
    assert owner.call(store.user_currency, 5, "usd", ("usd",)) == "usd"   # no longer offered


def test_the_evaluation_is_one_indexed_range_per_side(owner, backend: str) -> None:
    """100,000 alerts, a price change crossing 1,000 of them: found by index, in
    bounded time (the bench measures it; here: a generous bound and the plan)."""
    def fill() -> None:
        rows = [dict(owner_id=i, chat_id=i, kind="above", currency="usd", level=70000 + i,
                     repeats=False, state="armed", up_level=70000 + i, enabled=True,
                     created_at=NOW) for i in range(100_000)]
        for start in range(0, len(rows), 5000):
            PriceAlert.insert_many(rows[start:start + 5000]).execute()
    owner.call(fill)
    started = time.perf_counter()
    assert owner.call(crossing.evaluate, "usd", 70999, NOW) == 1000
    took = time.perf_counter() - started
    assert took < 2.0, took
    if backend == "sqlite":
        from buzzbotd.db.raw import rows
        plan = owner.call(rows, "EXPLAIN QUERY PLAN SELECT id FROM price_alert WHERE "
                                "currency = 'usd' AND up_level <= 1 AND enabled = 1")
        assert any("price_alert_up" in str(row) for row in plan), plan


def test_migrate_db_carries_alerts_and_their_outbox(tmp_path, postgres_server) -> None:
    from buzzbotd.db import SqliteOwner
    from buzzbotd.db.copy import copy

    sqlite = SqliteOwner(tmp_path / "buzzbotd.db")
    sqlite.start()
    add(sqlite, 1, "above 70000 repeat", 67890)
    add(sqlite, 2, "move 5%", 67890)
    sqlite.call(crossing.evaluate, "usd", 71000, NOW)
    sqlite.stop()
    counts = copy(tmp_path / "buzzbotd.db", postgres_server.create_database(), None)
    assert counts["price_alert"] == 2 and counts["alert_message"] == 1


def test_only_currencies_with_a_waiting_alert_are_watched(owner) -> None:
    assert owner.call(crossing.watched, CURRENCIES) == []
    add(owner, 1, "above 70000 eur", 60000)
    assert owner.call(crossing.watched, CURRENCIES) == ["eur"]
    cross(owner, 71000, "eur")                     # fired: nothing waits any more
    assert owner.call(crossing.watched, CURRENCIES) == []
