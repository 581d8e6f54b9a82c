"""`make demo`: buzzbotd against local stand-ins of X, Telegram and the price API.

Everything runs on 127.0.0.1 with the test servers of tests/fakes: no
accounts, no root, nothing written outside the repo and one temporary
directory. The daemon is the real `buzzbotd run`, with three tweet slots a few
seconds apart; a simulated user asks for the price, sets a reminder and (as
the admin) asks for the status; a reminder that came due while the daemon was
"down" is delivered when it starts. It ends by itself within a minute, or on
Ctrl-C, and says where the state and the log are.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.fakes.price import FakePrice
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.fakes.x import CREDENTIALS, FakeX
from tests.support import Daemon, NotifySocket, write_config
from tests.support.telegram_world import database_of, seed_reminders
from tests.support.x_world import hhmmss, slot_in

USER = 4242                    # the simulated Telegram user, also the demo's admin
SLOT_OFFSETS_S = (10, 25, 40)  # after start


class Show:
    """Prints, as they happen, the journal, the tweets and the bot's messages."""

    def __init__(self, daemon: Daemon, x: FakeX, telegram: FakeTelegram) -> None:
        self.daemon, self.x, self.telegram = daemon, x, telegram
        self.started = time.monotonic()
        self._seen = {"journal": 0, "tweets": 0, "sent": 0}

    def say(self, who: str, text: str) -> None:
        elapsed = time.monotonic() - self.started
        first, *rest = text.splitlines() or [""]
        print(f"{elapsed:5.1f}s  {who:<9} {first}")
        for line in rest:
            print(f"{'':17}{line}")
        sys.stdout.flush()

    def catch_up(self) -> None:
        for _, line in self.daemon.lines[self._seen["journal"]:]:
            self._seen["journal"] += 1
            self.say("journal", line)
        for tweet in self.x.tweets[self._seen["tweets"]:]:
            self._seen["tweets"] += 1
            self.say("X", f"tweeted: {tweet.text}")
        for sent in self.telegram.sent[self._seen["sent"]:]:
            self._seen["sent"] += 1
            self.say("Telegram", f"bot → {sent.chat_id}: {sent.text}")

    def until(self, done, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.catch_up()
            if done():
                return True
            time.sleep(0.1)          # a screen refresh, not a test
        self.catch_up()
        return done()


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="buzzbotd-demo-"))
    price = FakePrice(67890.12, -1.23).start()
    x = FakeX().start()
    telegram = FakeTelegram().start()
    slots = [slot_in(offset) for offset in SLOT_OFFSETS_S]
    config = write_config(
        workdir,
        price={"url": price.endpoint, "timeout_s": 2},
        x={"enabled": True, "api_base": x.url, "times": [hhmmss(s) for s in slots],
           "timezone": "UTC", "grace_s": 60,
           "template": "Bitcoin is at ${price:,.2f} ({change_24h:+.2f}% in 24h) #BTC",
           **CREDENTIALS},
        telegram={"enabled": True, "api_base": telegram.url,
                  "token": TOKEN, "admin_ids": [USER]},
    )
    # A reminder that came due a minute ago, while the daemon was not running:
    # it is within telegram.reminder_grace_s, so it is sent as soon as it starts.
    seed_reminders(database_of(workdir), 1, datetime.now(UTC) - timedelta(minutes=1),
                   first_user=USER)
    print(f"buzzbotd demo: fake X {x.url}, fake Telegram {telegram.url}, "
          f"fake price API {price.url}")
    print(f"tweet slots at {', '.join(hhmmss(s) for s in slots)} UTC; "
          f"it ends by itself within a minute (Ctrl-C ends it now)\n")
    notify = NotifySocket(workdir / "notify.sock")
    daemon = Daemon(config, notify)
    show = Show(daemon, x, telegram)
    try:
        notify.wait_message("READY=1", timeout=30)
        show.say("systemd", f"READY=1, STATUS={notify.statuses()[-1]}")
        show.until(lambda: telegram.messages_to(USER), 15)      # the missed reminder
        for text in ("/start", "/price", "/remind 08:00 Asia/Kolkata", "/reminders", "/status"):
            since = len(telegram.sent)
            show.catch_up()
            show.say("user", f"{USER} → bot: {text}")
            telegram.inject_message(USER, text, first_name="Demo")
            show.until(lambda since=since: any(s.chat_id == USER
                                               for s in telegram.sent[since:]), 15)
        for n, slot in enumerate(slots, 1):
            show.until(lambda n=n: len(x.tweets) >= n,
                       max(slot.timestamp() - time.time(), 0) + 10)
            price.set_price(67890.12 + 321.5 * n, -1.23 + 0.7 * n)   # the market moves
    except KeyboardInterrupt:
        print("\nCtrl-C: stopping")
    finally:
        daemon.terminate()
        show.catch_up()
        notify.close()
        for fake in (x, telegram, price):
            fake.stop()
    log_path = workdir / "buzzbotd.log"
    log_path.write_text(daemon.log + "\n")
    print(f"\n{len(x.tweets)} tweets posted, {len(telegram.sent)} Telegram messages sent.")
    print(f"state:  {workdir / 'state'}  (try: .venv/bin/buzzbotd status --config {config})")
    print(f"log:    {log_path}")
    print(f"config: {config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
