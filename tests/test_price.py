"""The price client against the fake price API: retries, timeouts, strict checks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from buzzbotd.config import PriceSettings
from buzzbotd.price import PriceClient, PriceError
from tests.fakes import Fault
from tests.fakes.price import ROUTE, FakePrice

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakePrice]:
    server = FakePrice(67890.12, -1.23).start()
    yield server
    server.stop()


def client(fake: FakePrice, waits: list[float], timeout_s: float = 2.0,
           clock=lambda: NOW) -> PriceClient:
    return PriceClient(PriceSettings(url=fake.endpoint, timeout_s=timeout_s),
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
    assert 0.5 <= waits[0] <= 0.75 and 1.0 <= waits[1] <= 1.5, waits


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


def test_latest_reuses_a_fresh_quote(fake: FakePrice) -> None:
    now = [NOW]
    prices = client(fake, [], clock=lambda: now[0])
    prices.latest(max_age_s=30)
    now[0] += timedelta(seconds=29)
    prices.latest(max_age_s=30)
    assert len(fake.requests) == 1
    now[0] += timedelta(seconds=2)
    prices.latest(max_age_s=30)
    assert len(fake.requests) == 2
