"""The replay feed's array histories (for the scanners' math) equal the generic ones built from Quote/Bar objects.

Everything else about the replay feed is tested in test_replay_feed.py.
"""
import pytest

from scanners.feeds.base import Feed
from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed
from tests.conftest import FIXTURES

MINI = FIXTURES / "recordings" / "mini"


@pytest.fixture
def feed():
    reader = RecordingReader(MINI)
    return ReplayFeed(reader, ReplayClock.stepped(reader.start))


def test_array_histories_equal_the_generic_ones(feed):
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
