"""The replay feed on every real recording in ../shared/recordings, checked against the csv/json modules.

Skipped (one skipped test per check, not zero tests) where ../shared is absent: the real
recordings live outside the repository.
"""
import bisect
import csv
import json
import re
from decimal import Decimal

import pytest

from scanners.feeds.base import TIMEFRAME_MS, Quote
from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed
from tests.conftest import SHARED_RECORDINGS, shared_recordings

RECORDINGS = shared_recordings()
CLOCK_POINTS = 50
pytestmark = pytest.mark.shared


def recordings_with(folder: str | None = None) -> list:
    """One param per recording (with `folder`, when given), or a single None that becomes a skip."""
    chosen = [p for p in RECORDINGS if folder is None or (p / folder).is_dir()]
    return [pytest.param(p, id=p.name) for p in chosen] or [pytest.param(None, id="absent")]


def present(recording):
    if recording is None:
        pytest.skip(f"{SHARED_RECORDINGS} is absent (or has none of this kind): the real recordings live outside the repository")
    return recording


def index_figures() -> dict[str, tuple[int, int]]:
    """name -> (rows, crossed quote rows) as INDEX.md states them (crossed 0 where it says nothing)."""
    path = SHARED_RECORDINGS / "INDEX.md"
    figures = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 8 and cells[5].isdigit():
                crossed = re.search(r"crossed quotes present \((\d+) rows\)", cells[7])
                figures[cells[0]] = (int(cells[5]), int(crossed.group(1)) if crossed else 0)
    return figures


def csv_rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def decimal_or_none(text: str) -> Decimal | None:
    return Decimal(text) if text else None


@pytest.mark.parametrize("recording", recordings_with())
def test_every_file_loads_completely_and_counts_what_the_index_says(recording):
    reader = RecordingReader(present(recording))
    rows = reader.load_all()
    counted = sum(len(csv_rows(s.path)) for s in [*reader.quotes.values(), *reader.bars.values()])
    counted += sum(sum(1 for line in b.path.read_text().splitlines() if line) for b in reader.books.values())
    assert rows == counted > 0
    if recording.name in index_figures():
        assert rows == index_figures()[recording.name][0]
    instruments = reader.instruments()
    assert instruments and all(i.has_quotes or i.has_books or i.timeframes for i in instruments)
    assert {i.venue for i in instruments} <= set(reader.venues())
    assert reader.start <= min(reader.event_times()) and reader.start <= reader.end


@pytest.mark.parametrize("recording", recordings_with())
def test_quotes_at_50_clock_points_are_the_latest_rows_of_their_own_instrument(recording):
    reader = RecordingReader(present(recording))
    feed = ReplayFeed(reader, ReplayClock.stepped(reader.start))
    expected = {}
    for (venue, symbol), series in reader.quotes.items():
        rows = csv_rows(series.path)
        expected[(venue, symbol)] = ([int(r["ts"]) for r in rows], rows)
    span = reader.end - reader.start
    served = 0
    for step in range(CLOCK_POINTS + 1):
        now = reader.start + span * step // CLOCK_POINTS
        feed.at(now)
        for instrument in reader.instruments():
            venue, symbol = instrument.venue, instrument.symbol
            quote = feed.quote(venue, symbol)
            book = feed.book(venue, symbol, depth=10)
            if book is not None:
                assert book.ts <= now and (book.venue, book.symbol) == (venue, symbol)
                assert len(book.bids) <= 10 and len(book.asks) <= 10
            if not instrument.has_quotes:
                assert quote == (book.top() if book is not None else None)
                continue
            stamps, rows = expected[(venue, symbol)]
            index = bisect.bisect_right(stamps, now) - 1
            if index < 0:
                assert quote is None or quote == book.top()
                continue
            row = rows[index]
            from_csv = Quote(venue, symbol, stamps[index], *(decimal_or_none(row[c]) for c in ("bid", "ask", "bid_size", "ask_size")))
            assert quote == (book.top() if book is not None and book.ts > from_csv.ts else from_csv)
            assert quote.ts <= now
            served += 1
    assert served or not reader.quotes


@pytest.mark.parametrize("recording", recordings_with("quotes"))
def test_crossed_quotes_are_flagged_exactly_as_often_as_they_were_recorded(recording):
    reader = RecordingReader(present(recording))
    feed = ReplayFeed(reader, ReplayClock.stepped(reader.end))
    flagged = recorded = 0
    for (venue, symbol), series in reader.quotes.items():
        history = feed.quote_history(venue, symbol, since=reader.start - 1)
        assert len(history) == len(series)
        flagged += sum(1 for q in history if q.crossed)
        recorded += sum(1 for r in csv_rows(series.path) if r["bid"] and r["ask"] and Decimal(r["bid"]) >= Decimal(r["ask"]))
    assert flagged == recorded
    if recording.name in index_figures():
        assert flagged == index_figures()[recording.name][1]


@pytest.mark.parametrize("recording", recordings_with("bars"))
def test_bars_are_complete_sane_and_as_recorded(recording):
    reader = RecordingReader(present(recording))
    for (venue, symbol, timeframe), series in reader.bars.items():
        rows = csv_rows(series.path)
        span = TIMEFRAME_MS[timeframe]
        feed = ReplayFeed(reader, ReplayClock.stepped(int(rows[-1]["ts"]) + span))
        bars = feed.bars(venue, symbol, timeframe, limit=len(rows) + 1)
        assert [(b.ts, b.open, b.high, b.low, b.close, b.volume) for b in bars] == [
            (int(r["ts"]), Decimal(r["open"]), Decimal(r["high"]), Decimal(r["low"]), Decimal(r["close"]), decimal_or_none(r["volume"]))
            for r in rows
        ]
        assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)
        assert all(a.ts < b.ts for a, b in zip(bars, bars[1:]))
        assert feed.at(int(rows[-1]["ts"]) + span - 1).bars(venue, symbol, timeframe, limit=1)[-1:] != bars[-1:]


@pytest.mark.parametrize("recording", recordings_with("books"))
def test_book_snapshots_are_ordered_and_as_recorded(recording):
    reader = RecordingReader(present(recording))
    for (venue, symbol), books in reader.books.items():
        feed = ReplayFeed(reader, ReplayClock.stepped(reader.start))
        lines = [json.loads(line) for line in books.path.read_text().splitlines() if line]
        for index, line in enumerate(lines):
            if index + 1 < len(lines) and lines[index + 1]["ts"] == line["ts"]:
                continue  # equal ts: the later snapshot is the one served
            book = feed.at(line["ts"]).book(venue, symbol)
            assert book.ts == line["ts"] and (book.venue, book.symbol) == (venue, symbol)
            assert book.bids == tuple((Decimal(p), Decimal(s)) for p, s in line["bids"])
            assert book.asks == tuple((Decimal(p), Decimal(s)) for p, s in line["asks"])
            assert all(a[0] >= b[0] for a, b in zip(book.bids, book.bids[1:]))
            assert all(a[0] <= b[0] for a, b in zip(book.asks, book.asks[1:]))
