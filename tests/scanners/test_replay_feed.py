"""The replay feed and its reader on the hand-written `tiny-xvenue` recording, plus malformed files.

tiny-xvenue (times in ms, end 239999):
- binance BTC/USDT quotes: 1000; 2000 twice (the second wins); 5000 locked; 6000 crossed; 9000.
- kraken BTC/USDT quotes: 1500; 3000 with no bid; 7000 crossed. Books at 2500 and 8000 (3 levels).
- binance ETH/USDT: books only, one snapshot at 4000.
- binance BTC/USDT 1m bars open at 0, 60000 and 180000 (120000 is a gap).
"""
import json
import os
import re
import shutil
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from scanners.feeds.base import OK, Bar, Book, Instrument, Quote, RecordingError, Venue
from scanners.feeds.recording import QUOTE_HEADER, RecordingWriter
from scanners.feeds.replay import Event, RecordingReader, ReplayClock, ReplayFeed
from scanners.feeds.replay.reader import Series as _Series
from tests.conftest import FIXTURES

TINY = FIXTURES / "recordings" / "tiny-xvenue"
D = Decimal
QUOTE_FILE = "quotes/binance/BTC-USDT.csv"
BAR_FILE = "bars/binance/BTC-USDT@1m.csv"
BOOK_FILE = "books/kraken/BTC-USDT.jsonl"
QUOTE_HEAD = "ts,bid,ask,bid_size,ask_size\n"
BAR_HEAD = "ts,open,high,low,close,volume\n"
fuzz = settings(  # FUZZ_EXAMPLES=5000 for a long run
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", 150)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def feed():
    reader = RecordingReader(TINY)
    return ReplayFeed(reader, ReplayClock.stepped(reader.start))


def copy_of_tiny(root: Path) -> Path:
    target = root / "rec"
    shutil.copytree(TINY, target)
    return target


# --- opening ---------------------------------------------------------------


def test_opening_reads_only_the_manifest_and_each_file_on_first_use(monkeypatch):
    read = []
    original = Path.open  # read_text and read_bytes open through it
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: read.append(self.name) or original(self, *a, **k))
    reader = RecordingReader(TINY)
    assert read == ["manifest.json"]
    assert (reader.start, reader.end, reader.name) == (0, 239999, "tiny-xvenue")
    feed = ReplayFeed(reader, ReplayClock.stepped(2000))
    feed.quote("binance", "BTC/USDT")
    feed.quote("binance", "BTC/USDT")
    assert read == ["manifest.json", "BTC-USDT.csv"]  # binance BTC/USDT has no books file; read once, cached


def test_loaded_files_are_kept_compact():
    reader = RecordingReader(TINY)
    series = reader.quotes[("binance", "BTC/USDT")]
    assert series._ts is None
    assert list(series.ts) == [1000, 2000, 2000, 5000, 6000, 9000]
    assert series.ts.typecode == "q" and isinstance(series._body, bytes)
    assert series.ts_array().dtype == np.int64 and series.row(3) == ("37001.00", "37001.00", "1", "1")


def test_venues_fees_and_instruments_come_from_the_manifest_and_file_names(feed):
    assert feed.venues() == {
        "binance": Venue("binance", "crypto", D("0.001")),
        "kraken": Venue("kraken", "crypto", D("0.0026")),
    }
    assert feed.taker_fee("kraken") == D("0.0026")
    assert feed.instruments() == [
        Instrument("binance", "BTC/USDT", "crypto", has_quotes=True, has_books=False, timeframes=("1m",)),
        Instrument("binance", "ETH/USDT", "crypto", has_quotes=False, has_books=True),
        Instrument("kraken", "BTC/USDT", "crypto", has_quotes=True, has_books=True),
    ]


def test_start_and_end_are_taken_from_the_data_when_the_manifest_has_none(tmp_path):
    target = copy_of_tiny(tmp_path)
    manifest = json.loads((target / "manifest.json").read_text())
    del manifest["start"], manifest["end"]
    (target / "manifest.json").write_text(json.dumps(manifest))
    reader = RecordingReader(target)
    assert (reader.start, reader.end) == (0, 180000)  # first and last ts of any file (bars stamp their open)


# --- quotes ----------------------------------------------------------------


def test_quote_is_the_latest_row_at_or_before_now_and_the_last_of_equal_ts(feed):
    assert feed.at(999).quote("binance", "BTC/USDT") is None
    assert feed.at(1000).quote("binance", "BTC/USDT") == Quote("binance", "BTC/USDT", 1000, D("37000.10"), D("37000.20"), D("0.5"), D("1.25"))
    assert feed.at(1999).quote("binance", "BTC/USDT").ts == 1000
    assert feed.at(2000).quote("binance", "BTC/USDT") == Quote("binance", "BTC/USDT", 2000, D("37000.50"), D("37000.60"), D("2"), D("3"))
    assert feed.at(10**13).quote("binance", "BTC/USDT").ts == 9000


def test_values_are_decimals_exactly_as_recorded_and_empty_is_unknown(feed):
    quote = feed.at(1000).quote("binance", "BTC/USDT")
    assert str(quote.bid) == "37000.10" and str(quote.ask_size) == "1.25"
    one_sided = feed.at(3000).quote("kraken", "BTC/USDT")
    assert (one_sided.bid, one_sided.ask, one_sided.bid_size, one_sided.ask_size) == (None, D("37000.5"), None, D("0.3"))
    assert one_sided.mid is None and not one_sided.crossed
    equal_ts = feed.at(2000).quote_history("binance", "BTC/USDT", since=1999)
    assert [(q.bid, q.bid_size) for q in equal_ts] == [(D("37000.30"), None), (D("37000.50"), D("2"))]


def test_locked_and_crossed_quotes_are_served_as_recorded_and_flagged(feed):
    locked = feed.at(5000).quote("binance", "BTC/USDT")
    crossed = feed.at(6000).quote("binance", "BTC/USDT")
    assert (locked.bid, locked.ask, locked.crossed) == (D("37001.00"), D("37001.00"), True)
    assert (crossed.bid, crossed.ask, crossed.crossed) == (D("37001.50"), D("37001.20"), True)
    assert feed.at(7500).quote("kraken", "BTC/USDT").crossed
    assert not feed.at(9000).quote("binance", "BTC/USDT").crossed
    history = feed.at(10_000).quote_history("binance", "BTC/USDT", since=-1)
    assert [q.crossed for q in history] == [False, False, False, True, True, False]


def test_top_of_book_comes_from_the_newer_of_quote_row_and_book_snapshot(feed):
    assert feed.at(2499).quote("kraken", "BTC/USDT").ts == 1500
    assert feed.at(2500).quote("kraken", "BTC/USDT") == Quote("kraken", "BTC/USDT", 2500, D("37000.0"), D("37000.6"), D("0.5"), D("0.4"))
    assert feed.at(3000).quote("kraken", "BTC/USDT").bid is None  # the quote row at 3000 is newer
    assert feed.at(8000).quote("kraken", "BTC/USDT").bid == D("37002.0")
    assert feed.at(3999).quote("binance", "ETH/USDT") is None
    assert feed.at(4000).quote("binance", "ETH/USDT") == Quote("binance", "ETH/USDT", 4000, D("2000.10"), D("2000.30"), D("3"), D("2"))


def test_quote_history_is_the_rows_after_since_up_to_now(feed):
    assert [q.ts for q in feed.at(6000).quote_history("binance", "BTC/USDT", since=1000)] == [2000, 2000, 5000, 6000]
    assert feed.quote_history("binance", "DOGE/USDT", since=0) == []


# --- books and bars --------------------------------------------------------


def test_book_is_the_latest_snapshot_cut_to_depth(feed):
    assert feed.at(2499).book("kraken", "BTC/USDT") is None
    book = feed.at(7999).book("kraken", "BTC/USDT")
    assert book.ts == 2500 and len(book.bids) == len(book.asks) == 3
    assert book.bids == ((D("37000.0"), D("0.5")), (D("36999.5"), D("1.0")), (D("36998.0"), D("2.5")))
    assert book.asks[2] == (D("37003.5"), D("3"))
    assert feed.book("kraken", "BTC/USDT", depth=1).asks == ((D("37000.6"), D("0.4")),)
    assert feed.book("kraken", "BTC/USDT", depth=10) == book
    assert feed.book("kraken", "BTC/USDT", depth=0).bids == ()
    assert feed.at(8000).book("kraken", "BTC/USDT", depth=2).bids[1] == (D("37001.0"), D("1"))
    assert feed.book("binance", "BTC/USDT") is None  # quotes only


def test_bars_are_completed_bars_only_and_a_gap_stays_a_gap(feed):
    assert feed.at(59_999).bars("binance", "BTC/USDT", "1m") == []
    assert feed.at(60_000).bars("binance", "BTC/USDT", "1m") == [
        Bar(0, D("37000.1"), D("37002.1"), D("36999.0"), D("37002.0"), D("12.5")),
    ]
    assert [b.ts for b in feed.at(239_999).bars("binance", "BTC/USDT", "1m")] == [0, 60_000]  # 180000 still forming
    bars = feed.at(240_000).bars("binance", "BTC/USDT", "1m")
    assert [b.ts for b in bars] == [0, 60_000, 180_000]
    assert bars[1].volume is None and bars[2].volume == D("7.25")
    assert [b.ts for b in feed.bars("binance", "BTC/USDT", "1m", limit=2)] == [60_000, 180_000]
    assert feed.bars("binance", "BTC/USDT", "1m", limit=0) == []
    assert feed.bars("binance", "BTC/USDT", "5m") == [] and feed.bars("binance", "BTC/USDT", "7m") == []


def test_unknown_venue_symbol_or_timeframe_is_none_or_empty_not_an_error(feed):
    feed.at(10**13)
    assert feed.quote("bitstamp", "BTC/USDT") is None and feed.quote("binance", "XRP/USDT") is None
    assert feed.book("bitstamp", "BTC/USDT") is None
    assert feed.bars("bitstamp", "BTC/USDT", "1m") == [] and feed.bars("kraken", "BTC/USDT", "1m") == []


def test_no_future_data_and_no_other_instrument_at_any_time(feed):
    reader = feed.reader
    times = sorted({e.ts + d for e in reader.events() for d in (-1, 0, 1)} | set(range(-1000, 250_000, 997)))
    for now in times:
        feed.at(now)
        assert feed.now() == now
        for instrument in reader.instruments():
            venue, symbol = instrument.venue, instrument.symbol
            quote = feed.quote(venue, symbol)
            if quote is not None:
                assert quote.ts <= now and (quote.venue, quote.symbol) == (venue, symbol)
            book = feed.book(venue, symbol)
            if book is not None:
                assert book.ts <= now and (book.venue, book.symbol) == (venue, symbol)
            for timeframe in instrument.timeframes:
                assert all(b.ts + 60_000 <= now for b in feed.bars(venue, symbol, timeframe))
            assert all(q.ts <= now for q in feed.quote_history(venue, symbol, since=-10**6))


def test_every_event_is_served_exactly_from_its_time(feed):
    for event in feed.reader.events():
        if event.kind == "bar":
            assert feed.at(event.ts).bars(event.venue, event.symbol, event.timeframe)[-1].ts == event.ts - 60_000
            before = feed.at(event.ts - 1).bars(event.venue, event.symbol, event.timeframe)
            assert not before or before[-1].ts < event.ts - 60_000
        elif event.kind == "book":
            assert feed.at(event.ts).book(event.venue, event.symbol).ts == event.ts
            before = feed.at(event.ts - 1).book(event.venue, event.symbol)
            assert before is None or before.ts < event.ts
        else:
            assert feed.at(event.ts).quote_history(event.venue, event.symbol, since=event.ts - 1)[-1].ts == event.ts


def test_status_is_ok_per_venue_and_says_where_the_replay_is(feed):
    statuses = feed.at(5000).status()
    assert [s.venue for s in statuses] == ["binance", "kraken"]
    assert all(s.state == OK and s.detail == "replay tiny-xvenue at 1970-01-01T00:00:05.000Z" for s in statuses)


# --- merged events ---------------------------------------------------------


def test_events_merge_every_row_in_time_order_with_bars_at_their_close():
    reader = RecordingReader(TINY)
    events = list(reader.events())
    assert len(events) == 6 + 3 + 3 + 2 + 1 == reader.load_all()
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert events[:4] == [
        Event(1000, "quote", "binance", "BTC/USDT", None),
        Event(1500, "quote", "kraken", "BTC/USDT", None),
        (2000, "quote", "binance", "BTC/USDT", None),
        (2000, "quote", "binance", "BTC/USDT", None),
    ]
    assert [e for e in events if e.kind == "bar"] == [
        (60_000, "bar", "binance", "BTC/USDT", "1m"), (120_000, "bar", "binance", "BTC/USDT", "1m"),
        (240_000, "bar", "binance", "BTC/USDT", "1m"),
    ]
    assert list(reader.events(from_ts=4000, to_ts=6000)) == [
        (4000, "book", "binance", "ETH/USDT", None),
        (5000, "quote", "binance", "BTC/USDT", None),
        (6000, "quote", "binance", "BTC/USDT", None),
    ]
    assert list(reader.events(from_ts=240_001)) == []
    assert reader.event_times().tolist() == [e.ts for e in events]


# --- clocks ----------------------------------------------------------------


class FakeWall:
    def __init__(self, ms: int = 0):
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_stepped_clock_moves_only_when_told():
    clock = ReplayClock.stepped(1000)
    assert clock.now() == 1000 and clock.position() == (1000, 0)
    clock.advance(500)
    assert clock.now() == 1500
    clock.set(42)
    assert clock.now() == 42


def test_realtime_clock_scales_wall_time_from_its_anchor_and_stops_at_the_end():
    wall = FakeWall(10_000)
    clock = ReplayClock.realtime(1000, 60_999, speed=4, anchor_wall_ms=10_000, wall_clock=wall)
    assert clock.now() == 1000
    wall.ms = 12_500
    assert clock.now() == 11_000
    wall.ms = 5_000  # before the anchor: the start
    assert clock.now() == 1000
    wall.ms = 10**12
    assert clock.position() == (60_999, 0)
    with pytest.raises(ValueError):
        clock.set(5)
    with pytest.raises(ValueError):
        ReplayClock.realtime(0, 10, speed=0)
    assert abs(ReplayClock.realtime(0, 10**12, speed=1).now() - 0) < 5_000  # anchored at construction


def test_a_looping_clock_shifts_every_lap_forward_so_the_desk_never_goes_back():
    reader = RecordingReader(TINY)
    wall = FakeWall(0)
    span = reader.end - reader.start + 1
    feed = ReplayFeed(reader, ReplayClock.realtime(reader.start, reader.end, speed=1, anchor_wall_ms=0, loop=True, wall_clock=wall))
    wall.ms = 5000
    assert feed.now() == 5000 and feed.quote("binance", "BTC/USDT").ts == 5000
    wall.ms = span + 5000  # second lap: recording time 5000 again, served 240000 ms later
    assert feed.clock.position() == (5000, span)
    assert feed.now() == span + 5000
    quote = feed.quote("binance", "BTC/USDT")
    assert quote.ts == span + 5000 and quote.bid == D("37001.00")
    assert feed.book("kraken", "BTC/USDT").ts == span + 2500
    assert [b.ts for b in feed.bars("binance", "BTC/USDT", "1m")] == []  # the lap has just begun
    wall.ms = span + 120_000
    assert [b.ts for b in feed.bars("binance", "BTC/USDT", "1m")] == [span, span + 60_000]
    assert "lap 2" in feed.status()[0].detail
    previous = -1
    for ms in range(0, 3 * span + 1, 1237):
        wall.ms = ms
        now = feed.now()
        assert now >= previous
        previous = now
        quote = feed.quote("kraken", "BTC/USDT")
        assert quote is None or quote.ts <= now
        assert all(b.ts + 60_000 <= now for b in feed.bars("binance", "BTC/USDT", "1m"))



def test_a_look_back_from_a_later_lap_sees_the_market_of_the_lap_it_asks_about():
    """An execution decided near a lap's end and run laps later (a busy worker) fills on the
    market at its own time, not on the recording's beginning (which would hold no quote yet)."""
    reader = RecordingReader(TINY)
    wall = FakeWall(0)
    span = reader.end - reader.start + 1
    feed = ReplayFeed(reader, ReplayClock.realtime(reader.start, reader.end, speed=1, anchor_wall_ms=0, loop=True, wall_clock=wall))
    wall.ms = span + 5000
    in_this_lap = feed.quote_after("binance", "BTC/USDT", span + 5000)
    wall.ms = 3 * span + 10
    assert feed.quote_after("binance", "BTC/USDT", span + 5000) == in_this_lap
    assert feed.book_after("kraken", "BTC/USDT", span + 5000).ts == span + 2500
    assert feed.quote_after("binance", "BTC/USDT", 5000).ts == 5000  # the first lap, unshifted

# --- the writer round trip -------------------------------------------------


def test_what_the_recording_writer_writes_reads_back_identically(tmp_path):
    venues = {"binance": Venue("binance", "crypto", D("0.001")), "oanda": Venue("oanda", "forex", D("0"))}
    quotes = [
        Quote("binance", "BTC/USDT", 10, D("37000.10"), D("37000.20"), None, D("0.50")),
        Quote("binance", "BTC/USDT", 10, D("37000.30"), D("37000.30"), D("1"), D("2")),
        Quote("binance", "BTC/USDT", 25, D("37001.5"), D("37001.2"), D("0.000001"), D("3")),
        Quote("oanda", "EUR/USD", 12, D("1.08501"), D("1.08512"), None, None),
    ]
    books = [
        Book("binance", "BTC/USDT:USDT", 15, ((D("10.5"), D("1")), (D("10.0"), D("2.25"))), ((D("11"), D("0.1")),)),
        Book("binance", "BTC/USDT:USDT", 30, (), ((D("12"), D("3")),)),
    ]
    bars = [Bar(0, D("1.08"), D("1.09"), D("1.07"), D("1.085"), None), Bar(120_000, D("1.085"), D("1.1"), D("1.08"), D("1.09"), D("0"))]
    writer = RecordingWriter(tmp_path / "rec", name="round-trip", venues=venues)
    for quote in quotes:
        writer.write_quote(quote)
    for book in books:
        writer.write_book(book)
    for bar in bars:
        writer.write_bar("oanda", "EUR/USD", "1m", bar)
    writer.close()
    reader = RecordingReader(tmp_path / "rec")
    assert (reader.start, reader.end, reader.name) == (0, 120_000, "round-trip") and reader.venues() == venues
    feed = ReplayFeed(reader, ReplayClock.stepped(10**6))
    assert feed.quote_history("binance", "BTC/USDT", since=-1) == quotes[:3]
    assert feed.quote_history("oanda", "EUR/USD", since=-1) == quotes[3:]
    assert [str(q.bid) for q in feed.quote_history("binance", "BTC/USDT", since=-1)] == ["37000.10", "37000.30", "37001.5"]
    assert feed.at(29).book("binance", "BTC/USDT:USDT") == books[0]
    assert feed.at(30).book("binance", "BTC/USDT:USDT") == books[1]
    assert feed.at(10**6).bars("oanda", "EUR/USD", "1m") == bars
    assert reader.load_all() == len(quotes) + len(books) + len(bars)


decimal_text = st.decimals(min_value=0, max_value=10**9, places=8, allow_nan=False, allow_infinity=False).map(abs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.integers(0, 5), decimal_text, st.one_of(st.none(), decimal_text)), min_size=1, max_size=30))
def test_writer_round_trip_of_arbitrary_quotes(tmp_path_factory, rows):
    root = tmp_path_factory.mktemp("rt")
    writer = RecordingWriter(root, name="rt", venues={"v": Venue("v", "crypto", D("0.001"))})
    ts, written = 0, []
    for step, bid, size in rows:
        ts += step
        written.append(Quote("v", "ETH/BTC", ts, bid, bid + 1, size, None))
        writer.write_quote(written[-1])
    writer.close()
    feed = ReplayFeed(RecordingReader(root), ReplayClock.stepped(ts))
    assert feed.quote_history("v", "ETH/BTC", since=-1) == written
    assert feed.quote("v", "ETH/BTC") == written[-1]


# --- malformed recordings --------------------------------------------------


def broken(tmp_path: Path, relative: str, text: str) -> Path:
    target = copy_of_tiny(tmp_path)
    (target / relative).write_text(text)
    return target


def assert_names_file_and_line(error: RecordingError, relative: str, line: int, problem: str):
    assert error.path.endswith(relative), error
    assert error.line == line, error
    assert f"{relative.rsplit('/', 1)[-1]}:{line}: " in str(error), error
    assert problem in str(error), error


@pytest.mark.parametrize(
    "text, line, problem",
    [
        ("", 1, "header must be ts,bid,ask,bid_size,ask_size"),
        ("1000,1,2,3,4\n", 1, "header must be"),
        ("ts,bid,ask\n1000,1,2\n", 1, "header must be"),
        (QUOTE_HEAD + "1000,1,2,3\n", 2, "expected 5 columns"),
        (QUOTE_HEAD + "1000,1,2,3,4\n2000,1,2,3,4,5\n", 3, "expected 5 columns"),
        (QUOTE_HEAD + "1000,1,2,3,4\n\n2000,1,2,3,4\n", 3, "expected 5 columns"),
        (QUOTE_HEAD + "1000,1,2,3,4\nsoon,1,2,3,4\n", 3, "ts is not integer milliseconds"),
        (QUOTE_HEAD + "1000.5,1,2,3,4\n", 2, "ts is not integer"),
        (QUOTE_HEAD + ",1,2,3,4\n", 2, "ts is not integer"),
        (QUOTE_HEAD + "12345678901234567890,1,2,3,4\n", 2, "ts is not integer"),
        (QUOTE_HEAD + "1000,abc,2,3,4\n", 2, "bid is not a plain decimal number: 'abc'"),
        (QUOTE_HEAD + "1000,1e5,2,3,4\n", 2, "bid is not a plain decimal"),
        (QUOTE_HEAD + "1000,1,2.,3,4\n", 2, "ask is not a plain decimal"),
        (QUOTE_HEAD + "1000,1,.5,3,4\n", 2, "ask is not a plain decimal"),
        (QUOTE_HEAD + "1000,1,2,3,4.1.2\n", 2, "ask_size is not a plain decimal"),
        (QUOTE_HEAD + "1000,1,2,3,\u0664\n", 2, "ask_size is not a plain decimal"),
        (QUOTE_HEAD + "1000,1,2,-3,4\n", 2, "bid_size is negative: '-3'"),
        (QUOTE_HEAD + "1000,-1,2,3,4\n", 2, "bid is negative"),
        (QUOTE_HEAD + "1000,1,2,3,4\n2000,1,2,3,4\n1999,1,2,3,4\n", 4, "ts 1999 is earlier than the row before (2000)"),
    ],
)
def test_malformed_quotes_name_the_file_and_line(tmp_path, text, line, problem):
    path = broken(tmp_path, QUOTE_FILE, text)
    feed = ReplayFeed(RecordingReader(path), ReplayClock.stepped(10_000))
    with pytest.raises(RecordingError) as served:
        feed.quote("binance", "BTC/USDT")
    assert_names_file_and_line(served.value, QUOTE_FILE, line, problem)
    with pytest.raises(RecordingError) as up_front:
        RecordingReader(path).load_all()
    assert str(up_front.value) == str(served.value)


def test_a_bad_row_is_found_wherever_it_is_not_only_when_served(tmp_path):
    rows = "".join(f"{1000 + i},1.{i},2,3,4\n" for i in range(5000))
    path = broken(tmp_path, QUOTE_FILE, QUOTE_HEAD + rows + "99999,1,2,3,x\n")
    with pytest.raises(RecordingError) as error:
        ReplayFeed(RecordingReader(path), ReplayClock.stepped(1000)).quote("binance", "BTC/USDT")
    assert error.value.line == 5002


@pytest.mark.parametrize(
    "text, line, problem",
    [
        (BAR_HEAD + "0,1,2,0.5,1.5,10\n60000,1,2,0.5,,10\n", 3, "close is empty: a bar needs open, high, low and close"),
        (BAR_HEAD + "0,,2,0.5,1.5,10\n", 2, "open is empty"),
        (BAR_HEAD + "0,1,2,0.5,1.5,-10\n", 2, "volume is negative"),
        (BAR_HEAD + "0,1,2,0.5,1.5\n", 2, "expected 6 columns"),
        ("ts,open,high,low,close\n0,1,2,0.5,1.5\n", 1, "header must be ts,open,high,low,close,volume"),
        (BAR_HEAD + "60000,1,2,0.5,1.5,1\n0,1,2,0.5,1.5,1\n", 3, "earlier than the row before"),
    ],
)
def test_malformed_bars_name_the_file_and_line(tmp_path, text, line, problem):
    path = broken(tmp_path, BAR_FILE, text)
    feed = ReplayFeed(RecordingReader(path), ReplayClock.stepped(10**6))
    with pytest.raises(RecordingError) as error:
        feed.bars("binance", "BTC/USDT", "1m")
    assert_names_file_and_line(error.value, BAR_FILE, line, problem)


GOOD_BOOK = '{"ts": 1, "bids": [["2", "1"]], "asks": [["3", "1"]]}\n'


@pytest.mark.parametrize(
    "text, line, problem",
    [
        (GOOD_BOOK + '{"ts": 2, "bids": [\n', 2, "not valid JSON"),
        (GOOD_BOOK + '{"ts": 2, "bids": [["1", "1"], ["2", "1"]], "asks": []}\n', 2, "bids must descend by price"),
        (GOOD_BOOK + '{"ts": 2, "bids": [], "asks": [["3", "1"], ["2.5", "1"]]}\n', 2, "asks must ascend by price"),
        (GOOD_BOOK + '{"ts": 2, "bids": [], "asks": [[3, 1]]}\n', 2, '["price", "size"] strings'),
        (GOOD_BOOK + '{"ts": 2, "bids": [["2", "-1"]], "asks": []}\n', 2, "is negative"),
        (GOOD_BOOK + '{"ts": 2, "bids": [["2e3", "1"]], "asks": []}\n', 2, "not a plain decimal"),
        (GOOD_BOOK + '{"ts": 2, "bids": {}, "asks": []}\n', 2, "bids must be a list"),
        (GOOD_BOOK + '{"ts": 2, "asks": []}\n', 2, "bids must be a list"),
    ],
)
def test_malformed_book_snapshots_name_the_file_and_line_when_served_or_loaded(tmp_path, text, line, problem):
    path = broken(tmp_path, BOOK_FILE, text)
    feed = ReplayFeed(RecordingReader(path), ReplayClock.stepped(1))
    assert feed.book("kraken", "BTC/USDT").ts == 1  # the good first line is served: JSON is parsed per snapshot
    with pytest.raises(RecordingError) as served:
        feed.at(10).book("kraken", "BTC/USDT")
    assert_names_file_and_line(served.value, BOOK_FILE, line, problem)
    with pytest.raises(RecordingError) as up_front:
        RecordingReader(path).load_all()
    assert str(up_front.value) == str(served.value)


@pytest.mark.parametrize(
    "text, line, problem",
    [
        ('{"ts": 5, "bids": [], "asks": []}\n{"ts": 4, "bids": [], "asks": []}\n', 2, "ts 4 is earlier than the line before (5)"),
        (GOOD_BOOK + "\n" + GOOD_BOOK, 2, "blank line"),
        (GOOD_BOOK + '{"bids": [], "asks": [], "ts": 0}\n', 2, "earlier than the line before"),
        (GOOD_BOOK + "not json at all\n", 2, "not valid JSON"),
        (GOOD_BOOK + '{"ts": "2", "bids": [], "asks": []}\n', 2, '{"ts": <int ms>'),
    ],
)
def test_book_order_blank_lines_and_unreadable_ts_are_found_when_the_file_is_indexed(tmp_path, text, line, problem):
    path = broken(tmp_path, BOOK_FILE, text)
    with pytest.raises(RecordingError) as error:
        ReplayFeed(RecordingReader(path), ReplayClock.stepped(0)).book("kraken", "BTC/USDT")
    assert_names_file_and_line(error.value, BOOK_FILE, line, problem)


@pytest.mark.parametrize(
    "manifest, problem",
    [
        (None, "manifest.json: missing"),
        ("{not json", "manifest.json:1: not valid JSON"),
        ("[]", "manifest.json: must be a JSON object"),
        ({"format": "trifecta-recording/2"}, "format must be 'trifecta-recording/1', found 'trifecta-recording/2'"),
        ({"venues": {}}, "format must be 'trifecta-recording/1', found None"),
        ({"format": "trifecta-recording/1", "venues": []}, "venues must be an object"),
        ({"format": "trifecta-recording/1", "venues": {"binance": {"asset_class": "crypto"}}}, "taker_fee must be a decimal string"),
        ({"format": "trifecta-recording/1", "venues": {"binance": {"asset_class": "crypto", "taker_fee": "abc"}}}, "taker_fee must be a non-negative decimal"),
        ({"format": "trifecta-recording/1", "venues": {"binance": {"asset_class": "stocks", "taker_fee": "0"}}}, "asset_class must be crypto or forex"),
    ],
)
def test_a_bad_manifest_is_named(tmp_path, manifest, problem):
    if manifest is not None:
        (tmp_path / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    with pytest.raises(RecordingError) as error:
        RecordingReader(tmp_path)
    assert error.value.path.endswith("manifest.json") and problem in str(error.value)


def test_a_venue_folder_missing_from_the_manifest_or_a_bad_file_name_is_named(tmp_path):
    target = copy_of_tiny(tmp_path)
    (target / "quotes" / "bitstamp").mkdir()
    with pytest.raises(RecordingError, match=r"quotes/bitstamp: venue 'bitstamp' has data but is not in manifest.json's venues \(binance, kraken\)"):
        RecordingReader(target)
    (target / "quotes" / "bitstamp").rmdir()
    (target / "bars" / "binance" / "BTC-USDT@2m.csv").write_text(BAR_HEAD)
    with pytest.raises(RecordingError, match="BTC-USDT@2m.csv: bars file names are BASE-QUOTE@TIMEFRAME"):
        RecordingReader(target)
    (target / "bars" / "binance" / "BTC-USDT@2m.csv").unlink()
    (target / "quotes" / "binance" / "BTCUSDT.csv").write_text(QUOTE_HEAD)
    with pytest.raises(RecordingError, match="BTCUSDT.csv: file name 'BTCUSDT.csv' is not BASE-QUOTE"):
        RecordingReader(target)


def test_crlf_line_ends_and_a_missing_last_newline_are_read(tmp_path):
    path = broken(tmp_path, QUOTE_FILE, "ts,bid,ask,bid_size,ask_size\r\n1000,1,2,,\r\n2000,1.5,2,3,4")
    feed = ReplayFeed(RecordingReader(path), ReplayClock.stepped(5000))
    assert feed.quote("binance", "BTC/USDT") == Quote("binance", "BTC/USDT", 2000, D("1.5"), D("2"), D("3"), D("4"))
    assert feed.quote_history("binance", "BTC/USDT", since=0)[0].bid_size is None


# --- fuzzing the CSV reader ------------------------------------------------

ROW = re.compile(r"-?[0-9]{1,18}(,([0-9]+(\.[0-9]+)?)?){4}")


def reference_verdict(lines: list[str]) -> tuple[int | None, list[int]]:
    """(1-based line of the first bad row or None, timestamps): the format's grammar, row by row."""
    stamps = []
    for line_no, line in enumerate(lines, start=2):
        if not ROW.fullmatch(line):
            return line_no, stamps
        stamp = int(line.split(",")[0])
        if stamps and stamp < stamps[-1]:
            return line_no, stamps
        stamps.append(stamp)
    return None, stamps


def load_quotes(root: Path, body: bytes) -> _Series:
    path = root / "q.csv"
    path.write_bytes(QUOTE_HEAD.encode() + body)
    series = _Series(path, QUOTE_HEADER)
    series.ts
    return series


@fuzz
@given(junk=st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=40), min_size=1, max_size=6))
def test_arbitrary_junk_lines_give_a_recording_error_with_the_line_or_load(tmp_path_factory, junk):
    root = tmp_path_factory.mktemp("fuzz")
    try:
        series = load_quotes(root, ("1000,1,2,3,4\n" + "\n".join(junk) + "\n").encode())
    except RecordingError as error:
        assert error.line is not None and 2 <= error.line <= 3 + "\n".join(junk).count("\n"), error
        assert str(error).startswith(f"{root / 'q.csv'}:{error.line}: ")
    else:
        assert series.ts[0] == 1000
        for index in range(len(series.ts)):
            assert all(v == "" or Decimal(v) >= 0 for v in series.row(index))


@fuzz
@given(junk=st.lists(st.binary(max_size=30), min_size=1, max_size=6))
def test_arbitrary_bytes_give_a_recording_error_with_the_line_or_load(tmp_path_factory, junk):
    root = tmp_path_factory.mktemp("fuzz")
    try:
        load_quotes(root, b"1000,1,2,3,4\n" + b"\n".join(junk) + b"\n")
    except RecordingError as error:
        assert error.line is not None and error.line >= 2, error


book_junk = st.one_of(
    st.text(max_size=60),
    st.builds(json.dumps, st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["ts", "bids", "asks", "x"]), inner, max_size=3),
                                       max_leaves=10)),
    st.builds(lambda ts, bids, asks: json.dumps({"ts": ts, "bids": bids, "asks": asks}),
              st.integers(-10**20, 10**20), st.lists(st.lists(st.sampled_from(["1", "2.5", "-1", "x", 3]), max_size=3), max_size=3),
              st.lists(st.lists(st.sampled_from(["1", "2.5", "0.1"]), min_size=2, max_size=2), max_size=3)),
)


@fuzz
@given(junk=st.lists(book_junk, min_size=1, max_size=4))
def test_junk_book_lines_give_a_recording_error_with_the_line_or_load(tmp_path_factory, junk):
    target = tmp_path_factory.mktemp("fuzz")
    path = target / "rec" / BOOK_FILE
    shutil.copytree(TINY, target / "rec")
    path.write_text('{"ts": -100, "bids": [], "asks": []}\n' + "\n".join(junk) + "\n")
    reader = RecordingReader(target / "rec")
    try:
        reader.load_all()
    except RecordingError as error:
        assert error.line is not None and error.line >= 2 and error.path.endswith(BOOK_FILE), error
    else:
        feed = ReplayFeed(reader, ReplayClock.stepped(10**19))
        assert feed.book("kraken", "BTC/USDT").ts == reader.books[("kraken", "BTC/USDT")].ts[-1]


def mostly(valid, invalid):
    """One draw in forty from `invalid`: about half of the generated files are valid."""
    return st.integers(0, 39).flatmap(lambda k: invalid if k == 0 else valid)


valid_value = st.one_of(st.sampled_from(["", "0", "00", "1.5", "0.25", "100.000"]), st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,4})?", fullmatch=True))
invalid_value = st.one_of(
    st.sampled_from(["-", ".", "-3", "-0", "1e5", "1.", ".5", "1..2", "1.2.3", "+1", " 1", "1,2", "\u0664"]),
    st.text("0123456789.-,", max_size=4),
)
invalid_ts = st.sampled_from(["", "-", "1.0", "x", "1234567890123456789", "--1", "1-", " 1"])


@st.composite
def near_valid_lines(draw):
    """Rows of mostly valid fields with a few defects: bad fields, wrong widths, timestamps going back."""
    lines, stamp = [], draw(st.integers(-3, 3))
    for _ in range(draw(st.integers(1, 8))):
        stamp += draw(mostly(st.integers(0, 2), st.just(-1)))
        fields = [draw(mostly(st.just(str(stamp)), invalid_ts))] + [draw(mostly(valid_value, invalid_value)) for _ in range(4)]
        fields = draw(mostly(st.just(fields), st.sampled_from([fields[:4], fields + ["1"], fields[:1]])))
        lines.append(",".join(fields))
    return lines


@fuzz
@given(lines=near_valid_lines())
def test_the_vectorised_check_agrees_with_the_row_grammar(tmp_path_factory, lines):
    root = tmp_path_factory.mktemp("fuzz")
    bad_line, stamps = reference_verdict(lines)
    try:
        series = load_quotes(root, ("\n".join(lines) + "\n").encode())
    except RecordingError as error:
        assert bad_line is not None and error.line == bad_line, (lines, str(error))
    else:
        assert bad_line is None, lines
        assert list(series.ts) == stamps
        assert [",".join(series.row(i)) for i in range(len(stamps))] == [line.split(",", 1)[1] for line in lines]


float_text = st.one_of(
    st.decimals(min_value=0, max_value=10**6, places=8, allow_nan=False, allow_infinity=False).map(lambda d: format(abs(d), "f")),
    st.from_regex(r"[0-9]{1,12}(\.[0-9]{1,12})?", fullmatch=True),
    st.just(""),
)


@fuzz
@given(values=st.lists(st.tuples(float_text, float_text), min_size=1, max_size=20))
def test_array_columns_equal_float_of_the_recorded_text(tmp_path_factory, values):
    root = tmp_path_factory.mktemp("fuzz")
    body = "".join(f"{i},{bid},{ask},,\n" for i, (bid, ask) in enumerate(values)).encode()
    stamps, mids, usable = load_quotes(root, body).mid_arrays()
    for index, (bid, ask) in enumerate(values):
        if bid and ask:
            assert mids[index] == (float(bid) + float(ask)) / 2
            assert usable[index] == (float(bid) < float(ask))
        else:
            assert np.isnan(mids[index]) and not usable[index]
    assert stamps.tolist() == list(range(len(values)))
