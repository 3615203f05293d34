"""Recording from the ccxt feed (through the local venue server) and reading it back."""
from django.core.management import call_command

from scanners.durations import parse_duration
from scanners.feeds.exchanges import CcxtFeed
from scanners.feeds.recorder import record
from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed
from tests.conftest import FIXTURES
from tests.venue_server import VenueServer

import pytest

RECORDING = FIXTURES / "recordings" / "two-venues"
START = 1700000000000
FAST = {"binance": {"rateLimit": 10}, "kraken": {"rateLimit": 10}}


def test_parse_duration():
    assert [parse_duration(t) for t in ("500ms", "60s", "5m", "1h", "1d")] == [500, 60_000, 300_000, 3_600_000, 86_400_000]
    for bad in ("5", "1.5s", "m", "", "10 minutes"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_recorded_values_replay_identically(tmp_path):
    with VenueServer(RECORDING, clock=START) as server:
        feed = CcxtFeed(["binance", "kraken"], ["BTC/USDT", "ETH/USDT"], urls=server.urls(), book_depth=5, exchange_options=FAST,
                        min_refresh_ms=0)
        seen = []

        def advance(counts):
            seen.append({v: feed.quote(v, "BTC/USDT") for v in ("binance", "kraken")})
            if len(seen) == 6:
                raise KeyboardInterrupt  # Ctrl-C: the recording must still be valid
            server.clock = server.clock + 10_000

        try:
            counts = record(
                feed, venues=["binance", "kraken"], symbols=["BTC/USDT", "ETH/USDT"], duration_ms=60_000,
                out=tmp_path / "rec", book_depth=5, interval_ms=1, sleep=lambda s: None, on_poll=advance,
            )
        finally:
            feed.close()
    assert counts["interrupted"] and counts["polls"] == 6 and counts["quotes"] == 4 * 6
    reader = RecordingReader(tmp_path / "rec")
    assert reader.venues()["kraken"].taker_fee == feed.taker_fee("kraken")
    replay = ReplayFeed(reader, ReplayClock.stepped(reader.end))
    for venue in ("binance", "kraken"):
        recorded = replay.quote_history(venue, "BTC/USDT", since=0)
        live = [s[venue] for s in seen]
        unique = [q for i, q in enumerate(live) if i == 0 or q != live[i - 1]]
        assert recorded == unique
        assert replay.book(venue, "BTC/USDT") == feed.book(venue, "BTC/USDT")
        assert [b.ts for b in replay.bars(venue, "BTC/USDT", "1m")] == [b.ts for b in feed.bars(venue, "BTC/USDT", "1m")]


def test_record_command_writes_a_valid_recording(tmp_path):
    with VenueServer(RECORDING, clock=START + 30_000) as server:
        call_command(
            "record", "--feed", "ccxt", "--venues", "binance", "--symbols", "BTC/USDT,ETH/USDT", "--duration", "1s",
            "--interval", "200ms", "--depth", "3", "--out", str(tmp_path / "cmd"), "--urls", f"binance={server.urls()['binance']}",
            "--stream", "",  # this server speaks REST only (streams are recorded in test_streaming_feed)
        )
    reader = RecordingReader(tmp_path / "cmd")
    assert reader.load_all() > 0
    feed = ReplayFeed(reader, ReplayClock.stepped(reader.end))
    assert feed.quote_history("binance", "ETH/USDT", since=0)[-1].ts == START + 30_000
    assert len(feed.book("binance", "BTC/USDT").bids) == 3
