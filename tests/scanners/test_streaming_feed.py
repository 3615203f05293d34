"""The ccxt feed following venues by WebSocket (ccxt.pro) against a local Binance-protocol
server streaming real Coinbase level2 events and trades (tests/stream_server.py): books
served with the age of their last update, bars by kline stream (completed ones only), a
dropped connection (backoff, REST meanwhile), a sequence gap resynced from a snapshot, REST
for a venue that does not stream, the recorder."""
import csv
import random
import threading
from decimal import Decimal

import pytest
from django.core.management import call_command

from scanners.feeds.base import DEGRADED, OK
from scanners.feeds.base import TIMEFRAME_MS
from scanners.feeds.exchanges import BAR, BOOK, LIVE, STREAM_DOWN, TICKER, Backoff, CcxtFeed
from scanners.feeds.recorder import record
from scanners.feeds.replay import RecordingReader
from tests.conftest import FIXTURES
from tests.stream_server import COINBASE_FRAMES, COINBASE_RECORDING, BinanceStreamServer
from tests.venue_server import VenueServer
from tests.waiting import wait_for

pytestmark = pytest.mark.skipif(
    not (COINBASE_FRAMES.exists() and COINBASE_RECORDING.exists()),
    reason=f"needs ../shared (the Coinbase WebSocket recording {COINBASE_FRAMES.name}), absent here",
)
SYMBOLS = ["BTC/USD", "ETH/USD"]
DEPTH = 10
FAST = {"binance": {"rateLimit": 10}, "kraken": {"rateLimit": 10}}
QUICK = Backoff(base_s=0.05, cap_s=0.4)  # the local server needs no seconds between reconnects


@pytest.fixture
def server():
    with BinanceStreamServer() as running:
        yield running


def streaming_feed(urls, **options):
    options = {"book_depth": DEPTH, "exchange_options": FAST, "min_refresh_ms": 0, "timeout_ms": 2000,
               "stream_venues": ["binance"], "backoff": QUICK, **options}
    return CcxtFeed(["binance"], SYMBOLS, urls=urls, **options)


@pytest.fixture
def feed(server):
    feed = streaming_feed(server.urls())
    yield feed
    feed.close()


def stream(feed, symbol, channel=BOOK, timeframe=""):
    return next(s for s in feed.streams() if (s["symbol"], s["channel"], s["timeframe"]) == (symbol, channel, timeframe))


def bar_stream(feed, symbol, timeframe="1m"):
    return stream(feed, symbol, BAR, timeframe)


def live(feed):
    """The feed's first refresh loads markets and starts the streams; wait until each book is live."""
    feed.refresh()
    wait_for(lambda: all(stream(feed, s)["state"] == LIVE for s in SYMBOLS), 20, "both book streams live")


def levels(book):
    return list(book.bids), list(book.asks)


def venue_levels(server, symbol):
    """The venue's top levels as Decimals (ccxt hands prices over as floats: 65080 may come back as 65080.0)."""
    return tuple([(Decimal(p), Decimal(s)) for p, s in side] for side in server.depth(symbol, DEPTH))


def rest_depth_requests(server):
    return server.requests[("binance", "api/v3/depth")]


def served(feed, symbol, timeframe="1m"):
    return [(b.ts, b.open, b.high, b.low, b.close, b.volume) for b in feed.bars("binance", symbol, timeframe, limit=1000)]


def venue_bars(server, symbol, timeframe="1m"):
    """The venue's klines so far as Decimals, the last one forming."""
    return [(k[0], *(Decimal(v) for v in k[1:])) for k in server.klines(symbol, timeframe)]


def trade_into_next_bar(server, symbol, timeframe="1m") -> int:
    """Stream the recording's trades until one opens a new bar (the one before closes); returns how many."""
    opened = server.klines(symbol, timeframe)[-1][0]
    count = 0
    while server.klines(symbol, timeframe)[-1][0] == opened:
        server.trade(symbol)
        count += 1
    return count


def bar_streams_live(feed, server, symbols=SYMBOLS, timeframe="1m"):
    """A kline stream says nothing until the venue sends a candle: one trade each once subscribed."""
    for symbol in symbols:
        market_id = symbol.replace("/", "").lower()
        wait_for(lambda: server.subscribed(f"{market_id}@kline_{timeframe}"), 20, f"{symbol}'s {timeframe} bar stream subscribed")
        server.trade(symbol)
        wait_for(lambda: bar_stream(feed, symbol, timeframe)["state"] == LIVE, 10, f"{symbol}'s bar stream live")


def test_books_stream_in_with_the_age_of_their_last_update(feed, server):
    live(feed)
    polled = (rest_depth_requests(server), server.requests[("binance", "api/v3/ticker/24hr")])
    for _ in range(3):
        update = server.push("BTC/USD")
        book = wait_for(lambda: (b := feed.book("binance", "BTC/USD")) is not None and b.ts == update["E"] and b,
                        10, "the pushed update in the feed's book")
        assert levels(book) == venue_levels(server, "BTC/USD")
        assert all(isinstance(p, Decimal) for p, _ in book.bids + book.asks)
        quote = feed.quote("binance", "BTC/USD")  # the streamed book's top: same update, same age
        assert (quote.ts, quote.bid, quote.ask, quote.bid_size) == (book.ts, book.bids[0][0], book.asks[0][0], book.bids[0][1])
    # no update since: a poll does not make the book younger, and REST is not asked for what streams serve
    feed.refresh()
    assert feed.book("binance", "BTC/USD").ts == update["E"] <= feed.now()
    assert (rest_depth_requests(server), server.requests[("binance", "api/v3/ticker/24hr")]) == polled
    status = {s.venue: s for s in feed.status()}["binance"]
    assert status.state == OK and "streaming books" in status.detail
    assert stream(feed, "BTC/USD")["updates"] >= 4  # the snapshot, then each update


def test_bars_stream_in_and_only_completed_ones_are_served(feed, server):
    live(feed)
    history = served(feed, "BTC/USD")  # fetched once over REST at start: the recording's first minute
    assert history == venue_bars(server, "BTC/USD") and len(history) == 1
    assert all(isinstance(v, Decimal) for v in history[0][1:])
    bar_streams_live(feed, server)  # the next minute's first trade: its bar is the stream's forming candle
    assert served(feed, "BTC/USD") == history  # the stream's latest candle is not served: it may still change
    assert {(s["channel"], s["timeframe"]) for s in feed.streams()} == {(BOOK, ""), (BAR, "1m")}

    trade_into_next_bar(server, "BTC/USD")  # a minute of real trades, then the one that opens the current minute
    bars = wait_for(lambda: len(b := served(feed, "BTC/USD")) == 2 and b, 10, "the closed minute served")
    venue = venue_bars(server, "BTC/USD")
    assert bars == venue[:-1]  # the closed minute with its final values (its closing update)
    forming = venue[-1][0]  # the bar the last trade opened
    assert forming not in {b[0] for b in bars}

    for _ in range(3):  # the forming bar moves: never served
        seen = bar_stream(feed, "BTC/USD")["updates"]
        server.trade("BTC/USD")
        wait_for(lambda: bar_stream(feed, "BTC/USD")["updates"] > seen, 10, "the forming bar's update")
        assert served(feed, "BTC/USD") == bars
    assert all(b.ts + TIMEFRAME_MS["1m"] <= feed.now() for b in feed.bars("binance", "BTC/USD", "1m"))

    for _ in range(2):
        feed.refresh()
    assert server.kline_requests == {(s, "1m"): 1 for s in SYMBOLS}  # REST klines once, at start
    status = {s.venue: s for s in feed.status()}["binance"]
    assert status.state == OK and "streaming bars, books" in status.detail


def test_streamed_bars_need_no_rest_poll_each_period(server):
    """1 s bars: a few wall-clock periods pass and REST is not asked again (a polled venue asks each period)."""
    feed = streaming_feed(server.urls(), timeframes=("1s",))
    try:
        live(feed)
        history = served(feed, "BTC/USD", "1s")
        assert history and history == venue_bars(server, "BTC/USD", "1s")[:len(history)]
        bar_streams_live(feed, server, ["BTC/USD"], "1s")
        for _ in range(3):
            trade_into_next_bar(server, "BTC/USD", "1s")
        venue = venue_bars(server, "BTC/USD", "1s")
        wait_for(lambda: served(feed, "BTC/USD", "1s") == venue[:-1], 10, "the streamed seconds served")
        assert len(venue) - 1 > len(history)
        began = feed.now() // 1000
        feed.refresh()
        wait_for(lambda: feed.now() // 1000 >= began + 2, 5, "two bar periods passed")
        feed.refresh()
        assert server.kline_requests[("BTC/USD", "1s")] == 1
    finally:
        feed.close()


def test_a_dropped_bar_stream_falls_back_to_rest_then_reconnects(feed, server):
    live(feed)
    bar_streams_live(feed, server, ["BTC/USD"])
    requests = server.kline_requests[("BTC/USD", "1m")]
    server.refuse_streams = True
    assert server.drop() >= 1
    wait_for(lambda: bar_stream(feed, "BTC/USD")["state"] == STREAM_DOWN, 20, "the bar stream down")
    trade_into_next_bar(server, "BTC/USD")  # the minute closes while nothing streams

    feed.refresh()  # REST serves the bars while the stream is down
    assert server.kline_requests[("BTC/USD", "1m")] == requests + 1
    venue = venue_bars(server, "BTC/USD")
    assert served(feed, "BTC/USD")[:2] == venue[:2]  # the minute that closed unstreamed, from REST
    assert all(b.ts + TIMEFRAME_MS["1m"] <= feed.now() for b in feed.bars("binance", "BTC/USD", "1m"))
    status = {s.venue: s for s in feed.status()}["binance"]
    assert status.state == OK and "REST polls them" in status.detail

    server.refuse_streams = False
    bar_streams_live(feed, server, ["BTC/USD"])  # reconnected and delivering again
    assert bar_stream(feed, "BTC/USD")["failures"] == 0
    feed.refresh()  # live and joining the history without a gap: no REST
    assert server.kline_requests[("BTC/USD", "1m")] == requests + 1
    assert served(feed, "BTC/USD")[:2] == venue[:2]


def test_a_sequence_gap_resyncs_the_book_from_a_snapshot(feed, server):
    live(feed)
    before = feed.book("binance", "BTC/USD")
    snapshots = rest_depth_requests(server)
    skipped = server.skip("BTC/USD", DEPTH)  # applied by the venue, never sent: the next update's U jumps
    update = server.push("BTC/USD")
    assert update["U"] == skipped[-1]["u"] + 1 and update["U"] > skipped[0]["U"]
    wait_for(lambda: stream(feed, "BTC/USD")["resyncs"] == 1 and stream(feed, "BTC/USD")["state"] == LIVE, 20,
             "the book resynced and live again")
    book = wait_for(lambda: feed.book("binance", "BTC/USD"), 10, "the resynced book")
    assert rest_depth_requests(server) == snapshots + 1  # one new snapshot
    assert levels(book) == venue_levels(server, "BTC/USD")  # holds what the skipped events changed
    assert levels(book) != levels(before)
    assert "ChecksumError" in stream(feed, "BTC/USD")["last_error"]
    assert stream(feed, "BTC/USD")["delays"] == []  # a resync is no outage: no backoff
    assert stream(feed, "ETH/USD")["resyncs"] == 0


def test_a_dropped_stream_backs_off_while_rest_serves_then_reconnects(feed, server):
    live(feed)
    server.refuse_streams = True
    assert server.drop() >= 1
    wait_for(lambda: stream(feed, "BTC/USD")["failures"] >= 4, 20, "four failed reconnects")
    down = stream(feed, "BTC/USD")
    assert down["state"] == STREAM_DOWN and "503" in down["last_error"]  # the reconnects are refused
    nominal = [QUICK.nominal(n) for n in range(1, 5)]
    assert nominal == [0.05, 0.1, 0.2, 0.4]
    for chosen, cap in zip(down["delays"][:4], nominal):  # doubling, capped, each drawn from its upper half
        assert cap / 2 <= chosen <= cap
    assert feed.book("binance", "BTC/USD") is None  # no stream maintains it: not served as current

    snapshots = rest_depth_requests(server)
    began = feed.now()
    feed.refresh()  # REST serves while the stream is down
    polled = feed.book("binance", "BTC/USD")
    assert rest_depth_requests(server) == snapshots + len(SYMBOLS)
    assert levels(polled) == venue_levels(server, "BTC/USD") and began <= polled.ts <= feed.now()
    status = {s.venue: s for s in feed.status()}["binance"]
    assert status.state == OK and "not live" in status.detail and "REST polls them" in status.detail

    server.fault("binance", "5xx")  # stream and REST both fail: nothing old is served as current
    feed.refresh()
    assert feed.book("binance", "BTC/USD") is None
    assert {s.venue: s for s in feed.status()}["binance"].state == DEGRADED
    server.clear()

    server.refuse_streams = False
    wait_for(lambda: stream(feed, "BTC/USD")["state"] == LIVE, 20, "the stream reconnected")
    update = server.push("BTC/USD")
    wait_for(lambda: (b := feed.book("binance", "BTC/USD")) is not None and b.ts == update["E"], 10, "a streamed update")
    assert stream(feed, "BTC/USD")["failures"] == 0


def test_backoff_doubles_to_its_cap_with_jitter():
    backoff = Backoff(base_s=0.5, cap_s=30)
    rng = random.Random(7)
    delays = [backoff.delay(n, rng) for n in range(1, 11)]
    nominal = [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert [backoff.nominal(n) for n in range(1, 11)] == nominal
    assert all(n / 2 <= d <= n for d, n in zip(delays, nominal))
    assert len(set(delays[6:])) == 4  # jittered: capped delays still differ


def test_a_venue_without_streaming_is_polled_over_rest(server):
    """kraken through the REST venue server, not streamed (not in stream_venues); binance
    streams tickers only (its books' stream switched off): its quotes stream, its books poll."""
    with VenueServer(FIXTURES / "recordings" / "two-venues", clock=1700000000000 + 20_000, timeout_s=5) as rest_only:
        urls = {"binance": server.urls()["binance"], "kraken": rest_only.urls()["kraken"]}
        options = {**FAST, "binance": {**FAST["binance"], "has": {"watchOrderBook": False, "watchOHLCV": False},
                                       "options": {"watchTickers": {"name": "ticker"}}}}  # the full ticker: its miniTicker has no bid/ask
        feed = CcxtFeed(["binance", "kraken"], SYMBOLS + ["BTC/USDT"], urls=urls, book_depth=DEPTH, exchange_options=options,
                        min_refresh_ms=0, stream_venues=["binance"], backoff=QUICK)
        try:
            feed.refresh()
            assert {(s["venue"], s["channel"]) for s in feed.streams()} == {("binance", TICKER)}
            wait_for(lambda: server.subscribed("btcusd@ticker"), 20, "binance's ticker stream subscribed")
            update = server.push("BTC/USD")
            wait_for(lambda: feed.quote("binance", "BTC/USD").ts == update["E"], 10, "the streamed ticker")
            kraken_polls = rest_only.requests[("kraken", "0/public/Ticker")]
            for _ in range(2):
                feed.refresh()
            assert rest_only.requests[("kraken", "0/public/Ticker")] == kraken_polls + 2
            assert not [path for (_, path) in rest_only.requests if "ws" in path]
            assert feed.book("kraken", "BTC/USDT").bids == rest_only.feed.book("kraken", "BTC/USDT").bids
            assert levels(feed.book("binance", "BTC/USD")) == venue_levels(server, "BTC/USD")  # polled: no book stream
            status = {s.venue: s for s in feed.status()}
            assert status["kraken"].state == OK and "stream" not in status["kraken"].detail
        finally:
            feed.close()


def test_the_recorder_writes_every_streamed_update(server, tmp_path):
    feed = streaming_feed(server.urls(), keep_updates=True)
    expected = []  # (ts, bids, asks) the venue's book showed after each pushed update
    try:
        live(feed)

        def push_three(counts):
            if len(expected) == 9:
                raise KeyboardInterrupt
            for _ in range(3):  # three updates between two polls: each is recorded, not only the last
                seen = stream(feed, "BTC/USD")["updates"]
                update = server.push("BTC/USD")
                expected.append((update["E"], *venue_levels(server, "BTC/USD")))
                wait_for(lambda: stream(feed, "BTC/USD")["updates"] == seen + 1, 10, "the pushed update in the feed")

        record(feed, venues=["binance"], symbols=["BTC/USD"], duration_ms=60_000, out=tmp_path / "rec",
               book_depth=DEPTH, interval_ms=1, timeframes=(), sleep=lambda s: None, on_poll=push_three)
    finally:
        feed.close()
    series = RecordingReader(tmp_path / "rec").books[("binance", "BTC/USD")]
    lines = [series.snapshot(i) for i in range(len(series))]
    recorded = [(ts, list(bids), list(asks)) for ts, bids, asks in lines if ts >= expected[0][0]]
    changed = [e for i, e in enumerate(expected) if i == 0 or e[1:] != expected[i - 1][1:]]
    assert len(changed) >= 3
    assert recorded == changed  # every update that moved the top levels, with its own time


def test_the_recorder_writes_each_streamed_bar_once_completed(server, tmp_path):
    feed = streaming_feed(server.urls(), keep_updates=True)
    try:
        live(feed)
        bar_streams_live(feed, server, ["BTC/USD"])

        def close_a_minute(counts):
            if counts["polls"] > 1:
                raise KeyboardInterrupt
            trade_into_next_bar(server, "BTC/USD")
            wait_for(lambda: len(served(feed, "BTC/USD")) == 2, 10, "the closed minute served")

        record(feed, venues=["binance"], symbols=["BTC/USD"], duration_ms=60_000, out=tmp_path / "rec", book_depth=0,
               interval_ms=1, timeframes=("1m",), sleep=lambda s: None, on_poll=close_a_minute)
    finally:
        feed.close()
    with (tmp_path / "rec" / "bars" / "binance" / "BTC-USD@1m.csv").open() as handle:
        rows = [(int(r["ts"]), *(Decimal(r[k]) for k in ("open", "high", "low", "close", "volume"))) for r in csv.DictReader(handle)]
    assert rows == venue_bars(server, "BTC/USD")[:-1]  # the REST history, then the streamed minute; the forming bar never


def test_the_record_command_records_a_streamed_venue(server, tmp_path):
    pushed = []

    def market_moves():  # once the command's feed follows the book (subscribed, snapshot loaded), updates stream
        wait_for(lambda: server.subscribed("btcusd@depth@100ms") and any(limit > 3 for limit in server.depth_limits), 20,
                 "the command's book stream and its snapshot (deeper than the 3 levels polled)")
        for _ in range(5):
            pushed.append(server.push("BTC/USD"))

    mover = threading.Thread(target=market_moves)
    mover.start()
    call_command(
        "record", "--feed", "ccxt", "--venues", "binance", "--symbols", "BTC/USD", "--duration", "6s", "--interval", "200ms",
        "--depth", "3", "--timeframes", "1m", "--stream", "binance", "--out", str(tmp_path / "cmd"),
        "--urls", f"binance={server.urls()['binance']}",
    )
    mover.join(20)
    series = RecordingReader(tmp_path / "cmd").books[("binance", "BTC/USD")]
    ts, bids, asks = series.snapshot(len(series) - 1)
    assert len(pushed) == 5 and ts == pushed[-1]["E"]  # the last line is the last streamed update, with its time
    assert (list(bids), list(asks)) == tuple([(Decimal(p), Decimal(s)) for p, s in side] for side in server.depth("BTC/USD", 3))
