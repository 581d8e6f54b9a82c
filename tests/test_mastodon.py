"""The Mastodon client against the fake server: exactly one status per slot
through the Idempotency-Key within its hour and the account's statuses after."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from buzzbotd.config.keys import Secret
from buzzbotd.posting.mastodon import MastodonClient, plain_text
from buzzbotd.posting.outcome import Failed, NotSent, Posted, Unknown
from tests.fakes import Fault
from tests.fakes.mastodon import (
    ACCESS_TOKEN,
    ACCOUNT_ID,
    POST_STATUS,
    STATUSES,
    VERIFY,
    FakeMastodon,
)
from tests.support.networks_world import ManualClock as Clock
from tests.support.networks_world import running

KEY = "2026-12-07T08:00:00Z"
# What Mastodon turns into HTML: an ampersand, angle brackets, quotes, a long link
# (shown cut at 30 characters), a hashtag, a line break and a blank line.
TEXT = ("Bitcoin <BTC> & \"sats\" is at $97,123.45 (+1.20% in 24h)\n"
        "https://example.com/a/rather/long/path/to/the/chart?range=24h #BTC\n\nbuzzbotd's")
START = datetime(2026, 12, 7, 8, 0, 1, tzinfo=UTC)


@pytest.fixture
def server(clock: Clock) -> Iterator[FakeMastodon]:
    with running(FakeMastodon(), clock) as fake:
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


def client(server: FakeMastodon, clock: Clock, token: str = ACCESS_TOKEN) -> MastodonClient:
    return MastodonClient(server.url, Secret(token, "test"), visibility="unlisted",
                          clock=clock, timeout_s=1.0)


def count(server: FakeMastodon, route: str) -> int:
    return sum(1 for r in server.requests if server.route(r) == route)


def test_a_post_carries_the_slot_s_idempotency_key_and_visibility(server: FakeMastodon,
                                                                  clock: Clock) -> None:
    outcome = client(server, clock).post(KEY, TEXT)
    [status] = server.statuses
    assert outcome == Posted(status.id, f"{server.url}/@buzz/{status.id}", "created")
    [request] = server.requests
    assert request.headers["Idempotency-Key"] == f"{KEY}:mastodon"
    assert request.json() == {"status": TEXT, "visibility": "unlisted"}
    assert (status.text, status.visibility) == (TEXT, "unlisted")


def test_the_html_content_reads_back_as_the_text(server: FakeMastodon, clock: Clock) -> None:
    client(server, clock).post(KEY, TEXT)
    content = server._entity(server.statuses[0])["content"]
    assert content.startswith("<p>Bitcoin &lt;BTC&gt; &amp; &quot;sats&quot;")
    assert '<span class="ellipsis">example.com/a/rather/long/path</span>' in content
    assert "<br />" in content and "</p><p>buzzbotd&#39;s</p>" in content
    assert plain_text(content).split() == TEXT.split()


def test_key_replay_within_the_hour_makes_one_status(server: FakeMastodon, clock: Clock) -> None:
    server.add_fault(POST_STATUS, Fault.drop(after=True))
    first = client(server, clock).post(KEY, TEXT)
    assert first == Unknown("no answer from mastodon: RemoteProtocolError")
    clock.now += timedelta(minutes=50)
    again = client(server, clock).post(KEY, TEXT)      # another process, the same key
    assert isinstance(again, Posted) and again.id == server.statuses[0].id
    assert len(server.statuses) == 1 and count(server, POST_STATUS) == 2


def test_the_server_forgets_a_key_after_an_hour(server: FakeMastodon, clock: Clock) -> None:
    """What the statuses read is for: the same key an hour on makes a second status."""
    client(server, clock).post(KEY, TEXT)
    clock.now += timedelta(hours=1, seconds=1)
    client(server, clock).post(KEY, TEXT)
    assert len(server.statuses) == 2


def test_crash_after_accept_settled_within_the_hour(server: FakeMastodon, clock: Clock) -> None:
    server.add_fault(POST_STATUS, Fault.drop(after=True))
    assert isinstance(client(server, clock).post(KEY, TEXT), Unknown)
    clock.now += timedelta(minutes=2)
    settled = client(server, clock).settle(KEY, TEXT, START)       # a new process
    assert isinstance(settled, Posted) and settled.how == "found on the account's statuses"
    assert len(server.statuses) == 1 and count(server, VERIFY) == 1


def test_crash_after_accept_settled_after_the_hour_by_reading(server: FakeMastodon,
                                                              clock: Clock) -> None:
    server.add_fault(POST_STATUS, Fault.drop(after=True))
    assert isinstance(client(server, clock).post(KEY, TEXT), Unknown)
    clock.now += timedelta(hours=3)
    settled = client(server, clock).settle(KEY, TEXT, START)
    assert isinstance(settled, Posted) and settled.id == server.statuses[0].id
    assert len(server.statuses) == 1 and count(server, POST_STATUS) == 1


def test_a_status_the_read_cannot_match_is_caught_by_the_key(server: FakeMastodon,
                                                             clock: Clock) -> None:
    """The text as Mastodon shows it may differ (a remote mention, an instance's own
    formatting): within the hour, the repeat under the same key still makes none."""
    server.add_fault(POST_STATUS, Fault.drop(after=True))
    client(server, clock).post(KEY, TEXT)
    server.statuses[0].text += " (edited)"
    settled = client(server, clock).settle(KEY, TEXT, START)
    assert isinstance(settled, Posted) and "same Idempotency-Key" in settled.how
    assert len(server.statuses) == 1 and count(server, POST_STATUS) == 2


def test_accept_then_hang_then_settled(server: FakeMastodon, clock: Clock) -> None:
    server.add_fault(POST_STATUS, Fault.hang(5, after=True))
    mastodon = client(server, clock)
    assert mastodon.post(KEY, TEXT) == Unknown("no answer from mastodon: ReadTimeout")
    assert isinstance(mastodon.settle(KEY, TEXT, START), Posted)
    assert len(server.statuses) == 1


def test_5xx_then_accept_posts_once(server: FakeMastodon, clock: Clock) -> None:
    server.add_fault(POST_STATUS, Fault.status_code(503, b"<html>503</html>"))
    mastodon = client(server, clock)
    first = mastodon.post(KEY, TEXT)
    assert isinstance(first, Unknown) and first.reason.startswith("503 from Mastodon posting")
    settled = mastodon.settle(KEY, TEXT, START)
    assert isinstance(settled, Posted) and "same Idempotency-Key" in settled.how
    assert len(server.statuses) == 1


def test_nothing_found_after_the_hour_is_not_sent(server: FakeMastodon, clock: Clock) -> None:
    server.add_fault(POST_STATUS, Fault.drop())               # dropped before the work
    assert isinstance(client(server, clock).post(KEY, TEXT), Unknown)
    clock.now += timedelta(hours=2)
    settled = client(server, clock).settle(KEY, TEXT, START)
    assert isinstance(settled, NotSent) and "did not post" in settled.reason
    assert server.statuses == [] and count(server, POST_STATUS) == 1


def test_statuses_before_the_attempt_do_not_count(server: FakeMastodon, clock: Clock) -> None:
    client(server, clock).post("2026-12-06T08:00:00Z", TEXT)     # yesterday's, same text
    clock.now += timedelta(days=1)
    found = client(server, clock).find(TEXT, since=clock.now - timedelta(minutes=5))
    assert isinstance(found, NotSent)


def test_unreadable_statuses_keep_the_outcome_unknown_after_the_hour(
        server: FakeMastodon, clock: Clock) -> None:
    server.add_fault(STATUSES, Fault.status_code(502, b"bad gateway"))
    clock.now += timedelta(hours=2)
    assert isinstance(client(server, clock).settle(KEY, TEXT, START), Unknown)


def test_a_refused_token_names_the_key(server: FakeMastodon, clock: Clock,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    mastodon = client(server, clock, token="revoked-token-value")
    outcome = mastodon.post(KEY, TEXT)
    assert outcome == Failed("401 from Mastodon posting: The access token is invalid "
                             "(check mastodon.access_token)", "mastodon.access_token")
    settled = mastodon.settle(KEY, TEXT, START)
    assert isinstance(settled, Failed) and settled.config_key == "mastodon.access_token"
    assert "revoked-token-value" not in caplog.text + repr(outcome) + repr(settled)


def test_a_validation_error_names_the_template(server: FakeMastodon, clock: Clock) -> None:
    assert client(server, clock).post(KEY, "   ") == Failed(
        "422 from Mastodon posting: Validation failed: Text can't be blank",
        "mastodon.template")
    outcome = client(server, clock).post(f"manual-{KEY}", "x" * 501)
    assert outcome == Failed("422 from Mastodon posting: Validation failed: Text character "
                             "limit of 500 exceeded", "mastodon.template")
    assert server.statuses == []


def test_a_429_waits_for_x_ratelimit_reset(server: FakeMastodon, clock: Clock) -> None:
    reset = START + timedelta(minutes=4, seconds=59)
    server.add_fault(POST_STATUS, server.rate_limited(reset))
    assert client(server, clock).post(KEY, TEXT) == NotSent(
        "429 from Mastodon posting: Too many requests", reset)
    assert server.statuses == []


def test_the_account_is_verified_once(server: FakeMastodon, clock: Clock) -> None:
    mastodon = client(server, clock)
    assert mastodon.account_id() == ACCOUNT_ID
    for minutes in (1, 2):
        mastodon.find(TEXT, since=START + timedelta(minutes=minutes))
    assert count(server, VERIFY) == 1 and count(server, STATUSES) == 2
