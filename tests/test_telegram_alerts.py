"""Price alerts, currencies, inline answers and weekday reminders as users see them:
a real daemon, the real python-telegram-bot, the fake Bot API and the fake price
API (whose price a test moves)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.fakes.base import Fault
from tests.support.telegram_world import World

PRICE = "Bitcoin is at $67,890.12 (-1.23% in 24h).\nSource: CoinGecko."
EUR_PRICE = "Bitcoin is at €62,458.91 (-1.23% in 24h).\nSource: CoinGecko."
_users = itertools.count(5000)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world = World(tmp_path_factory.mktemp("alerts"), price={"currencies": ["usd", "eur"]})
    world.start()
    yield world
    world.close()


def test_alert_commands_set_list_and_remove(world: World) -> None:
    user, ask = next(_users), world.telegram.ask
    assert ask(user, "/alert above 100000") == (
        "Done: alert 1, above $100,000. Bitcoin is at $67,890 now. /alerts lists yours.")
    assert ask(user, "/alert below 60000 eur repeat").startswith(
        "Done: alert 2, below €60,000, repeating.")
    assert ask(user, "/alert move 5%").startswith("Done: alert 3, a move of 5% (USD).")
    assert ask(user, "/alerts") == (
        "Your price alerts:\n1. above $100,000\n2. below €60,000, repeating\n"
        "3. a move of 5% (USD)\n/unalert N removes one, /unalert all removes them all.")
    assert ask(user, "/unalert 2") == "Removed 1 alert."
    assert ask(user, "/unalert 9") == "You have no alert 9. /alerts lists yours."
    assert ask(user, "/unalert all") == "Removed 2 alerts."
    assert ask(user, "/alerts").startswith("You have no price alerts. Set one: /alert above")


@pytest.mark.parametrize(("words", "reply"), [
    ("/alert above -5", "-5 is not a price: the level must be above 0, e.g. /alert above 100000"),
    ("/alert move 0%", '"0%" is not a move I can watch: expected a percentage from 0.1% to '
                       "100%, e.g. /alert move 5%"),
    ("/alert above 1e400", '"1e400" is not a price; write digits, e.g. /alert above 100000'),
    ("/alert above 60000", "Bitcoin is at $67,890 already, above $60,000"),
    ("/alert sideways", '"sideways" is not a kind of alert; expected above, below or move.'),
    ("/currency xyz", '"xyz" is not one of the currencies I have: usd, eur. Example: '
                      "/currency eur"),
    ("/unalert first", "Use /unalert N (its number in /alerts) or /unalert all."),
    ("/remind 08:30 funday", '"funday" is neither days (daily, mon-fri, sat,sun, or any list '
                             "or range of mon … sun) nor a timezone I know"),
    ("/mute", "Sorry, that command is for the bot's operators only."),
])
def test_bad_input_gets_the_problem_and_the_form(world: World, words: str, reply: str) -> None:
    assert reply in world.telegram.ask(next(_users), words)


def test_at_most_ten_alerts(world: World) -> None:
    user = next(_users)
    for level in range(70000, 80000, 1000):
        assert world.telegram.ask(user, f"/alert above {level}").startswith("Done")
    assert world.telegram.ask(user, "/alert above 90000").startswith(
        "You have 10 alerts, the most I keep.")


def test_currency_is_used_by_price_and_new_alerts(world: World) -> None:
    user, ask = next(_users), world.telegram.ask
    assert ask(user, "/currency").startswith("Your currency is USD.")
    assert ask(user, "/currency eur") == ("Done: /price, your reminders and new alerts are in "
                                          "EUR now.")
    assert ask(user, "/price") == EUR_PRICE
    assert "above €70,000" in ask(user, "/alert above 70000")
    assert ask(next(_users), "/price") == PRICE          # another user: the default


def test_inline_mode_answers_the_price_in_the_users_currency(world: World) -> None:
    user = next(_users)
    world.telegram.ask(user, "/currency eur")
    query = world.telegram.inject_inline_query(user, "btc")
    assert world.telegram.wait_until(lambda: query in world.telegram.inline_answers, 10)
    answer = world.telegram.inline_answers[query]
    [result] = answer["results"]
    assert result["input_message_content"]["message_text"] == EUR_PRICE
    assert result["title"] == "Bitcoin is at €62,458.91 (-1.23% in 24h)."
    assert answer["is_personal"] and answer["cache_time"] == 30
    # Keystrokes do not fetch: the quote of the last minute answers them all.
    before = len(world.price.requests)
    for text in ("b", "bt", "btc", "btc?"):
        world.telegram.inject_inline_query(user, text)
    assert world.telegram.wait_until(lambda: len(world.telegram.inline_answers) >= 5, 10)
    assert len(world.price.requests) == before


def test_weekday_reminders(world: World) -> None:
    user, ask = next(_users), world.telegram.ask
    reply = ask(user, "/remind 08:30 mon-fri Europe/Berlin")
    assert reply.startswith("Done! I'll remind you every mon-fri at 08:30 (Europe/Berlin)"), reply
    assert "Next: " in reply and (" Sat " not in reply and " Sun " not in reply), reply
    listing = ask(user, "/reminders")
    assert "• 08:30 Europe/Berlin mon-fri – next" in listing, listing
    assert ask(user, "/remind 08:30 sat,sun Europe/Berlin").startswith(
        "Changed: I'll remind you every sat,sun at 08:30")


# -- an alert firing ----------------------------------------------------------------


def fire(world: World) -> None:
    """Moves the daemon's clock past the shared quote's minute and waits for the next
    check to fetch the price (its evaluation follows at once)."""
    fetched = len(world.price.requests)
    world.clock.set_offset(world.clock.offset + 61)
    assert world.price.wait_until(lambda: len(world.price.requests) > fetched, 30)


def test_a_crossing_sends_one_message_however_long_the_price_stays(tmp_path: Path) -> None:
    world = World(tmp_path, telegram={"alert_check_s": 15})
    try:
        world.start()
        user = next(_users)
        assert world.telegram.ask(user, "/alert above 70000 repeat").startswith("Done")
        world.price.set_price(70100.0, 3.2)
        fire(world)
        message = world.telegram.wait_for_message(user, "rose to your level", timeout=20)
        assert message.text == "🔔 Bitcoin is at $70,100: it rose to your level $70,000. " \
                               "(/alerts)"
        # Hovering at the level for several checks: no storm (ten evaluations of a
        # hovering price in-process: test_price_alerts).
        for price in (69990.0, 70050.0, 70200.0):
            world.price.set_price(price, 3.0)
            fire(world)
        assert [m for m in world.telegram.messages_to(user) if "🔔" in m] == [message.text]
    finally:
        world.close()


def test_an_alert_crossed_during_a_kill_9_is_sent_once_after_the_restart(tmp_path: Path) -> None:
    world = World(tmp_path, telegram={"alert_check_s": 15})
    try:
        world.start()
        user = next(_users)
        assert world.telegram.ask(user, "/alert below 65000").startswith("Done")
        # Telegram takes the alert's message and never answers: the crossing is in the
        # outbox, the daemon is killed before it hears back.
        world.telegram.add_fault("sendMessage", Fault.hang(60))
        world.price.set_price(64000.0, -5.0)
        fire(world)
        assert world.daemon is not None
        world.daemon.wait_log("crossed 1 alert(s)", 20)
        world.daemon.kill9()
        world.telegram.clear_faults()
        world.start()
        # The restarted daemon's next check sends what the outbox holds.
        world.telegram.wait_for_message(user, "fell to your level", timeout=40)
        # Another user's crossing proves a later check ran (and sent), and the first
        # user still has one message.
        other = next(_users)
        assert world.telegram.ask(other, "/alert below 63000").startswith("Done")
        world.price.set_price(62000.0, -8.0)
        fire(world)
        world.telegram.wait_for_message(other, "fell to your level", timeout=40)
        assert [m for m in world.telegram.messages_to(user) if "🔔" in m] == [
            "🔔 Bitcoin is at $64,000: it fell to your level $65,000. (/alerts)"]
    finally:
        world.close()


def test_a_reminder_comes_in_its_users_currency(tmp_path: Path) -> None:
    from datetime import time as time_of_day

    from buzzbotd import reminders
    from buzzbotd.pricealerts import store
    from tests.support.telegram_world import BotInProcess

    bot = BotInProcess(tmp_path, price={"currencies": ["usd", "eur"]}).start()
    try:
        due = bot.now + timedelta(minutes=1)
        at = time_of_day(due.hour, due.minute)
        for user in (11, 12):
            bot.owner.call(reminders.set_reminder, user, user, at, "UTC", bot.now, "UTC")
        bot.owner.call(store.set_user_currency, 12, 12, "eur", bot.now, "UTC")
        assert bot.round(due).sent == 2
        assert bot.telegram.messages_to(11) == [
            "⏰ Your daily Bitcoin reminder: Bitcoin is at $67,890.12 (-1.23% in 24h)."]
        assert bot.telegram.messages_to(12) == [
            "⏰ Your daily Bitcoin reminder: Bitcoin is at €62,458.91 (-1.23% in 24h)."]
        assert len(bot.price.requests) == 1          # one price for the round
    finally:
        bot.close()
