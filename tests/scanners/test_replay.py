"""The replay feed on a hand-written recording: semantics a scanner relies on."""
import shutil
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from scanners.feeds.base import Bar, Book, Quote, RecordingError, Venue
from scanners.feeds.recording import RecordingWriter
from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed
from tests.conftest import FIXTURES

MINI = FIXTURES / "recordings" / "mini"


@pytest.fixture
def feed():
    reader = RecordingReader(MINI)
    return ReplayFeed(reader, ReplayClock.stepped(reader.start))


def test_manifest_venues_fees_and_instruments(feed):
    assert feed.venues()["beta"].taker_fee == Decimal("0.0026")
    instruments = {(i.venue, i.symbol): i for i in feed.instruments()}
    assert set(instruments) == {("alpha", "BTC/USDT"), ("beta", "BTC/USDT")}
    assert instruments[("alpha", "BTC/USDT")].timeframes == ("1m",)
    assert instruments[("beta", "BTC/USDT")].has_books and instruments[("beta", "BTC/USDT")].has_quotes


def test_opening_reads_no_data_file():
    reader = RecordingReader(MINI)
    assert all(series._ts is None for series in reader.quotes.values())
    assert all(books._ts is None for books in reader.books.values())


def test_quote_is_the_latest_row_at_or_before_now_and_the_last_of_equal_ts(feed):
    assert feed.at(999).quote("alpha", "BTC/USDT") is None
    assert feed.at(1999).quote("alpha", "BTC/USDT").bid == Decimal("100.0")
    quote = feed.at(2000).quote("alpha", "BTC/USDT")
    assert (quote.bid, quote.ask, quote.bid_size, quote.ask_size) == (
        Decimal("100.2"), Decimal("100.7"), Decimal("3"), Decimal("4"),
    )


def test_unknown_sizes_are_none_not_zero(feed):
    reader = feed.reader
    series = reader.quotes[("alpha", "BTC/USDT")]
    quote = ReplayFeed._quote_at(series, 1, "alpha", "BTC/USDT", 0)
    assert quote.bid_size is None and quote.ask_size is None


def test_crossed_quotes_are_served_and_flagged(feed):
    quote = feed.at(5000).quote("alpha", "BTC/USDT")
    assert quote.crossed and quote.bid == Decimal("100.9")
    assert not feed.at(2000).quote("alpha", "BTC/USDT").crossed


def test_top_of_book_comes_from_the_newer_of_quote_and_book(feed):
    assert feed.at(1600).quote("beta", "BTC/USDT") == Quote("beta", "BTC/USDT", 1500, Decimal("101.0"), Decimal("101.2"), Decimal("0.5"), Decimal("0.4"))
    assert feed.at(3500).quote("beta", "BTC/USDT").ts == 3000
    assert feed.at(4500).quote("beta", "BTC/USDT").bid == Decimal("101.1")


def test_book_depth_and_levels(feed):
    book = feed.at(2000).book("beta", "BTC/USDT")
    assert isinstance(book, Book) and len(book.bids) == 3
    assert book.asks[2] == (Decimal("101.8"), Decimal("3"))
    assert len(feed.book("beta", "BTC/USDT", depth=2).asks) == 2


def test_bars_are_completed_bars_only_and_gaps_stay_gaps(feed):
    assert feed.at(59999).bars("alpha", "BTC/USDT", "1m") == []
    assert [b.ts for b in feed.at(239999).bars("alpha", "BTC/USDT", "1m")] == [0, 60000]
    bars = feed.at(240000).bars("alpha", "BTC/USDT", "1m")
    assert [b.ts for b in bars] == [0, 60000, 180000]
    assert bars[1] == Bar(60000, Decimal("100.5"), Decimal("102"), Decimal("100"), Decimal("101.5"), None)
    assert [b.ts for b in feed.bars("alpha", "BTC/USDT", "1m", limit=1)] == [180000]


def test_never_future_data_nor_another_instrument(feed):
    for now in range(0, 250000, 500):
        feed.at(now)
        for venue in ("alpha", "beta"):
            quote = feed.quote(venue, "BTC/USDT")
            if quote:
                assert quote.ts <= now and quote.venue == venue and quote.symbol == "BTC/USDT"
            for bar in feed.bars(venue, "BTC/USDT", "1m"):
                assert bar.ts + 60000 <= now
    assert feed.quote("alpha", "ETH/USDT") is None and feed.bars("gamma", "BTC/USDT", "1m") == []


def test_quote_history_is_the_rows_after_since_up_to_now(feed):
    history = feed.at(5000).quote_history("alpha", "BTC/USDT", since=1000)
    assert [q.ts for q in history] == [2000, 2000, 5000]


def test_merged_events_are_in_time_order_with_bars_at_their_close(feed):
    events = list(feed.reader.events())
    assert [e[0] for e in events] == sorted(e[0] for e in events)
    assert (60000, "bar", "alpha", "BTC/USDT", "1m") in events
    assert list(feed.reader.events(from_ts=3000, to_ts=4000)) == [
        (3000, "quote", "beta", "BTC/USDT", None), (4000, "book", "beta", "BTC/USDT", None),
    ]


def test_realtime_clock_scales_wall_time_and_loops_forward():
    clock = ReplayClock.realtime(start=1000, end=1999, speed=10, anchor_wall_ms=0)
    clock_now = clock.position()
    assert clock_now == (1999, 0)  # far past the end without loop: clamped
    looping = ReplayClock.realtime(start=1000, end=1999, speed=1, anchor_wall_ms=0, loop=True)
    position, shift = looping.position()
    assert 1000 <= position <= 1999 and shift % 1000 == 0 and shift > 0
    reader = RecordingReader(MINI)
    feed = ReplayFeed(reader, ReplayClock.realtime(start=reader.start, end=reader.end, speed=1, anchor_wall_ms=0, loop=True))
    quote = feed.quote("alpha", "BTC/USDT")
    assert quote is None or quote.ts <= feed.now()


def test_writer_round_trip_reads_back_identically(tmp_path):
    writer = RecordingWriter(tmp_path / "rec", name="rt", venues={"v": Venue("v", "crypto", Decimal("0.001"))})
    quotes = [Quote("v", "ETH/BTC", 10, Decimal("0.05"), Decimal("0.0501"), None, Decimal("3.5")),
              Quote("v", "ETH/BTC", 20, Decimal("0.0502"), Decimal("0.0503"), Decimal("1"), Decimal("2"))]
    book = Book("v", "BTC/USDT:USDT", 15, ((Decimal("10"), Decimal("1")),), ((Decimal("11"), Decimal("2")),))
    bar = Bar(0, Decimal("1"), Decimal("2"), Decimal("0.5"), Decimal("1.5"), Decimal("100"))
    for quote in quotes:
        writer.write_quote(quote)
    writer.write_book(book)
    writer.write_bar("v", "ETH/BTC", "1s", bar)
    writer.close()
    reader = RecordingReader(tmp_path / "rec")
    assert (reader.start, reader.end) == (0, 20)
    feed = ReplayFeed(reader, ReplayClock.stepped(20))
    assert feed.quote("v", "ETH/BTC") == quotes[1]
    assert feed.quote_history("v", "ETH/BTC", since=0) == quotes
    assert feed.book("v", "BTC/USDT:USDT") == book
    assert feed.at(1000).bars("v", "ETH/BTC", "1s") == [bar]


def broken_copy(tmp_path, relative: str, text: str):
    target = tmp_path / "rec"
    shutil.copytree(MINI, target)
    (target / relative).write_text(text)
    return target


@pytest.mark.parametrize(
    "text, line, problem",
    [
        ("ts,bid,ask\n1,2,3\n", 1, "header"),
        ("ts,bid,ask,bid_size,ask_size\n1000,1,2,3\n", 2, "columns"),
        ("ts,bid,ask,bid_size,ask_size\n1000,1,2,3,4\nsoon,1,2,3,4\n", 3, "integer"),
        ("ts,bid,ask,bid_size,ask_size\n1000,abc,2,3,4\n", 2, "bid"),
        ("ts,bid,ask,bid_size,ask_size\n1000,1e5,2,3,4\n", 2, "bid"),
        ("ts,bid,ask,bid_size,ask_size\n1000,1,2,-3,4\n", 2, "bid_size"),
        ("ts,bid,ask,bid_size,ask_size\n2000,1,2,3,4\n1000,1,2,3,4\n", 3, "earlier"),
    ],
)
def test_malformed_quotes_name_file_and_line(tmp_path, text, line, problem):
    path = broken_copy(tmp_path, "quotes/alpha/BTC-USDT.csv", text)
    feed = ReplayFeed(RecordingReader(path), ReplayClock.stepped(10_000))
    with pytest.raises(RecordingError) as error:
        feed.quote("alpha", "BTC/USDT")  # the last row at or before 10 s: checked when served
    with pytest.raises(RecordingError) as whole:
        RecordingReader(path).load_all()  # every row: checked up front
    assert str(whole.value) == str(error.value)
    assert error.value.line == line and error.value.path.endswith("quotes/alpha/BTC-USDT.csv")
    assert problem in str(error.value) and f"BTC-USDT.csv:{line}:" in str(error.value)


@pytest.mark.parametrize(
    "text, line, problem",
    [
        ('{"ts": 1, "bids": [["1", "1"]], "asks": [["2", "1"]]}\n{"ts": 2, "bids": [\n', 2, "JSON"),
        ('{"ts": 1, "bids": [["1", "1"], ["2", "1"]], "asks": []}\n', 1, "descend"),
        ('{"ts": 1, "bids": [], "asks": [[2, 1]]}\n', 1, "strings"),
        ('{"ts": 5, "bids": [], "asks": []}\n{"ts": 4, "bids": [], "asks": []}\n', 2, "earlier"),
    ],
)
def test_malformed_books_name_file_and_line(tmp_path, text, line, problem):
    path = broken_copy(tmp_path, "books/beta/BTC-USDT.jsonl", text)
    feed = ReplayFeed(RecordingReader(path), ReplayClock.stepped(10_000))
    with pytest.raises(RecordingError) as error:
        feed.book("beta", "BTC/USDT")
    assert error.value.line == line and problem in str(error.value)


def test_bad_manifest_and_unknown_venue_folder(tmp_path):
    with pytest.raises(RecordingError, match="manifest.json: missing"):
        RecordingReader(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "trifecta-recording/9"}')
    with pytest.raises(RecordingError, match="format must be"):
        RecordingReader(tmp_path)
    target = tmp_path / "copy"
    shutil.copytree(MINI, target)
    (target / "quotes" / "gamma").mkdir()
    with pytest.raises(RecordingError, match="gamma.*not in manifest"):
        RecordingReader(target)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40), min_size=1, max_size=6))
def test_junk_lines_give_a_recording_error_with_a_line_or_are_valid(tmp_path_factory, junk):
    target = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(MINI, target / "rec")
    path = target / "rec" / "quotes" / "alpha" / "BTC-USDT.csv"
    path.write_text("ts,bid,ask,bid_size,ask_size\n1000,1,2,3,4\n" + "\n".join(junk) + "\n")
    reader = RecordingReader(target / "rec")
    try:
        rows = reader.load_all()
    except RecordingError as error:
        assert error.line is not None and error.line >= 2, error
    else:
        assert rows >= 2
        feed = ReplayFeed(reader, ReplayClock.stepped(10**15))
        assert feed.quote("alpha", "BTC/USDT") is not None


def test_array_histories_equal_the_generic_ones(feed):
    from scanners.feeds.base import Feed

    feed.at(240_000)
    fast_ts, fast_mid = feed.mid_history("alpha", "BTC/USDT", since=0)
    slow_ts, slow_mid = Feed.mid_history(feed, "alpha", "BTC/USDT", since=0)
    assert fast_ts.tolist() == slow_ts.tolist() == [1000, 2000, 2000]  # the crossed row at 5000 is left out
    assert fast_mid.tolist() == slow_mid.tolist()
    for since in (0, 60_000, 119_999, 120_000):
        fast = feed.close_history("alpha", "BTC/USDT", "1m", since=since)
        slow = Feed.close_history(feed, "alpha", "BTC/USDT", "1m", since=since)
        assert fast[0].tolist() == slow[0].tolist() and fast[1].tolist() == slow[1].tolist()
    assert feed.close_history("alpha", "BTC/USDT", "1m", since=0)[0].tolist() == [60_000, 120_000, 240_000]
