"""The ccxt feed against a local server speaking binance's and kraken's public REST API."""
import time
from decimal import Decimal

import pytest

from scanners.feeds.base import DEGRADED, DOWN, OK
from scanners.feeds.exchanges import CcxtFeed, PaperOnlyError
from tests.conftest import FIXTURES
from tests.venue_server import VenueServer

RECORDING = FIXTURES / "recordings" / "two-venues"
START = 1700000000000
SYMBOLS = ["BTC/USDT", "ETH/USDT"]
# Real venues ask for seconds between calls; the local server does not, so tests poll faster.
FAST = {"binance": {"rateLimit": 10}, "kraken": {"rateLimit": 10}}


@pytest.fixture
def server():
    with VenueServer(RECORDING, clock=START + 20_000, timeout_s=5) as running:
        yield running


@pytest.fixture
def feed(server):
    feed = CcxtFeed(["binance", "kraken"], SYMBOLS, timeout_ms=1500, urls=server.urls(), book_depth=5,
                    exchange_options=FAST, min_refresh_ms=0)
    yield feed
    feed.close()


def states(feed):
    return {s.venue: s.state for s in feed.status()}


def test_quotes_books_and_bars_equal_the_recording(feed, server):
    feed.refresh()
    assert states(feed) == {"binance": OK, "kraken": OK}
    expected = server.feed  # the recording as of the server's clock
    for venue in ("binance", "kraken"):
        for symbol in SYMBOLS:
            quote, recorded = feed.quote(venue, symbol), expected.quote(venue, symbol)
            assert (quote.bid, quote.ask) == (recorded.bid, recorded.ask)
            assert quote.ts <= feed.now()
            book, recorded_book = feed.book(venue, symbol), expected.book(venue, symbol)
            assert book.bids == recorded_book.bids and book.asks == recorded_book.asks
            assert all(isinstance(p, Decimal) and isinstance(s, Decimal) for p, s in book.bids)
            bars = feed.bars(venue, symbol, "1m")
            assert [(b.ts, b.close) for b in bars] == [(b.ts, b.close) for b in expected.bars(venue, symbol, "1m")]
    assert feed.quote("binance", "BTC/USDT").bid_size == Decimal("0.7")
    assert feed.quote("binance", "BTC/USDT").ts == START + 20_000  # binance stamps tickers


def test_markets_load_once_and_fees_come_from_markets(feed, server):
    feed.refresh()
    feed.refresh()
    assert server.requests[("binance", "api/v3/exchangeInfo")] == 1
    assert server.requests[("kraken", "0/public/AssetPairs")] == 1
    assert server.requests[("binance", "api/v3/ticker/24hr")] == 2
    assert feed.taker_fee("binance", "BTC/USDT") == Decimal("0.001")
    assert feed.taker_fee("kraken", "BTC/USDT") == Decimal("0.0026")
    rules = feed.market_rules("binance", "BTC/USDT")
    assert rules["amount_step"] == Decimal("0.00001") and rules["min_cost"] == Decimal("5.0")


def test_the_market_moves_with_the_server_clock_and_history_keeps_changes(feed, server):
    feed.refresh()
    first = feed.quote("kraken", "BTC/USDT")
    server.clock = START + 40_000
    feed.refresh()
    second = feed.quote("kraken", "BTC/USDT")
    assert second.bid - first.bid == Decimal("1.0")
    assert [q.bid for q in feed.quote_history("kraken", "BTC/USDT", since=0)] == [first.bid, second.bid]


@pytest.mark.parametrize("fault", ["5xx", "garbage", "ratelimit", "timeout"])
def test_a_failing_venue_is_degraded_with_the_reason_and_the_other_goes_on(feed, server, fault):
    feed.refresh()
    server.fault("kraken", fault)
    server.clock = START + 30_000
    began = time.monotonic()
    feed.refresh()
    elapsed = time.monotonic() - began
    status = {s.venue: s for s in feed.status()}
    assert status["binance"].state == OK
    assert status["kraken"].state == DEGRADED
    assert status["kraken"].last_error and status["kraken"].error_at
    assert feed.quote("binance", "BTC/USDT").ts == START + 30_000
    if fault == "timeout":
        assert "RequestTimeout" in status["kraken"].last_error
        assert elapsed < 1.5 * 4 + 3  # bounded by the ccxt timeout, not the server's 5 s sleep per request
    server.clear()
    feed.refresh()
    assert states(feed) == {"binance": OK, "kraken": OK}


def test_error_classes_are_named_in_the_status(feed, server):
    feed.refresh()
    expectations = {"5xx": "ExchangeNotAvailable", "ratelimit": "RateLimitExceeded"}
    for fault, error in expectations.items():
        server.fault("binance", fault)
        feed.refresh()
        assert error in {s.venue: s for s in feed.status()}["binance"].last_error or "DDoSProtection" in {
            s.venue: s for s in feed.status()}["binance"].last_error
        server.clear()


def test_repeated_failures_mark_a_venue_down_and_it_recovers_by_itself(server):
    server.fault("binance", "5xx")
    feed = CcxtFeed(["binance", "kraken"], SYMBOLS, timeout_ms=1500, urls=server.urls(), exchange_options=FAST, min_refresh_ms=0)
    try:
        for _ in range(3):
            feed.refresh()
        assert states(feed) == {"binance": DOWN, "kraken": OK}
        server.clear()
        feed.refresh()
        assert states(feed)["binance"] == OK
        assert feed.quote("binance", "ETH/USDT") is not None
    finally:
        feed.close()


def test_unlisted_symbols_are_reported_and_unknown_venues_are_down(server):
    feed = CcxtFeed(["binance", "nosuchvenue"], ["BTC/USDT", "DOGE/USDT"], timeout_ms=1500, urls=server.urls(), exchange_options=FAST, min_refresh_ms=0)
    try:
        feed.refresh()
        status = {s.venue: s for s in feed.status()}
        assert status["binance"].state == OK and "not listed: DOGE/USDT" in status["binance"].detail
        assert status["nosuchvenue"].state == DOWN
    finally:
        feed.close()


def test_account_and_order_methods_raise_without_any_request(feed, server):
    feed.refresh()
    before = sum(server.requests.values())
    exchange = feed._exchanges["binance"]
    for call in (exchange.create_order("BTC/USDT", "market", "buy", 1), exchange.fetch_balance(), exchange.withdraw("BTC", 1, "x")):
        with pytest.raises(PaperOnlyError):
            feed._call(call)
    with pytest.raises(PaperOnlyError):
        feed._call(exchange.privateGetAccount())
    with pytest.raises(PaperOnlyError):
        feed._call(exchange.sapiGetCapitalConfigGetall())
    assert sum(server.requests.values()) == before


def test_credentials_are_refused(server):
    with pytest.raises(PaperOnlyError):
        CcxtFeed(["binance"], SYMBOLS, urls=server.urls(), exchange_options={"binance": {"apiKey": "k", "secret": "s"}})


def test_refreshes_within_the_minimum_interval_reuse_the_last_poll(server):
    feed = CcxtFeed(["binance"], SYMBOLS, urls=server.urls(), exchange_options=FAST, min_refresh_ms=60_000)
    try:
        feed.refresh()
        feed.refresh()
        assert server.requests[("binance", "api/v3/ticker/24hr")] == 1
    finally:
        feed.close()


def test_a_failed_book_refresh_does_not_serve_the_old_book_as_current(feed, server):
    feed.refresh()
    assert feed.book("kraken", "BTC/USDT") is not None
    server.fault("kraken", "depth_5xx")  # tickers answer, order books fail
    server.clock = START + 40_000
    feed.refresh()
    assert {s.venue: s.state for s in feed.status()}["kraken"] == DEGRADED
    assert feed.quote("kraken", "BTC/USDT") is not None  # the fresh ticker is served
    assert feed.book("kraken", "BTC/USDT") is None  # the book of the last poll is not
    assert feed.book("binance", "BTC/USDT") is not None
    server.fault("kraken", "5xx")  # the whole venue fails: no book of it is current either
    server.clear("kraken")
    feed.refresh()
    assert feed.book("kraken", "BTC/USDT") is not None
    last_good = feed.quote("kraken", "BTC/USDT")
    server.fault("kraken", "5xx")
    time.sleep(0.01)
    feed.refresh()
    assert feed.book("kraken", "BTC/USDT") is None and feed.book("kraken", "ETH/USDT") is None
    # its last quote keeps the time it was observed (kraken does not stamp tickers: the time it arrived), so its age shows
    assert feed.quote("kraken", "BTC/USDT").ts == last_good.ts < feed.now()
