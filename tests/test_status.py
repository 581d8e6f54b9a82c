"""What `buzzbotd status` reports, from a database in a known state."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from buzzbotd import config
from buzzbotd.db import Post, SqliteOwner, meta
from buzzbotd.db.models import Reminder, TelegramUser
from buzzbotd.ops import status
from tests.support import write_config

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def fill(count_posts: int) -> None:
    for i in range(count_posts):
        due = NOW - timedelta(hours=4 * (i + 1))
        Post.create(slot_key=f"slot-{i}", kind="scheduled", due_at=due,
                    state="failed" if i == 0 else "posted", text="t", tweet_id=str(i),
                    created_at=due, updated_at=due)
    user = TelegramUser.create(id=7, chat_id=7, timezone="UTC", created_at=NOW, updated_at=NOW)
    for local, enabled in (("08:00", True), ("09:00", True), ("10:00", False)):
        Reminder.create(user=user, chat_id=7, local_time=local, timezone="UTC",
                        next_due_at=NOW, enabled=enabled, created_at=NOW)
    meta.set_paused(True, NOW)


def test_report_counts_posts_slots_and_reminders(tmp_path: Path) -> None:
    settings = config.load(write_config(tmp_path, x={"times": ["08:00", "12:00", "16:00"]}))
    settings = replace(settings, x=replace(settings.x, enabled=True),
                       telegram=replace(settings.telegram, enabled=True))
    owner = SqliteOwner(tmp_path / "buzzbotd.db")
    owner.start()
    try:
        owner.call(fill, 7)
        report = owner.call(status.collect, settings, NOW)
    finally:
        owner.stop()
    x, telegram = report["x"], report["telegram"]
    assert [p["slot_key"] for p in x["last_posts"]] == [f"slot-{i}" for i in range(5)]
    assert [s["slot_key"] for s in x["next_slots"]] == [
        "2026-11-22T12:00:00Z", "2026-11-22T16:00:00Z", "2026-11-23T08:00:00Z"]
    assert x["paused"] is True and x["failed_last_day"] == 1
    assert (telegram["users"], telegram["reminders_enabled"],
            telegram["reminders_disabled"]) == (1, 2, 1)
    assert status.status_line(report) == "ready: X posting paused, 2 reminders"
    text = status.render(report, pid=None)
    assert "Telegram bot: 1 user, 2 reminders on, 1 off" in text
    assert "PAUSED" in text and "daemon: not running" in text


def test_the_report_and_the_heartbeat_read_alike_on_both_backends(owner, tmp_path: Path) -> None:
    """status.collect and meta.put_many are plain SQL (run twice a minute): the same
    answers from SQLite and PostgreSQL."""
    settings = config.load(write_config(tmp_path, x={"times": ["08:00"]}))
    settings = replace(settings, x=replace(settings.x, enabled=True))
    owner.call(fill, 7)
    owner.call(meta.put_many, {meta.HEARTBEAT: "2026-11-22T09:29:50Z", meta.HEALTH: ""})
    owner.call(meta.put_many, {meta.HEARTBEAT: "2026-11-22T09:30:00Z"})
    report = owner.call(status.collect, settings, NOW)
    assert report["x"]["last_posts"][0] == {"slot_key": "slot-0", "kind": "scheduled",
                                           "state": "failed", "tweet_id": "0", "text": "t",
                                           "reason": None, "attempts": 0,
                                           "network": "x", "url": None}
    assert report["x"]["failed_last_day"] == 1 and report["x"]["paused"] is True
    assert (report["telegram"]["users"], report["telegram"]["reminders_enabled"],
            report["telegram"]["reminders_disabled"]) == (1, 2, 1)
    assert report["health"]["heartbeat_age_s"] == 0


def test_status_on_postgresql_shows_no_secret_of_the_url(tmp_path: Path, postgres_server) -> None:
    """A password given as ?password= connects and is shown nowhere, nor are
    sslpassword and passfile (issue 21): `buzzbotd status`, text and JSON."""
    import json
    import subprocess
    import sys

    from buzzbotd.db.postgres import PostgresOwner
    from tests.support import REPO
    from tests.support.postgres import PASSWORD

    url = postgres_server.create_database()
    schema = PostgresOwner(url)        # the schema, as the daemon's first start makes it
    schema.start()
    schema.stop()
    bare = url.replace(f":{PASSWORD}@", "@")
    secrets = (PASSWORD, "ssl-secret-pw", "pgpass-secret")
    config_file = write_config(tmp_path, database={
        "url": f"{bare}?sslmode=disable&password={PASSWORD}&sslpassword={secrets[1]}"
               f"&passfile=/nonexistent/{secrets[2]}"})
    shown = []
    for form in (["--json"], []):
        done = subprocess.run([sys.executable, "-m", "buzzbotd", "status", *form, "--config",
                               str(config_file)], capture_output=True, text=True, cwd=REPO,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert [s for s in secrets if s in done.stdout + done.stderr] == []
        shown.append(done.stdout)
    assert json.loads(shown[0])["database"] == (
        f"{bare}?sslmode=disable&sslpassword=***&passfile=***")


def test_x_requests_spend_and_refused_reads_are_shown(owner, tmp_path: Path) -> None:
    from buzzbotd.posting import ledger
    settings = config.load(write_config(tmp_path, x={"times": ["08:00"]}))
    settings = replace(settings, x=replace(settings.x, enabled=True))
    owner.call(ledger.add_usage, "post", 0.015, NOW - timedelta(days=30))   # last month
    for kind, usd in (("post", 0.015), ("post", 0.2), ("read", 0.002), ("post", 0.0)):
        owner.call(ledger.add_usage, kind, usd, NOW)
    owner.call(ledger.record_reads_refused, "403 Client Forbidden: When authenticating…",
               NOW - timedelta(hours=2))
    x = owner.call(status.collect, settings, NOW)["x"]
    assert x["requests_this_month"] == {"post": 3, "read": 1}
    assert x["spend_usd_this_month"] == 0.217
    assert x["reads_refused"] == ("timeline reads refused by X (plan) since "
                                  "2026-11-22T07:30:00Z: 403 Client Forbidden: When "
                                  "authenticating…")
    text = status.render(owner.call(status.collect, settings, NOW), pid=None)
    assert "this month: X requests 3 post, 1 read; estimated spend $0.217" in text
    assert "timeline reads refused by X (plan)" in text
    # A day later the daemon reads again, and status stops saying so.
    later = owner.call(status.collect, settings, NOW + timedelta(hours=23))["x"]
    assert later["reads_refused"] is None


def test_the_heartbeat_records_where_the_last_price_came_from(owner, tmp_path: Path) -> None:
    from buzzbotd.price import Quote
    settings = config.load(write_config(tmp_path))
    assert owner.call(status.collect, settings, NOW)["price"] == {"source": None,
                                                                 "fetched_at": None}
    quote = Quote(67890.12, -1.23, NOW - timedelta(seconds=40), "kraken")
    report = owner.call(status.heartbeat, settings, NOW, [], {}, quote)
    assert report["price"] == {"source": "kraken", "fetched_at": "2026-11-22T09:29:20Z"}
    assert "Price: last good quote from kraken at 2026-11-22T09:29:20Z" in status.render(
        report, pid=None)


def test_every_network_shows_in_status_the_status_line_and_the_page(owner, tmp_path: Path
                                                                    ) -> None:
    from buzzbotd.web import page
    settings = config.load(write_config(tmp_path, x={"times": ["08:00"]}))
    settings = replace(settings, bluesky=replace(settings.bluesky, enabled=True))
    url = "https://bsky.app/profile/buzz.bsky.social/post/3lbu7ia7kqq2a"

    def posts() -> None:
        due = NOW - timedelta(hours=1)
        Post.create(slot_key="2026-11-22T08:30:00Z", network="bluesky", kind="scheduled",
                    due_at=due, state="posted", text="BTC 1", tweet_id="at://x", url=url,
                    created_at=due, updated_at=due)
        Post.create(slot_key="2026-11-22T08:30:00Z", network="mastodon", kind="scheduled",
                    due_at=due, state="failed", text="BTC 1", reason="401 mastodon.access_token",
                    created_at=due, updated_at=due)
    owner.call(posts)
    report = owner.call(status.collect, settings, NOW)
    assert report["x"]["networks"] == ["bluesky"]
    assert status.status_line(report).startswith("ready: next post (bluesky) 08:00 UTC")
    text = status.render(report, pid=None)
    assert "Posting to bluesky: on" in text and "2026-11-22T08:30:00Z bluesky" in text
    assert url in text and "401 mastodon.access_token" in text
    html = page.render(owner.call(page.collect, settings, NOW), {"loop": "ok"}, NOW)
    assert f'<a href="{url}">BTC 1</a>' in html
    assert "<td>mastodon</td><td>failed</td>" in html
