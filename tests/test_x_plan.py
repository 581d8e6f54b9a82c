"""X as it answers in 2026 (SPEC "X as it answers in 2026", issue 22), the daemon a
real process against the fake X: reads refused by the app's plan, posts refused
for credits or the monthly cap, a legacy Free app's 503s, t.co links and escaped
text on the timeline, the monthly budget, and a slot whose price came too late."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from buzzbotd.timeofday import slot_key
from tests.fakes import Fault
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.fakes.x import POST_TWEET, USER_ID, FakeX
from tests.support import Daemon, free_port
from tests.support.x_world import SlotClock, hhmmss, post_row, status_json, wait_final, x_config

TIMELINE = f"GET /2/users/{USER_ID}/tweets"
ADMIN = 777


@pytest.fixture
def x() -> Iterator[FakeX]:
    # X's own duplicate check on, as in life: the daemon's one more POST relies on it.
    fake = FakeX(reject_duplicates=True).start()
    yield fake
    fake.stop()


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram().start()
    yield fake
    fake.stop()


def with_alerts(telegram: FakeTelegram) -> dict:
    return {"enabled": True, "api_base": telegram.url, "token": TOKEN,
            "admin_ids": [ADMIN], "alert_admins": True}


@pytest.mark.parametrize("stored", [True, False], ids=["first-post-stored", "never-processed"])
def test_an_unknown_outcome_with_reads_refused_is_settled_by_one_more_post(
        tmp_path, notify, spawn, x, price, daemon_db, stored):
    clock = SlotClock(tmp_path, x)
    due = clock.due
    key = slot_key(due)
    config = x_config(tmp_path, x, price, [hhmmss(due)], database_url=daemon_db.url)
    x.refuse_reads = x.not_enrolled()
    # The connection drops with no answer: after X stored the tweet, or before.
    x.add_fault(POST_TWEET, Fault.drop(after=stored))
    daemon: Daemon = spawn(config, notify, **clock.daemon_args())
    clock.arrive(daemon)
    line = wait_final(daemon, key, timeout=40)
    assert ": posted: " in line, line
    assert len(x.tweets) == 1 and x.post_attempts <= 3, (x.tweets, x.post_attempts)
    assert x.timeline_reads <= 1
    assert x.users_me == 0, "the account id comes from the access token"
    if stored:
        assert "duplicate" in line and "earlier attempt is already posted" in line, line
    report = status_json(config)["x"]
    assert report["reads_refused"].startswith("timeline reads refused by X (plan)"), report
    assert "Client Forbidden" in report["reads_refused"], report
    assert post_row(config, key)["state"] == "posted"


def test_a_refused_read_is_not_tried_again_for_a_day(tmp_path, notify, spawn, x, price):
    clock = SlotClock(tmp_path, x)
    first = clock.due
    second = first + timedelta(seconds=90)
    config = x_config(tmp_path, x, price, [hhmmss(first), hhmmss(second)], grace_s=60)
    x.refuse_reads = x.credits_depleted()
    x.add_fault(POST_TWEET, Fault.drop(after=True), times=1)
    daemon: Daemon = spawn(config, notify, **clock.daemon_args())
    clock.arrive(daemon)
    assert ": posted: " in wait_final(daemon, slot_key(first), timeout=40)
    assert x.timeline_reads == 1
    x.add_fault(POST_TWEET, Fault.drop(after=True), times=1)
    clock.set_to(second - timedelta(seconds=1))
    assert ": posted: " in wait_final(daemon, slot_key(second), timeout=40)
    assert x.timeline_reads == 1, "a read refused for the plan is not tried again"
    assert len(x.tweets) == 2 and x.post_attempts == 4


def test_a_read_429_resetting_within_the_window_is_waited_for(tmp_path, notify, spawn, x,
                                                               price):
    clock = SlotClock(tmp_path, x)
    due = clock.due
    config = x_config(tmp_path, x, price, [hhmmss(due)], grace_s=120)
    limited = x.rate_limited(reset_at=0)
    resets: list[float] = []

    def reset_in_3s(request) -> None:
        resets.append(int(x.clock().timestamp()) + 3)
        limited.headers["x-rate-limit-reset"] = str(int(resets[-1]))

    limited.on_hit = reset_in_3s
    x.add_fault(TIMELINE, limited)
    x.add_fault(POST_TWEET, Fault.drop(after=True))
    daemon: Daemon = spawn(config, notify, **clock.daemon_args())
    clock.arrive(daemon)
    line = wait_final(daemon, slot_key(due), timeout=40)
    assert "found on the account's timeline" in line, line
    reads = [r for r in x.requests if x.route(r) == TIMELINE]
    assert len(reads) == 2 and x.post_attempts == 1 and len(x.tweets) == 1
    assert reads[1].at >= clock.real(datetime.fromtimestamp(resets[0], UTC))


@pytest.mark.parametrize("refusal, cause", [
    ("credits_depleted", "402 CreditsDepleted: Your enrolled account does not have any credits"),
    ("usage_capped", "429 UsageCapExceeded: Usage cap exceeded: Monthly product cap"),
], ids=["402-credits", "429-usage-cap"])
def test_no_credits_or_the_monthly_cap_fail_the_slot_at_once_naming_the_cause(
        tmp_path, notify, spawn, x, price, telegram, refusal, cause):
    clock = SlotClock(tmp_path, x)
    due = clock.due
    config = x_config(tmp_path, x, price, [hhmmss(due)], telegram=with_alerts(telegram))
    x.refuse_posts = getattr(x, refusal)()
    daemon: Daemon = spawn(config, notify, **clock.daemon_args())
    clock.arrive(daemon)
    line = wait_final(daemon, slot_key(due), timeout=30)
    assert f": failed: {cause}" in line, line
    assert x.post_attempts <= 3 and x.tweets == []
    alert = telegram.wait_for_message(ADMIN, "X posting", timeout=15)
    assert cause in alert.text, alert.text


def test_503_to_every_post_of_three_slots_names_the_legacy_free_plan(tmp_path, notify, spawn,
                                                                     x, price, telegram):
    clock = SlotClock(tmp_path, x)
    slots = [clock.due + timedelta(seconds=100 * i) for i in range(3)]
    config = x_config(tmp_path, x, price, [hhmmss(s) for s in slots], grace_s=60,
                      telegram=with_alerts(telegram))
    x.refuse_posts = x.legacy_503()
    daemon: Daemon = spawn(config, notify, **clock.daemon_args())
    clock.arrive(daemon)
    lines = []
    for slot in slots:
        # Two 503s within the slot, then its window (the 60 s floor of x.grace_s) passes.
        clock.set_to(slot)
        attempts = x.post_attempts
        assert x.wait_until(lambda n=attempts: x.post_attempts >= n + 2, 30)
        clock.set_to(slot + timedelta(seconds=61))
        lines.append(wait_final(daemon, slot_key(slot), timeout=30))
    assert all(": failed: X answered 503 to every attempt" in line for line in lines), lines
    assert "legacy Free plan" not in lines[0] + lines[1], lines
    assert "X answers 503 to every post: an app on the legacy Free plan can no longer post; " \
        "move it to pay-per-use" in lines[2], lines[2]
    assert "503 Service Unavailable" in lines[2], lines[2]
    telegram.wait_for_message(ADMIN, "legacy Free plan", timeout=15)


def test_t_co_links_and_escaped_text_on_the_timeline_settle(tmp_path, notify, spawn, price):
    x = FakeX(reject_duplicates=False).start()   # a second POST would show as a second tweet
    try:
        clock = SlotClock(tmp_path, x)
        due = clock.due
        config = x_config(tmp_path, x, price, [hhmmss(due)],
                          template="BTC & sats <3 ${price:,.2f} at {time} "
                                   "https://example.com/btc?a=1&b=2")
        x.add_fault(POST_TWEET, Fault.drop(after=True))
        daemon: Daemon = spawn(config, notify, **clock.daemon_args())
        clock.arrive(daemon)
        line = wait_final(daemon, slot_key(due), timeout=40)
        assert "found on the account's timeline" in line, line
        assert len(x.tweets) == 1 and x.post_attempts == 1 and x.timeline_reads == 1
        timeline = x.requests[-1] if x.route(x.requests[-1]) == TIMELINE else None
        assert timeline is None or "entities" in timeline.query["tweet.fields"][0]
    finally:
        x.stop()


def test_a_slot_that_would_pass_the_monthly_budget_is_skipped(tmp_path, notify, spawn, x,
                                                              price, telegram):
    clock = SlotClock(tmp_path, x)
    first = clock.due
    second = first + timedelta(seconds=3)
    # One post ($0.015) is 83 % of the budget: one alert; a second would pass it.
    port = free_port()
    config = x_config(tmp_path, x, price, [hhmmss(first), hhmmss(second)],
                      telegram=with_alerts(telegram), monthly_budget_usd=0.018,
                      listen=f"127.0.0.1:{port}")
    daemon: Daemon = spawn(config, notify, **clock.daemon_args())
    clock.arrive(daemon)
    assert ": posted: " in wait_final(daemon, slot_key(first), timeout=30)
    line = wait_final(daemon, slot_key(second), timeout=30)
    assert ": skipped: monthly X budget reached" in line, line
    assert x.post_attempts == 1 and len(x.tweets) == 1
    warning = telegram.wait_for_message(ADMIN, "83%", timeout=15)
    assert "x.monthly_budget_usd" in warning.text, warning.text
    telegram.wait_for_message(ADMIN, "monthly X budget reached", timeout=15)
    report = status_json(config)["x"]
    assert report["spend_usd_this_month"] == pytest.approx(0.015), report
    assert report["requests_this_month"] == {"post": 1}, report
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        metrics = answer.read().decode()
    assert 'buzzbotd_x_requests_total{kind="post"} 1.0' in metrics, metrics
    assert 'buzzbotd_x_requests_total{kind="read"} 0.0' in metrics, metrics
    assert "buzzbotd_x_spend_usd 0.015" in metrics, metrics


def test_a_price_that_comes_after_the_window_is_not_posted(tmp_path, notify, spawn, x, price):
    clock = SlotClock(tmp_path, x)
    due = clock.due
    config = x_config(tmp_path, x, price, [hhmmss(due)], grace_s=60)
    # The price API answers after 1.5 s (its timeout is 2 s); meanwhile the slot's
    # window passes (the clock is moved past it).
    price.delay_s = 1.5
    daemon: Daemon = spawn(config, notify, **clock.daemon_args())
    clock.arrive(daemon)
    # The request is recorded when it arrives, before its 1.5 s answer: look often.
    deadline = time.monotonic() + 30
    while not price.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert price.requests, "the price was never fetched"
    clock.set_to(due + timedelta(seconds=61))
    line = wait_final(daemon, slot_key(due), timeout=30)
    assert ": failed: gave up at the end of the slot's window: the price came after it" \
        in line, line
    assert x.post_attempts == 0 and x.tweets == []
