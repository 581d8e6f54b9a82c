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

from tests.fakes.base import Fault
from tests.fakes.telegram import FakeTelegram
from tests.fakes.x import CREDENTIALS, FakeX
from tests.harness import REPO
from tests.telegram_world import ADMIN, World, reminder_rows
from tests.x_world import status_json

PUBLIC = ["price", "remind", "reminders", "unremind", "help"]
ADMIN_ONLY = ["status", "tweet", "pause", "resume"]
_users = itertools.count(2000)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world = World(tmp_path_factory.mktemp("telegram"),
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
    assert world.telegram.ask(new_user(), "/price") == \
        "Bitcoin is at $67,890.12 (-1.23% in 24h)."


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


def test_tweet_when_x_is_off(world: World) -> None:
    assert world.telegram.ask(ADMIN, "/tweet").startswith("X posting is off")


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
    for _ in range(3):
        world.telegram.inject_message(user, "/price")
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
