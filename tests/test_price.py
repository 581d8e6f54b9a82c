"""The price client against the fake price API: retries, timeouts, strict checks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from buzzbotd.config import PriceSettings
from buzzbotd.price import PriceClient, PriceError, PriceUnavailable
from tests.fakes import Fault
from tests.fakes.price import ROUTE, FakePrice
from tests.support import ManualClock

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakePrice]:
    server = FakePrice(67890.12, -1.23).start()
    yield server
    server.stop()


def client(fake: FakePrice, waits: list[float], timeout_s: float = 2.0,
           clock=lambda: NOW) -> PriceClient:
    """The primary only (no fallbacks: test_price_sources.py has those)."""
    return PriceClient(PriceSettings(url=fake.endpoint, timeout_s=timeout_s, fallbacks=()),
                       clock=clock, sleep=waits.append)


def test_a_good_answer(fake: FakePrice) -> None:
    quote = client(fake, []).fetch()
    assert (quote.price, quote.change_24h, quote.fetched_at) == (67890.12, -1.23, NOW)


def test_5xx_429_and_drops_are_retried_with_growing_jittered_waits(fake: FakePrice) -> None:
    fake.add_fault(ROUTE, Fault.status_code(503))
    fake.add_fault(ROUTE, Fault.drop())
    waits: list[float] = []
    assert client(fake, waits).fetch().price == 67890.12
    assert len(fake.requests) == 3
    # the one retry policy (buzzbotd.retry): half of each doubling step fixed, half random
    assert 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0, waits


def test_gives_up_after_three_attempts(fake: FakePrice) -> None:
    fake.add_fault(ROUTE, Fault.status_code(429), times=5)
    with pytest.raises(PriceError, match=r"HTTP 429 \(after 3 attempts\)"):
        client(fake, []).fetch()
    assert len(fake.requests) == 3


def test_a_hang_times_out(fake: FakePrice) -> None:
    fake.add_fault(ROUTE, Fault.hang(10), times=3)
    with pytest.raises(PriceError, match="timed out"):
        client(fake, [], timeout_s=0.3).fetch()


@pytest.mark.parametrize(("body", "message"), [
    (b"<html>oops</html>", "not JSON"),
    ([1, 2], "expected"),
    ({"bitcoin": {"usd": 0, "usd_24h_change": 1}}, "positive price"),
    ({"bitcoin": {"usd": True, "usd_24h_change": 1}}, "expected a number at bitcoin.usd"),
    ({"bitcoin": {"usd": 1e400, "usd_24h_change": 1}}, "finite"),
    ({"bitcoin": {"usd": 10**400, "usd_24h_change": 1}}, "finite number at bitcoin.usd"),
    ({"bitcoin": {"usd": 5.0, "usd_24h_change": -10**400}}, "bitcoin.usd_24h_change"),
    ({"bitcoin": {"usd": 5.0}}, "bitcoin.usd_24h_change"),
])
def test_bad_answers_are_errors_not_retried(fake: FakePrice, body, message) -> None:
    fake.serve_raw(body)
    with pytest.raises(PriceError, match=message):
        client(fake, []).fetch()
    assert len(fake.requests) == 1


def test_a_long_bad_answer_is_quoted_cut_to_80_characters(fake: FakePrice) -> None:
    """As every cut text reads (runtime/text.py): the start and "...", 80 in all."""
    body = "<html>" + "x" * 500 + "</html>"
    fake.serve_raw(body.encode())
    with pytest.raises(PriceError) as caught:
        client(fake, []).fetch()
    assert str(caught.value) == f"not JSON: {body[:77]}..."


def test_latest_reuses_a_fresh_quote(fake: FakePrice) -> None:
    clock = ManualClock(NOW)
    prices = client(fake, [], clock=clock)
    prices.latest(max_age_s=30)
    clock.now += timedelta(seconds=29)
    prices.latest(max_age_s=30)
    assert len(fake.requests) == 1
    clock.now += timedelta(seconds=2)
    prices.latest(max_age_s=30)
    assert len(fake.requests) == 2


# -- one shared fetch ------------------------------------------------------------------


def test_concurrent_askers_share_one_request(fake: FakePrice) -> None:
    fake.delay_s = 0.5
    prices = client(fake, [])
    answers: list[float] = []
    ready = threading.Barrier(12)

    def ask(poster: bool) -> None:
        ready.wait()
        answers.append((prices.fetch() if poster else prices.latest(60)).price)

    threads = [threading.Thread(target=ask, args=(i == 0,), name=f"asker-{i}")
               for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == [67890.12] * 12
    assert len(fake.requests) == 1


def test_an_outage_costs_a_bounded_number_of_requests_and_keeps_the_last_price(
        fake: FakePrice) -> None:
    clock = ManualClock(NOW)
    prices = client(fake, [], clock=clock)
    assert prices.latest(60).price == 67890.12
    fake.add_fault(ROUTE, Fault.status_code(503), times=10_000)
    clock.now += timedelta(minutes=12)
    for _ in range(50):                     # one asker every 2 s for 100 s
        with pytest.raises(PriceUnavailable, match="HTTP 503") as caught:
            prices.latest(60)
        assert caught.value.last is not None and caught.value.last.fetched_at == NOW
        clock.now += timedelta(seconds=2)
    # Fetches at +0 s (then held 30 s), +30 s (held 60 s) and +90 s: 3 attempts each,
    # where each asker used to make 3 of its own (150).
    assert len(fake.requests) - 1 == 9
    # The poster's fetch is not held back: a slot needs the price of now.
    fake.clear_faults()
    assert prices.fetch().fetched_at == clock.now
    assert prices.latest(60).fetched_at == clock.now
    assert len(fake.requests) - 1 == 10


def test_a_429_retry_after_holds_the_askers_back_that_long(fake: FakePrice) -> None:
    clock = ManualClock(NOW)
    prices = client(fake, [], clock=clock)
    fake.add_fault(ROUTE, Fault.status_code(429, headers={"Retry-After": "120"}))
    with pytest.raises(PriceUnavailable) as caught:
        prices.latest(60)
    assert caught.value.last is None
    clock.now += timedelta(seconds=119)
    with pytest.raises(PriceUnavailable, match="not asking again for 1s"):
        prices.latest(60)
    # Retry-After is honoured between attempts too: no second attempt 0.5 s after a
    # 429 that asked for 120 s (the fetch gives up on that source at once).
    assert len(fake.requests) == 1
    clock.now += timedelta(seconds=1)
    assert prices.latest(60).price == 67890.12
    assert len(fake.requests) == 2
