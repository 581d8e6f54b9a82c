"""The price from more than one source: currencies, the key in a header, the
fallbacks (Coinbase Exchange, Kraken) and the check that never lets a wrong
price through; each against its fake, in-process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from buzzbotd import config
from buzzbotd.config import PriceSettings
from buzzbotd.config.keys import Secret
from buzzbotd.ops.metrics import METRICS
from buzzbotd.price import PriceClient, PriceError
from buzzbotd.price.sources import CoinGecko
from tests.fakes import Fault
from tests.fakes.exchanges import (
    COINBASE_ROUTE,
    KRAKEN_OHLC,
    KRAKEN_TICKER,
    FakeCoinbase,
    FakeKraken,
)
from tests.fakes.price import ROUTE, FakePrice

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
KEY = "CG-SECRETdemoKEY1234567890"


@pytest.fixture
def fakes() -> Iterator[tuple[FakePrice, FakeCoinbase, FakeKraken]]:
    servers = (FakePrice().start(), FakeCoinbase().start(), FakeKraken().start())
    yield servers              # type: ignore[misc]
    for server in servers:
        server.stop()


def client(fakes, waits: list[float] | None = None, clock=lambda: NOW, **settings
           ) -> PriceClient:
    gecko, coinbase, kraken = fakes
    values = {"url": gecko.endpoint, "timeout_s": 2.0, "coinbase_url": coinbase.url,
              "kraken_url": kraken.url} | settings
    return PriceClient(PriceSettings(**values), clock=clock,
                       sleep=(waits if waits is not None else []).append)


def quotes_from(source: str) -> float:
    counters, _ = METRICS.snapshot()
    return counters[("price_quotes_total", (source,))]


def test_every_currency_comes_in_one_request_and_the_template_gets_each(fakes) -> None:
    gecko, _, _ = fakes
    quote = client(fakes, currencies=("eur", "usd")).fetch()
    assert len(gecko.requests) == 1
    assert gecko.requests[0].query["vs_currencies"] == ["eur,usd"]
    assert quote.source == "coingecko"
    assert quote.price == pytest.approx(67890.12 * 0.92, abs=0.01)   # the first is the default
    assert quote.price_in("usd") == (67890.12, -1.23)
    assert quote.fields()["price_usd"] == 67890.12


def test_the_primary_down_the_fallback_answers_naming_itself(fakes) -> None:
    gecko, coinbase, kraken = fakes
    gecko.add_fault(ROUTE, Fault.status_code(503), times=3)
    before = quotes_from("coinbase")
    quote = client(fakes, currencies=("usd", "eur")).fetch()
    assert quote.source == "coinbase"
    assert quote.price == pytest.approx(67890.12, abs=0.01)
    assert quote.change_24h == pytest.approx(-1.23, abs=0.01)
    assert quote.price_in("eur")[0] == pytest.approx(67890.12 * 0.92, abs=0.01)
    assert [r.path for r in coinbase.requests] == ["/products/BTC-USD/stats",
                                                   "/products/BTC-EUR/stats"]
    assert kraken.requests == []
    assert quotes_from("coinbase") == before + 1


def test_kraken_answers_when_both_others_fail_with_the_24h_change_from_ohlc(fakes) -> None:
    gecko, coinbase, kraken = fakes
    gecko.add_fault(ROUTE, Fault.drop(), times=3)
    coinbase.add_fault(COINBASE_ROUTE, Fault.status_code(
        429, {"message": "Public rate limit exceeded"}, {"Retry-After": "60"}))
    quote = client(fakes).fetch()
    assert quote.source == "kraken"
    assert quote.price == pytest.approx(67890.1, abs=0.1)
    # Kraken's ticker "o" is today's open (here: the last price, a 0 % day); the
    # change must come from the OHLC row of 24 h ago instead.
    assert quote.change_24h == pytest.approx(-1.23, abs=0.01)
    routes = [kraken.route(r) for r in kraken.requests]
    assert routes == [KRAKEN_TICKER, KRAKEN_OHLC]
    since = int(kraken.requests[1].query["since"][0])
    assert since == int((NOW - timedelta(hours=24)).timestamp())
    # The 429 asked for 60 s: Coinbase was not asked again 0.5 s later.
    assert len(coinbase.requests) == 1


def test_a_source_without_the_currency_is_an_error_naming_it(fakes) -> None:
    gecko, _, _ = fakes
    gecko.add_fault(ROUTE, Fault.status_code(500), times=3)
    with pytest.raises(PriceError) as caught:
        client(fakes, currencies=("usd", "chf")).fetch()
    message = str(caught.value)
    assert "coinbase: HTTP 404" in message and "NotFound" in message
    assert "kraken: Kraken: EQuery:Unknown asset pair" in message


def test_retry_after_is_waited_between_attempts(fakes) -> None:
    gecko, _, _ = fakes
    gecko.add_fault(ROUTE, Fault.status_code(429, headers={"Retry-After": "3"}))
    waits: list[float] = []
    assert client(fakes, waits).fetch().source == "coingecko"
    assert len(waits) == 1 and waits[0] >= 3.0


# -- never a wrong price -----------------------------------------------------------------


def test_a_30_percent_jump_from_one_source_and_not_the_others_is_never_used(
        fakes, caplog: pytest.LogCaptureFixture) -> None:
    gecko, coinbase, kraken = fakes
    now = [NOW]
    prices = client(fakes, clock=lambda: now[0])
    assert prices.fetch().price == 67890.12
    now[0] += timedelta(minutes=10)
    gecko.set_price(88257.16, 28.0)          # +30 %; the exchanges still say 67,890
    with caplog.at_level(logging.ERROR, "buzzbotd.price"), pytest.raises(PriceError) as caught:
        prices.fetch()
    assert "+30%" in str(caught.value) and "not confirmed" in str(caught.value)
    assert "coinbase says 67,890.12" in str(caught.value)
    assert any("not used" in r.getMessage() for r in caplog.records)
    assert len(coinbase.requests) == 1 and len(kraken.requests) == 2
    assert prices.latest(3600).price == 67890.12       # the last good one stays


def test_a_jump_confirmed_by_a_second_source_is_used(fakes) -> None:
    gecko, coinbase, kraken = fakes
    now = [NOW]
    prices = client(fakes, clock=lambda: now[0])
    prices.fetch()
    now[0] += timedelta(minutes=10)
    for fake in (gecko, coinbase, kraken):
        fake.set_price(88257.16, 28.0)
    assert prices.fetch().price == 88257.16
    assert len(coinbase.requests) == 1 and kraken.requests == []


def test_a_jump_over_a_last_price_older_than_an_hour_needs_no_second_source(fakes) -> None:
    gecko, coinbase, _ = fakes
    now = [NOW]
    prices = client(fakes, clock=lambda: now[0], fallbacks=())
    prices.fetch()
    now[0] += timedelta(hours=1)
    gecko.set_price(88257.16, 28.0)
    assert prices.fetch().price == 88257.16
    assert coinbase.requests == []


def test_with_no_fallback_a_jump_is_an_error(fakes) -> None:
    gecko, _, _ = fakes
    now = [NOW]
    prices = client(fakes, clock=lambda: now[0], fallbacks=())
    prices.fetch()
    now[0] += timedelta(minutes=1)
    gecko.set_price(40000.0, -41.0)
    with pytest.raises(PriceError, match=r"-41%.*not confirmed by a second source \(none\)"):
        prices.fetch()


# -- the key -----------------------------------------------------------------------------


def test_the_key_travels_only_as_a_header_and_never_in_a_log_line(
        fakes, caplog: pytest.LogCaptureFixture) -> None:
    gecko, _, _ = fakes
    gecko.add_fault(ROUTE, Fault.status_code(503))
    gecko.add_fault(ROUTE, Fault.drop())
    with caplog.at_level(logging.DEBUG):
        quote = client(fakes, api_key=Secret(KEY, "test")).fetch()
    assert quote.source == "coingecko"
    for request in gecko.requests:
        assert request.headers.get("x-cg-demo-api-key") == KEY
        assert KEY not in request.path and KEY not in str(request.query)
    assert caplog.records, "httpx logs its requests at debug"
    assert not [r for r in caplog.records if KEY in r.getMessage()]


def test_the_pro_host_gets_the_pro_header() -> None:
    pro = CoinGecko("https://pro-api.coingecko.com/api/v3/simple/price?ids=bitcoin", KEY)
    demo = CoinGecko("https://api.coingecko.com/api/v3/simple/price?ids=bitcoin", KEY)
    assert pro.headers == {"x-cg-pro-api-key": KEY}
    assert demo.headers == {"x-cg-demo-api-key": KEY}


# -- the configuration -------------------------------------------------------------------


def load(tmp_path: Path, toml: str, environ: dict[str, str] | None = None) -> config.Settings:
    path = tmp_path / "buzzbotd.toml"
    path.write_text(f'[daemon]\nstate_dir = "{tmp_path}/state"\n[x]\nenabled = false\n'
                    f'[telegram]\nenabled = false\n{toml}')
    return config.load(path, environ or {})


@pytest.mark.parametrize(("toml", "expected"), [
    ('[price]\nurl = "https://api.coingecko.com/api/v3/simple/price?ids=bitcoin'
     f'&x_cg_demo_api_key={KEY}"\n', "price.url: holds an API key (x_cg_demo_api_key=…)"),
    ('[price]\nfallbacks = ["krakn"]\n', 'price.fallbacks[0] = "krakn": expected a list of '
     '"coinbase", "kraken" (each at most once), or []; did you mean "kraken"?'),
    ('[price]\ncurrencies = ["usd", "usd"]\n', 'price.currencies[1] = "usd": appears twice'),
    ('[price]\ncurrencies = ["dollars"]\n', 'price.currencies[0] = "dollars": expected a list '
     'of currency codes'),
    ('[price]\ncurrencies = []\n', "price.currencies = []: expected a list of currency codes"),
])
def test_bad_price_settings_are_named(tmp_path: Path, toml: str, expected: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        load(tmp_path, toml)
    assert expected in str(caught.value)
    assert KEY not in str(caught.value)


def test_a_template_currency_must_be_fetched(tmp_path: Path) -> None:
    path = tmp_path / "buzzbotd.toml"
    path.write_text(f'[daemon]\nstate_dir = "{tmp_path}/state"\n[telegram]\nenabled = false\n'
                    '[x]\nenabled = false\n[posts]\ntemplate = "BTC {price_eur:,.0f} EUR"\n')
    with pytest.raises(config.ConfigError, match=r'posts.template = .*\{price_eur\} needs '
                                                 r'"eur" in price.currencies'):
        config.load(path, {})
    path.write_text(path.read_text() + '[price]\ncurrencies = ["usd", "eur"]\n')
    assert config.load(path, {}).price.currencies == ("usd", "eur")


def test_the_key_may_come_from_a_credential_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "price_api_key").write_text(KEY + "\n")
    settings = load(tmp_path, "", {"CREDENTIALS_DIRECTORY": str(creds)})
    assert settings.price.api_key.reveal() == KEY
    assert KEY in settings.secrets()
    assert KEY not in repr(settings)
