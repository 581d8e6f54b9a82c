"""What `buzzbotd status` reports, from a database in a known state."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from buzzbotd import config
from buzzbotd.db import DatabaseOwner, Post, meta
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
    owner = DatabaseOwner(tmp_path / "buzzbotd.db")
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
                                           "reason": None, "attempts": 0}
    assert report["x"]["failed_last_day"] == 1 and report["x"]["paused"] is True
    assert (report["telegram"]["users"], report["telegram"]["reminders_enabled"],
            report["telegram"]["reminders_disabled"]) == (1, 2, 1)
    assert report["health"]["heartbeat_age_s"] == 0
