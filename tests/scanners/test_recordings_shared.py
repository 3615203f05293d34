"""The replay feed on every real recording in ../shared/recordings (skipped where absent)."""
import csv
from decimal import Decimal

import pytest

from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed
from tests.conftest import shared_recordings

RECORDINGS = shared_recordings()
pytestmark = pytest.mark.shared


@pytest.fixture(params=RECORDINGS or [None], ids=[p.name for p in RECORDINGS] or ["absent"])
def recording(request):
    if request.param is None:
        pytest.skip("../shared/recordings is absent: real recordings live outside the repository")
    return request.param


def independent_crossed_count(path) -> int:
    with open(path, newline="") as handle:
        return sum(1 for row in csv.DictReader(handle) if row["bid"] and row["ask"] and Decimal(row["bid"]) >= Decimal(row["ask"]))


def test_every_instrument_loads_and_serves_only_its_own_past(recording):
    reader = RecordingReader(recording)
    assert reader.load_all() > 0
    instruments = reader.instruments()
    assert instruments
    feed = ReplayFeed(reader, ReplayClock.stepped(reader.start))
    span = max(1, reader.end - reader.start)
    for step in range(51):
        now = reader.start + span * step // 50
        feed.at(now)
        for instrument in instruments:
            quote = feed.quote(instrument.venue, instrument.symbol)
            if quote is not None:
                assert (quote.venue, quote.symbol) == (instrument.venue, instrument.symbol)
                assert quote.ts <= now
                if quote.bid is not None and quote.ask is not None:
                    assert quote.crossed == (quote.bid >= quote.ask)
            for timeframe in instrument.timeframes:
                for bar in feed.bars(instrument.venue, instrument.symbol, timeframe, limit=5):
                    assert bar.low <= bar.high and bar.ts <= now
            if instrument.has_books:
                book = feed.book(instrument.venue, instrument.symbol, depth=10)
                if book is not None:
                    assert book.ts <= now and book.venue == instrument.venue


def test_crossed_quotes_are_flagged_exactly_as_recorded(recording):
    reader = RecordingReader(recording)
    for (venue, symbol), series in reader.quotes.items():
        feed = ReplayFeed(reader, ReplayClock.stepped(reader.end))
        flagged = sum(1 for q in feed.quote_history(venue, symbol, since=reader.start - 1) if q.crossed)
        assert flagged == independent_crossed_count(series.path), f"{venue} {symbol}"
