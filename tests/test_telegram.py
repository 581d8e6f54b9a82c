"""The Telegram bot as users see it: a real daemon, the real python-telegram-bot,
talking over HTTP to the fake Bot API. Most tests share one daemon (module
scope) and each uses its own user id, so they stay independent and fast."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from buzzbotd.price import Quote
from buzzbotd.telegram.texts import age_text, stale_price_text
from tests.fakes.base import Fault
from tests.fakes.telegram import FakeTelegram
from tests.fakes.x import CREDENTIALS, FakeX
from tests.support import REPO
from tests.support.backends import on_backend
from tests.support.telegram_world import ADMIN, World, reminder_rows
from tests.support.x_world import status_json

PUBLIC = ["price", "remind", "reminders", "unremind", "alert", "alerts", "unalert", "currency",
          "help"]
ADMIN_ONLY = ["status", "post", "pause", "resume", "mute", "unmute"]
PRICE = "Bitcoin is at $67,890.12 (-1.23% in 24h).\nSource: CoinGecko."
_users = itertools.count(2000)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    """One daemon for the module's command tests, on each backend: what /remind,
    /unremind, /pause and a 403 store is read back from that database."""
    directory = tmp_path_factory.mktemp("telegram")
    world = World(directory, on_backend(request.param, directory, request),
                  telegram={"default_timezone": "Europe/Berlin"})
    world.start()
    yield world
    assert world.daemon is not None
    assert "Traceback" not in world.daemon.log, world.daemon.log
    assert world.stop_daemon() == 0
    world.close()


def new_user() -> int:
    return next(_users)


def rows_of(world: World, user: int) -> list[dict]:
    return [row for row in reminder_rows(world.database) if row["user_id"] == user]


# -- everyone's commands ------------------------------------------------------------


def test_the_command_menu_is_published(world: World) -> None:
    assert world.telegram.commands["default"] == PUBLIC
    assert world.telegram.commands[f"chat:{ADMIN}"] == PUBLIC + ADMIN_ONLY


@pytest.mark.parametrize("command", ["/start", "/help"])
def test_start_and_help_explain_with_examples(world: World, command: str) -> None:
    reply = world.telegram.ask(new_user(), command)
    assert "/remind 08:30 Asia/Kolkata" in reply and "/price" in reply
    assert "/pause" not in reply, "admin commands are not advertised to everyone"
    assert "/pause" in world.telegram.ask(ADMIN, command)


def test_price_shows_the_served_price(world: World) -> None:
    assert world.telegram.ask(new_user(), "/price") == PRICE


def test_remind_reminders_unremind(world: World) -> None:
    user = new_user()
    ask = world.telegram.ask
    reply = ask(user, "/remind 08:30 asia/kolkata")
    assert reply.startswith("Done!") and "08:30 (Asia/Kolkata)" in reply, reply
    # Without a zone: the user's last one, not the default.
    assert "09:15 (Asia/Kolkata)" in ask(user, "/remind 9:15")
    # The same time again is not a second reminder.
    assert ask(user, "/remind 08:30 Asia/Kolkata").startswith("You already have it")
    rows = rows_of(world, user)
    assert sorted((r["local_time"], r["timezone"]) for r in rows) == \
        [("08:30", "Asia/Kolkata"), ("09:15", "Asia/Kolkata")]
    now = datetime.now(UTC)
    for row in rows:
        due = datetime.strptime(row["next_due_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert now < due <= now + timedelta(days=1)
    # A new zone for an existing time changes it instead of adding one.
    assert ask(user, "/remind 08:30 +05:45").startswith("Changed")
    listing = ask(user, "/reminders")
    assert "08:30 +05:45" in listing and "09:15 Asia/Kolkata" in listing, listing
    assert ask(user, "/unremind 09:15") == "Removed 1 reminder."
    assert ask(user, "/unremind 09:15").startswith("You have no reminder at 09:15")
    assert ask(user, "/unremind") == "Removed 1 reminder."
    assert ask(user, "/reminders").startswith("You have no reminders")
    assert rows_of(world, user) == []


def test_without_a_zone_the_default_timezone_is_stored(world: World) -> None:
    user = new_user()
    assert "07:00 (Europe/Berlin)" in world.telegram.ask(user, "/remind 07:00")
    assert [r["timezone"] for r in rows_of(world, user)] == ["Europe/Berlin"]


@pytest.mark.parametrize("zone, stored", [("-4", "-04:00"), ("UTC+2", "+02:00"),
                                          ("utc-03:30", "-03:30"), ("+0530", "+05:30"),
                                          ("AMERICA/NEW_YORK", "America/New_York")])
def test_zones_are_stored_in_canonical_form(world: World, zone: str, stored: str) -> None:
    user = new_user()
    assert world.telegram.ask(user, f"/remind 06:00 {zone}").startswith("Done!")
    assert [r["timezone"] for r in rows_of(world, user)] == [stored]


def test_at_most_five_reminders_per_user(world: World) -> None:
    user = new_user()
    for hour in range(5):
        assert world.telegram.ask(user, f"/remind {hour:02d}:00").startswith("Done!")
    assert "already have 5 reminders" in world.telegram.ask(user, "/remind 06:00")
    assert len(rows_of(world, user)) == 5


BAD_INPUTS = [
    ("/remind", ["Tell me the time of day", "/remind 08:30"]),
    ("/remind 25:00", ['"25:00" is not a time of day', "00:00 to 23:59"]),
    ("/remind 12:60", ['"12:60" is not a time of day']),
    ("/remind 24:00", ['"24:00" is not a time of day']),
    ("/remind 9pm Mars/Olympus", ["9pm is 21:00", '"Mars/Olympus" is not a timezone']),
    ("/remind 8.30", ['"8.30" is not a time of day']),
    ("/remind noon", ['"noon" is not a time of day']),
    ("/remind 12:00 +15:00", ["offsets run from -12:00 to +14:00"]),
    ("/remind 12:00 UTC-13", ["offsets run from -12:00 to +14:00"]),
    ("/remind 12:00 Europe/Berln", ["Did you mean Europe/Berlin?"]),
    ("/remind 12:00 Asia/Kolkata please", ["at most one timezone", "got 3 words"]),
    ("/remind 12:00 " + "Z" * 80, ["too long"]),
    ("/remind 1200", ['"1200" is not a time of day']),
    ("/unremind 7pm", ["7pm is 19:00"]),
    ("/unremind 08:00 09:00", ["/unremind 08:30 to remove one"]),
]


@pytest.mark.parametrize("text, expected", BAD_INPUTS, ids=[t for t, _ in BAD_INPUTS])
def test_bad_input_gets_a_reply_saying_what_is_wrong(world: World, text: str,
                                                     expected: list[str]) -> None:
    user = new_user()
    reply = world.telegram.ask(user, text)
    for fragment in expected:
        assert fragment in reply, reply
    assert rows_of(world, user) == []
    assert world.daemon is not None and world.daemon.proc.poll() is None


@pytest.mark.parametrize("text", ["/frobnicate", "/weather@buzzbotd_test_bot", "hello there"])
def test_anything_else_points_to_help(world: World, text: str) -> None:
    assert "/help lists what I can do" in world.telegram.ask(new_user(), text)


# -- admin commands --------------------------------------------------------------------


def test_status_for_an_admin(world: World) -> None:
    reply = world.telegram.ask(ADMIN, "/status")
    assert "daemon: running (pid" in reply and "Telegram bot:" in reply, reply
    assert "X posting: off" in reply


def test_post_and_tweet_when_no_network_is_on(world: World) -> None:
    for command in ("/post", "/tweet"):
        assert world.telegram.ask(ADMIN, command).startswith(
            "Posting is off (no network is enabled)")


def test_pause_and_resume_are_kept_in_the_database(world: World) -> None:
    reply = world.telegram.ask(ADMIN, "/pause")
    assert reply.startswith("Scheduled tweets paused") and "X posting is off" in reply
    assert status_json(world.config)["x"]["paused"] is True
    assert world.telegram.ask(ADMIN, "/resume").startswith("Scheduled tweets resumed")
    assert status_json(world.config)["x"]["paused"] is False


@pytest.mark.parametrize("command", ADMIN_ONLY)
def test_admin_commands_refuse_others_and_log_them(world: World, command: str) -> None:
    user = new_user()
    before = status_json(world.config)["x"]["paused"]
    reply = world.telegram.ask(user, f"/{command}")
    assert reply.startswith("Sorry, that command is for the bot's operators only"), reply
    assert world.daemon is not None
    line = world.daemon.wait_log(f"user {user} is not an admin and tried /{command}", 5)
    assert line.startswith("<4>")
    assert status_json(world.config)["x"]["paused"] == before


# -- limits ----------------------------------------------------------------------------


def test_replies_to_one_chat_are_a_second_apart_without_a_429(world: World) -> None:
    user = new_user()
    refused_before = world.telegram.too_many["chat"]
    since = len(world.telegram.sent)
    # Three kinds of reply (a second /price while one waits would share its message).
    for command in ("/price", "/help", "/reminders"):
        world.telegram.inject_message(user, command)
    world.telegram.wait_until(lambda: len(world.telegram.messages_to(user)) == 3, 15)
    times = [s.at for s in world.telegram.sent[since:] if s.chat_id == user]
    assert len(times) == 3
    assert all(b - a >= 1.0 for a, b in zip(times, times[1:], strict=False)), times
    assert world.telegram.too_many["chat"] == refused_before, "the bot relied on 429s"


def test_a_429_retry_after_is_waited_out(world: World) -> None:
    user = new_user()
    body = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 2",
            "parameters": {"retry_after": 2}}
    world.telegram.add_fault("sendMessage", Fault.status_code(429, body), times=2)
    started = time.time()
    world.telegram.ask(user, "/price", timeout=20)
    attempts = [r.at for r in world.telegram.requests
                if r.at >= started and world.telegram.route(r) == "sendMessage"]
    assert len(attempts) == 3, attempts
    assert all(b - a >= 2.0 for a, b in zip(attempts, attempts[1:], strict=False)), attempts
    assert len(world.telegram.messages_to(user)) == 1


# -- daemons of their own ----------------------------------------------------------------


def test_tweet_posts_now_when_x_is_on(tmp_path: Path) -> None:
    x = FakeX().start()
    away = (datetime.now(UTC) + timedelta(hours=6)).strftime("%H:%M")
    world = World(tmp_path, x={"enabled": True, "api_base": x.url, "times": [away],
                               **CREDENTIALS})
    try:
        world.start()
        reply = world.telegram.ask(ADMIN, "/tweet", timeout=30)
        assert reply.startswith(f"Posted (tweet {x.tweets[0].id})"), reply
        assert x.texts() == [reply.split("\n", 1)[1]]
        assert "$67,890.12" in x.texts()[0]
        assert world.telegram.ask(new_user(), "/tweet").startswith("Sorry")
        assert len(x.tweets) == 1
    finally:
        world.close()
        x.stop()


def test_409_conflict_is_logged_once_a_minute_and_shown_in_status(tmp_path: Path) -> None:
    world = World(tmp_path)
    try:
        daemon = world.start()
        world.telegram.start_conflict()       # another instance starts polling the token
        assert world.telegram.wait_until(lambda: world.telegram.conflicts >= 3, 20)
        lines = [line for _, line in daemon.lines if "409 Conflict" in line]
        assert len(lines) == 1, lines
        assert lines[0].startswith("<3>") and "another bot instance" in lines[0]
        assert "Traceback" not in daemon.log
        shown = subprocess.run([sys.executable, "-m", "buzzbotd", "status", "--config",
                                str(world.config)], capture_output=True, text=True, cwd=REPO,
                               timeout=30).stdout
        assert "409 Conflict" in shown, shown
        assert status_json(world.config)["telegram"]["last_conflict_at"]
        assert world.notify is not None
        world.notify.wait_for(lambda m: m.startswith("STATUS=ready: ") and "409 Conflict: "
                              "another bot instance polls this token" in m, timeout=5)
        # The daemon stayed up and recovers as soon as the other instance is gone.
        world.telegram.conflict = False
        assert "/price" in world.telegram.ask(new_user(), "/help", timeout=40)
        assert daemon.proc.poll() is None
    finally:
        world.close()


def test_the_fake_ends_an_earlier_poller_with_409(tmp_path: Path) -> None:
    """The fake itself: two pollers at once is what a second instance looks like."""
    import json
    import threading
    import urllib.error
    import urllib.request

    fake = FakeTelegram().start()
    answers: list[int] = []

    def poll(timeout: int) -> None:
        url = f"{fake.url}/bot{fake.token}/getUpdates"
        try:
            with urllib.request.urlopen(url, data=f"timeout={timeout}".encode(),
                                        timeout=10) as r:
                answers.append(200 if json.load(r)["ok"] else 0)
        except urllib.error.HTTPError as e:
            answers.append(e.code)

    try:
        first = threading.Thread(target=poll, args=(5,), name="poller-1")
        first.start()
        assert fake.wait_until(lambda: len(fake.requests) == 1, 5)
        poll(0)
        first.join(10)
        assert sorted(answers) == [200, 409] and fake.conflicts == 1
    finally:
        fake.stop()


# -- the price, shared ------------------------------------------------------------------


def test_concurrent_price_requests_share_one_fetch(tmp_path: Path) -> None:
    world = World(tmp_path)
    try:
        world.start()
        world.price.delay_s = 1.0             # a slow API: the requests overlap
        users = [new_user() for _ in range(10)]
        for user in users:
            world.telegram.inject_message(user, "/price")
        assert world.telegram.wait_until(
            lambda: all(world.telegram.messages_to(u) for u in users), 20)
        assert all(world.telegram.messages_to(u) == [PRICE] for u in users)
        assert len(world.price.requests) == 1
    finally:
        world.close()


def test_during_a_price_outage_price_requests_do_not_hammer_the_api(tmp_path: Path) -> None:
    world = World(tmp_path)
    try:
        world.price.add_fault("GET /api/v3/simple/price", Fault.status_code(429), times=1000)
        daemon = world.start()
        users = [new_user() for _ in range(10)]
        for user in users:                    # one after another, as people do
            reply = world.telegram.ask(user, "/price", timeout=20)
            assert reply.startswith("Sorry, I can't get the price right now"), reply
        # One fetch of 3 attempts, then held: the other nine were answered at once.
        assert len(world.price.requests) == 3
        assert daemon.wait_log("askers get the last good price", 5).startswith("<4>")
    finally:
        world.close()


def test_the_last_good_price_is_shown_with_its_age() -> None:
    fetched = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    quote = Quote(67890.12, -1.23, fetched)
    assert stale_price_text(quote, fetched + timedelta(minutes=12, seconds=40)) == (
        "Bitcoin was at $67,890.12 (-1.23% in 24h) as of 12 min ago; I can't reach the "
        "price service right now.")
    assert age_text(30) == "less than a minute ago"
    assert age_text(3 * 3600 + 5 * 60) == "3 h 5 min ago"
    assert age_text(2 * 3600) == "2 h ago"
    assert age_text(3 * 86400) == "3 days ago"


# -- Telegram's real behaviour --------------------------------------------------------------


def test_a_user_who_blocks_the_bot_has_reminders_switched_off_at_once(world: World) -> None:
    user = new_user()
    assert world.telegram.ask(user, "/remind 08:30").startswith("Done!")
    assert world.telegram.ask(user, "/remind 09:30").startswith("Done!")
    assert "my_chat_member" in (world.telegram.allowed_updates or [])
    world.telegram.inject_my_chat_member(user, "kicked")
    assert world.daemon is not None
    line = world.daemon.wait_log(f"user {user}: the bot was blocked from chat {user}", 10)
    assert "2 reminder(s) disabled" in line
    assert [row["enabled"] for row in rows_of(world, user)] == [0, 0]
    # They unblock it and write again: back on.
    world.telegram.inject_my_chat_member(user, "member", old_status="kicked")
    assert "next " in world.telegram.ask(user, "/reminders")
    assert [row["enabled"] for row in rows_of(world, user)] == [1, 1]


def test_commands_for_another_bot_are_ignored_in_groups(tmp_path: Path) -> None:
    world = World(tmp_path, daemon={"log_level": "debug"})
    try:
        daemon = world.start()
        group, user = -4000, new_user()
        world.telegram.inject_message(user, "/price@otherbot", chat_id=group)
        daemon.wait_log(f"chat {group}: /price@otherbot is for another bot; ignored", 10)
        world.telegram.inject_message(user, "/weather@OtherBot", chat_id=group)
        daemon.wait_log(f"chat {group}: /weather@OtherBot is for another bot; ignored", 10)
        price = PRICE
        assert world.telegram.ask(user, "/price@BuzzBotd_Test_Bot", chat_id=group) == price
        assert world.telegram.ask(user, "/price", chat_id=group) == price
        assert world.telegram.messages_to(group) == [price, price]
        assert "Traceback" not in daemon.log
    finally:
        world.close()


# -- many at once: floods and shared identities (issue 21) ---------------------------------

_groups = itertools.count(-7001, -1)


def ask_as_group(world: World, group: int, text: str) -> str:
    """`text` from an anonymous admin of `group`; the bot's next reply there."""
    since = len(world.telegram.sent)
    world.telegram.inject_anonymous(group, text)
    return world.telegram.wait_for_message(group, timeout=15, since=since).text


def test_anonymous_admins_own_their_own_groups_reminders(world: World) -> None:
    """Telegram sends every anonymous group admin as one user (GroupAnonymousBot): the
    reminders belong to the group in sender_chat, not to that shared user."""
    group_a, group_b = next(_groups), next(_groups)
    assert ask_as_group(world, group_a, "/remind 08:00 UTC").startswith("Done!")
    assert ask_as_group(world, group_a, "/remind 09:00 UTC").startswith("Done!")
    assert ask_as_group(world, group_b, "/reminders").startswith("You have no reminders")
    assert ask_as_group(world, group_b, "/unremind") == "You had no reminders."
    assert sorted(r["local_time"] for r in rows_of(world, group_a)) == ["08:00", "09:00"]
    assert "08:00 UTC" in ask_as_group(world, group_a, "/reminders")
    # The cap of five is each group's own.
    for hour in (10, 11, 12):
        assert ask_as_group(world, group_a, f"/remind {hour}:00").startswith("Done!")
    assert "already have 5" in ask_as_group(world, group_a, "/remind 13:00")
    assert ask_as_group(world, group_b, "/remind 13:00").startswith("Done!")
    assert [r["chat_id"] for r in rows_of(world, group_b)] == [group_b]
    assert not [r for r in reminder_rows(world.database) if r["user_id"] == 1087968824]


def test_admin_commands_are_never_granted_to_the_shared_anonymous_user(tmp_path: Path
                                                                       ) -> None:
    world = World(tmp_path, telegram={"admin_ids": [ADMIN, 1087968824]})
    try:
        world.start()
        group = next(_groups)
        for command in ADMIN_ONLY:
            reply = ask_as_group(world, group, f"/{command}")
            assert reply.startswith("Sorry, that command is for the bot's operators"), reply
        assert status_json(world.config)["x"]["paused"] is False
    finally:
        world.close()


def test_a_command_flood_in_one_group_holds_up_no_other_chat(tmp_path: Path) -> None:
    """40 /price in one group (20 replies a minute there at most): another user's
    /price is answered at once (it took 64 s when each waiting reply held one of
    python-telegram-bot's 16 update slots), and the group's /price wait as one reply."""
    world = World(tmp_path)
    try:
        world.start()
        group, price = next(_groups), PRICE
        for _ in range(40):
            world.telegram.inject_message(new_user(), "/price", chat_id=group)
        assert world.telegram.wait_until(lambda: world.telegram.pending_updates() == 0, 10)
        started = time.monotonic()
        assert world.telegram.ask(new_user(), "/price", timeout=10) == price
        delay = time.monotonic() - started
        print(f"\nanother chat's /price during a 40-/price flood in a group: {delay:.2f}s")
        assert delay < 1.0
        # The first went at once, the other 39 waited as one reply (the same text once).
        assert world.telegram.wait_until(lambda: len(world.telegram.messages_to(group)) >= 2,
                                         10)
        time.sleep(1.5)
        assert world.telegram.messages_to(group) == [price, price]
        assert world.telegram.too_many == {}
    finally:
        world.close()


def test_a_tweet_update_delivered_again_posts_once(tmp_path: Path) -> None:
    """The daemon dies after posting a /tweet and before Telegram learnt that the
    update was received (the next getUpdates' offset): the next start gets the same
    update again, and answers with the same tweet instead of posting a second."""
    x = FakeX().start()
    away = (datetime.now(UTC) + timedelta(hours=6)).strftime("%H:%M")
    world = World(tmp_path, x={"enabled": True, "api_base": x.url, "times": [away],
                               **CREDENTIALS})
    try:
        world.start()
        # The waiting getUpdates gets the /tweet; every later one, which would confirm
        # it, is lost.
        assert world.telegram.wait_until(world.telegram.polling, 20)
        world.telegram.add_fault("getUpdates", Fault.drop(), times=10_000)
        first = world.telegram.ask(ADMIN, "/tweet", timeout=30)
        assert first.startswith(f"Posted (tweet {x.tweets[0].id})"), first
        assert world.daemon is not None
        world.daemon.kill9()
        world.telegram.clear_faults()
        assert world.telegram.pending_updates() == 1, "the update was confirmed after all"
        since = len(world.telegram.sent)
        world.start()
        again = world.telegram.wait_for_message(ADMIN, "tweet", timeout=30, since=since).text
        assert again == first
        assert sum(1 for r in x.requests if x.route(r) == "POST /2/tweets") == 1
        assert len(x.tweets) == 1
    finally:
        world.close()
        x.stop()
