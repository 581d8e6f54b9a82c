"""The Bluesky client against the fake PDS: exactly one post per slot whatever
happens between them, sessions made once and renewed, facets at the right bytes."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from buzzbotd.config.keys import Secret
from buzzbotd.posting import tid
from buzzbotd.posting.bluesky import BlueskyClient, Session
from buzzbotd.posting.outcome import CredentialsRefused, Failed, NotSent, Posted, Unknown
from buzzbotd.posting.richtext import facets
from tests.fakes import Fault
from tests.fakes.bluesky import (
    APP_PASSWORD,
    CREATE_RECORD,
    CREATE_SESSION,
    DID,
    HANDLE,
    REFRESH_SESSION,
    FakeBluesky,
)
from tests.support import REPO
from tests.support.networks_world import ManualClock as Clock
from tests.support.networks_world import running

KEY = "2026-12-07T08:00:00Z"
TEXT = "Bitcoin is at $97,123.45 (+1.20% in 24h) #BTC"
START = datetime(2026, 12, 7, 8, 0, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture(params=["500", "named"])
def pds(request: pytest.FixtureRequest, clock: Clock) -> Iterator[FakeBluesky]:
    """Both PDS generations: an existing key answered 500, or RecordAlreadyExists."""
    with running(FakeBluesky(existing_key=request.param), clock) as fake:
        yield fake


def client(pds: FakeBluesky, clock: Clock, password: str = APP_PASSWORD,
           session: Session | None = None, kept: list[Session] | None = None) -> BlueskyClient:
    return BlueskyClient(pds.url, HANDLE, Secret(password, "test"), session=session,
                         on_session=kept.append if kept is not None else None,
                         clock=clock, timeout_s=1.0)


def creates(pds: FakeBluesky) -> int:
    return sum(1 for r in pds.requests if pds.route(r) == CREATE_RECORD)


# -- the record key ------------------------------------------------------------------


def test_the_tid_of_a_slot_is_stable_valid_and_within_the_slot_s_second() -> None:
    rkey = tid.for_slot(KEY, "bluesky")
    again = subprocess.run(
        [sys.executable, "-c", "from buzzbotd.posting import tid; "
         f"print(tid.for_slot({KEY!r}, 'bluesky'))"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    assert again == rkey                     # another process: no hash seed in it
    assert tid.is_valid(rkey) and len(rkey) == 13
    micros, _ = tid.decode(rkey)
    assert datetime.fromtimestamp(micros // 1_000_000, UTC) == datetime(2026, 12, 7, 8, tzinfo=UTC)
    others = {tid.for_slot(KEY, "mastodon"), tid.for_slot(f"manual-{KEY}", "bluesky"),
              tid.for_slot(f"manual-{KEY}-2", "bluesky")}
    assert rkey not in others and len(others) == 3
    assert tid.for_slot("2026-12-07T12:00:00Z", "bluesky") > rkey      # sorts by slot


def test_the_tid_encoding_is_the_spec_s() -> None:
    # atproto.com/specs/tid: zero is 2222222222222; @atcute/tid's README:
    # TID.create(1724171495793000, 512) is "3l25zusnsfck2".
    assert tid.encode(0, 0) == "2222222222222"
    assert tid.encode(1724171495793000, 512) == "3l25zusnsfck2"
    assert tid.decode("3l25zusnsfck2") == (1724171495793000, 512)
    assert not tid.is_valid("kl25zusnsfck2") and not tid.is_valid("3l25zusnsfck")
    with pytest.raises(ValueError, match="names no UTC instant"):
        tid.for_slot("no-instant", "bluesky")


# -- posting exactly once ------------------------------------------------------------


def test_a_post_carries_its_record_key_and_facets_at_utf8_byte_offsets(
        pds: FakeBluesky, clock: Clock) -> None:
    text = "Le bitcoin vaut 97 123,45 € 🚀 voir https://exemple.fr/prix?d=1. #BTC #Übersicht"
    outcome = client(pds, clock).post(KEY, text)
    rkey = tid.for_slot(KEY, "bluesky")
    assert outcome == Posted(f"at://{DID}/app.bsky.feed.post/{rkey}",
                             f"https://bsky.app/profile/{HANDLE}/post/{rkey}", "created")
    [record] = pds.posts()
    assert record.rkey == rkey and record.value["text"] == text
    raw = text.encode()
    spans = [(raw[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode(), f["features"][0])
             for f in record.value["facets"]]
    assert spans == [
        ("https://exemple.fr/prix?d=1",
         {"$type": "app.bsky.richtext.facet#link", "uri": "https://exemple.fr/prix?d=1"}),
        ("#BTC", {"$type": "app.bsky.richtext.facet#tag", "tag": "BTC"}),
        ("#Übersicht", {"$type": "app.bsky.richtext.facet#tag", "tag": "Übersicht"}),
    ]
    # by hand: the link is the 36th character on; "€" is 3 bytes (2 more than one)
    # and "🚀" 4 (3 more), so it is the 41st byte on
    assert text.index("https") == 35
    assert record.value["facets"][0]["index"]["byteStart"] == 35 + 2 + 3


def test_no_facets_where_there_is_nothing_to_click() -> None:
    assert facets("#123 # #! a#b 1.5% (up)") == []
    assert [f["features"][0]["tag"] for f in facets("buy $btc, sell #sats!")] == ["$BTC", "sats"]


def test_crash_after_accept_is_settled_by_a_new_client(pds: FakeBluesky, clock: Clock) -> None:
    pds.add_fault(CREATE_RECORD, Fault.drop(after=True))
    kept: list[Session] = []
    first = client(pds, clock, kept=kept).post(KEY, TEXT)
    assert isinstance(first, Unknown), first
    # the daemon dies here; the next one starts with the session it had kept
    later = client(pds, clock, session=Session.from_json(kept[-1].to_json()))
    settled = later.settle(KEY, TEXT, START)
    assert isinstance(settled, Posted) and settled.how.startswith("found record"), settled
    again = later.post(KEY, TEXT)          # even a blind retry cannot post twice
    assert isinstance(again, Posted) and "found record" in again.how, again
    assert len(pds.posts()) == 1 and pds.sessions_created == 1


def test_accept_then_hang_is_unknown_then_settled(pds: FakeBluesky, clock: Clock) -> None:
    pds.add_fault(CREATE_RECORD, Fault.hang(5, after=True))
    bluesky = client(pds, clock)
    outcome = bluesky.post(KEY, TEXT)
    assert outcome == Unknown("no answer from bluesky: ReadTimeout")
    assert isinstance(bluesky.settle(KEY, TEXT, START), Posted)
    assert len(pds.posts()) == 1


def test_5xx_then_accept_posts_once(pds: FakeBluesky, clock: Clock) -> None:
    pds.add_fault(CREATE_RECORD, Fault.status_code(503, b"<html>503 Service Unavailable</html>"))
    bluesky = client(pds, clock)
    first = bluesky.post(KEY, TEXT)
    assert isinstance(first, NotSent) and "no record" in first.reason, first
    assert isinstance(bluesky.post(KEY, TEXT), Posted)
    assert len(pds.posts()) == 1 and creates(pds) == 2


def test_settling_a_post_that_never_landed_says_not_sent(pds: FakeBluesky, clock: Clock) -> None:
    pds.add_fault(CREATE_RECORD, Fault.drop())                 # dropped before the work
    bluesky = client(pds, clock)
    assert isinstance(bluesky.post(KEY, TEXT), Unknown)
    settled = bluesky.settle(KEY, TEXT, START)
    assert isinstance(settled, NotSent) and "did not post" in settled.reason
    assert pds.posts() == []


def test_settling_when_the_pds_cannot_be_read_stays_unknown(pds: FakeBluesky,
                                                            clock: Clock) -> None:
    pds.add_fault("GET /xrpc/com.atproto.repo.getRecord", Fault.status_code(502, b"bad gateway"))
    assert isinstance(client(pds, clock).settle(KEY, TEXT, START), Unknown)


# -- the session ---------------------------------------------------------------------


def test_an_expired_session_is_refreshed_once_and_the_post_made(pds: FakeBluesky,
                                                                clock: Clock) -> None:
    bluesky = client(pds, clock)
    bluesky.open_session()
    pds.expire_tokens()                  # the PDS's view: hours later; the client's clock stands
    assert isinstance(bluesky.post(KEY, TEXT), Posted)
    assert (pds.sessions_created, pds.sessions_refreshed, creates(pds)) == (1, 1, 2)
    assert len(pds.posts()) == 1


def test_a_token_still_refused_after_its_refresh_is_not_retried_in_a_loop(
        pds: FakeBluesky, clock: Clock) -> None:
    pds.access_ttl_s = -10                  # the PDS's clock is ahead: every token born expired
    outcome = client(pds, clock).post(KEY, TEXT)
    assert outcome == NotSent("400 ExpiredToken from Bluesky")
    # one refresh before use (the token reads expired), one after the refusal, no more
    assert (pds.sessions_created, pds.sessions_refreshed, creates(pds)) == (1, 2, 2)


def test_a_session_near_its_expiry_is_refreshed_before_use(pds: FakeBluesky,
                                                           clock: Clock) -> None:
    kept: list[Session] = []
    bluesky = client(pds, clock, kept=kept)
    first = bluesky.open_session()
    clock.now += timedelta(minutes=116)                      # 4 of its 120 minutes left
    assert isinstance(bluesky.post(KEY, TEXT), Posted)
    assert (pds.sessions_created, pds.sessions_refreshed, creates(pds)) == (1, 1, 1)
    assert kept[-1] is bluesky.session and kept[-1].access_jwt != first.access_jwt


def test_an_expired_refresh_token_logs_in_again(pds: FakeBluesky, clock: Clock) -> None:
    bluesky = client(pds, clock)
    bluesky.open_session()
    clock.now += timedelta(days=91)
    assert isinstance(bluesky.post(KEY, TEXT), Posted)
    assert (pds.sessions_created, pds.sessions_refreshed) == (2, 0)


def test_a_kept_session_needs_no_login_and_never_shows_its_tokens(
        pds: FakeBluesky, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    session = client(pds, clock).open_session()
    restored = Session.from_json(session.to_json())
    assert restored == session
    assert isinstance(client(pds, clock, session=restored).post(KEY, TEXT), Posted)
    assert pds.sessions_created == 1
    for shown in (repr(session), str(session), caplog.text):
        assert session.access_jwt not in shown and session.refresh_jwt not in shown
        assert APP_PASSWORD not in shown
    assert DID in repr(session)
    with pytest.raises(ValueError, match="not a stored Bluesky session"):
        Session.from_json('{"did": "x"}')


def test_a_refused_app_password_names_the_key(pds: FakeBluesky, clock: Clock) -> None:
    bluesky = client(pds, clock, password="wrong-pass-word-xxxx")
    with pytest.raises(CredentialsRefused, match="bluesky.app_password") as refused:
        bluesky.open_session()
    assert "wrong-pass" not in str(refused.value)
    outcome = bluesky.post(KEY, TEXT)
    assert isinstance(outcome, Failed) and outcome.config_key == "bluesky.app_password"
    assert "Invalid identifier or password" in outcome.reason and creates(pds) == 0


# -- limits ----------------------------------------------------------------------------


def test_a_429_waits_for_ratelimit_reset(pds: FakeBluesky, clock: Clock) -> None:
    reset = START + timedelta(seconds=90)
    pds.add_fault(CREATE_RECORD, pds.rate_limited(reset.timestamp(), limit=5000, window_s=3600))
    outcome = client(pds, clock).post(KEY, TEXT)
    assert outcome == NotSent("429 RateLimitExceeded from Bluesky", reset)
    assert pds.posts() == []


def test_a_login_over_create_session_s_limit_waits(pds: FakeBluesky, clock: Clock) -> None:
    for _ in range(30):                          # 30 per 5 minutes
        client(pds, clock).open_session()
    outcome = client(pds, clock).post(KEY, TEXT)
    assert isinstance(outcome, NotSent) and outcome.not_before == START + timedelta(minutes=5)
    assert pds.sessions_created == 30 and creates(pds) == 0
    assert sum(1 for r in pds.requests if pds.route(r) == CREATE_SESSION) == 31
    assert not any(pds.route(r) == REFRESH_SESSION for r in pds.requests)


def test_more_than_300_graphemes_fail_before_any_request(pds: FakeBluesky,
                                                         clock: Clock) -> None:
    accented = "e\u0301"                         # one grapheme of two code points
    assert isinstance(client(pds, clock).post(KEY, accented * 300), Posted)
    outcome = client(pds, clock).post(f"manual-{KEY}", accented * 301)
    assert outcome == Failed("the text has 301 graphemes; Bluesky takes at most 300",
                             "bluesky.template")
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"    # one grapheme, 18 bytes
    assert client(pds, clock).post(f"manual-{KEY}-2", family * 200) == Failed(
        "the text has 3600 bytes of UTF-8; Bluesky takes at most 3000", "bluesky.template")
    assert creates(pds) == 1
