"""`make demo`: buzzbotd against local stand-ins of X, Bluesky, Mastodon, Telegram
and the price API.

Everything runs on 127.0.0.1 with the test servers of tests/fakes: no
accounts, no root, nothing written outside the repo and one temporary
directory. The daemon is the real `buzzbotd run`, with three slots a few
seconds apart, each posted once to X, Bluesky, Mastodon and a Telegram
channel; a simulated user asks for the price, sets a reminder and a price
alert and (as the admin) asks for the status; a reminder that came due while
the daemon was "down" is delivered when it starts, and the alert fires once
when the fake price crosses its level. The status page is served while it
runs (its address is printed). It ends by itself within a minute, or on
Ctrl-C, and says where the state and the log are.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.fakes.bluesky import APP_PASSWORD, HANDLE, FakeBluesky
from tests.fakes.mastodon import ACCESS_TOKEN, FakeMastodon
from tests.fakes.price import FakePrice
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.fakes.x import CREDENTIALS, FakeX
from tests.support import Daemon, NotifySocket, free_port, write_config
from tests.support.telegram_world import database_of, seed_reminders
from tests.support.x_world import hhmmss, slot_in

USER = 4242                    # the simulated Telegram user, also the demo's admin
CHANNEL = -1009876543210       # the Telegram channel the bot posts each slot to
SLOT_OFFSETS_S = (10, 25, 40)  # after start
ALERT_LEVEL = 68100            # the user's alert: the price crosses it after the first slot


class Show:
    """Prints, as they happen, the journal, the tweets and the bot's messages."""

    def __init__(self, daemon: Daemon, x: FakeX, telegram: FakeTelegram, pds: FakeBluesky,
                 mastodon: FakeMastodon) -> None:
        self.daemon, self.x, self.telegram = daemon, x, telegram
        self.pds, self.mastodon = pds, mastodon
        self.started = time.monotonic()
        self._seen = {"journal": 0, "tweets": 0, "sent": 0, "bluesky": 0, "mastodon": 0}

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
        for record in self.pds.posts()[self._seen["bluesky"]:]:
            self._seen["bluesky"] += 1
            self.say("Bluesky", f"posted: {record.value.get('text')}")
        for text in self.mastodon.texts()[self._seen["mastodon"]:]:
            self._seen["mastodon"] += 1
            self.say("Mastodon", f"tooted: {text}")
        for sent in self.telegram.sent[self._seen["sent"]:]:
            self._seen["sent"] += 1
            where = "channel" if sent.chat_id == CHANNEL else sent.chat_id
            self.say("Telegram", f"bot → {where}: {sent.text}")

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
    pds, mastodon = FakeBluesky().start(), FakeMastodon().start()
    slots = [slot_in(offset) for offset in SLOT_OFFSETS_S]
    port = free_port()
    config = write_config(
        workdir,
        price={"url": price.endpoint, "timeout_s": 2},
        posts={"times": [hhmmss(s) for s in slots], "timezone": "UTC", "grace_s": 60,
               "template": "Bitcoin is at ${price:,.2f} ({change_24h:+.2f}% in 24h) #BTC"},
        x={"enabled": True, "api_base": x.url, **CREDENTIALS},
        bluesky={"enabled": True, "service": pds.url, "handle": HANDLE,
                 "app_password": APP_PASSWORD},
        mastodon={"enabled": True, "instance": mastodon.url, "access_token": ACCESS_TOKEN},
        telegram={"enabled": True, "api_base": telegram.url, "token": TOKEN,
                  "admin_ids": [USER], "channel": CHANNEL, "alert_check_s": 15},
        http={"listen": f"127.0.0.1:{port}"},
    )
    # A reminder that came due a minute ago, while the daemon was not running:
    # it is within telegram.reminder_grace_s, so it is sent as soon as it starts.
    seed_reminders(database_of(workdir), 1, datetime.now(UTC) - timedelta(minutes=1),
                   first_user=USER)
    print(f"buzzbotd demo: fake X {x.url}, Bluesky {pds.url}, Mastodon {mastodon.url}, "
          f"Telegram {telegram.url}, price API {price.url}")
    print(f"slots at {', '.join(hhmmss(s) for s in slots)} UTC, each to X, Bluesky, "
          "Mastodon and a Telegram channel; it ends by itself within a minute (Ctrl-C "
          "ends it now)")
    print(f"the status page, while it runs: http://127.0.0.1:{port}/\n")
    notify = NotifySocket(workdir / "notify.sock")
    daemon = Daemon(config, notify)
    show = Show(daemon, x, telegram, pds, mastodon)
    try:
        notify.wait_message("READY=1", timeout=30)
        show.say("systemd", f"READY=1, STATUS={notify.statuses()[-1]}")
        show.until(lambda: telegram.messages_to(USER), 15)      # the missed reminder
        for text in ("/start", "/price", "/remind 08:00 mon-fri Asia/Kolkata", "/reminders",
                     f"/alert above {ALERT_LEVEL}", "/status"):
            since = len(telegram.sent)
            show.catch_up()
            show.say("user", f"{USER} → bot: {text}")
            telegram.inject_message(USER, text, first_name="Demo")
            show.until(lambda since=since: any(s.chat_id == USER
                                               for s in telegram.sent[since:]), 15)
        for n, slot in enumerate(slots, 1):
            show.until(lambda n=n: len(x.tweets) >= n and len(mastodon.texts()) >= n,
                       max(slot.timestamp() - time.time(), 0) + 10)
            price.set_price(67890.12 + 321.5 * n, -1.23 + 0.7 * n)   # the market moves
        # The price crossed the alert's level after the first slot: one message.
        show.until(lambda: any("🔔" in m for m in telegram.messages_to(USER)), 20)
    except KeyboardInterrupt:
        print("\nCtrl-C: stopping")
    finally:
        daemon.terminate()
        show.catch_up()
        notify.close()
        for fake in (x, telegram, price, pds, mastodon):
            fake.stop()
    log_path = workdir / "buzzbotd.log"
    log_path.write_text(daemon.log + "\n")
    alerts = sum("🔔" in m for m in telegram.messages_to(USER))
    print(f"\n{len(x.tweets)} tweets, {len(pds.posts())} Bluesky posts, "
          f"{len(mastodon.texts())} Mastodon statuses, "
          f"{len(telegram.messages_to(CHANNEL))} channel messages; {alerts} price alert; "
          f"{len(telegram.sent)} Telegram messages in all.")
    print(f"state:  {workdir / 'state'}  (try: .venv/bin/buzzbotd status --config {config})")
    print(f"log:    {log_path}")
    print(f"config: {config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
