"""Desk workers read the live market the scan worker publishes, without importing ccxt."""
import subprocess
import sys
from decimal import Decimal as D

import pytest

from scanners.feeds.base import FeedError
from scanners.feeds.snapshot import SnapshotFeed, publish_snapshot

from ..conftest import ROOT
from ..execution.recorded import recorded_market

T0 = 1_700_000_000_000


def test_a_published_market_reads_back_through_the_feed_interface(tmp_path):
    from django.core.cache import cache

    cache.delete("trifecta:market:catalog")
    with pytest.raises(FeedError, match="no market snapshot yet"):
        SnapshotFeed().quote("a", "BTC/USDT")
    source = recorded_market(tmp_path, venues={"a": ("crypto", "0.001"), "fx": ("forex", "0")}, books=[
        ("a", "BTC/USDT", T0, [("99", "1")], [("100", "2"), ("101", "3")]),
    ], quotes=[("fx", "EUR/USD", T0, "1.1000", "1.1002"), ("fx", "EUR/USD", T0 + 1000, "1.1001", "1.1003")],
        bars=[("fx", "EUR/USD", "1m", T0 - 120_000, "1.1", "1.2", "1.0", "1.15")], at=T0 + 1000)
    assert publish_snapshot(source) == 2
    feed = SnapshotFeed()
    assert feed.book("a", "BTC/USDT") == source.book("a", "BTC/USDT")
    assert feed.book("a", "BTC/USDT", depth=1).asks == ((D("100"), D("2")),)
    assert feed.quote("fx", "EUR/USD").bid == D("1.1001")
    assert [q.bid for q in feed.quote_history("fx", "EUR/USD", T0 - 1)] == [D("1.1000"), D("1.1001")]
    assert feed.bars("fx", "EUR/USD", "1m")[0].close == D("1.15")
    assert feed.taker_fee("a", "BTC/USDT") == D("0.001")
    assert {i.symbol for i in feed.instruments()} == {"BTC/USDT", "EUR/USD"}
    assert feed.quote("nowhere", "X/Y") is None


def test_desk_worker_code_never_imports_ccxt():
    code = ("import sys, django; django.setup(); "
            "import execution.tasks, trifecta_site.tasks; from scanners.feeds import desk_feed; "
            "assert type(desk_feed()).__name__ == 'SnapshotFeed'; print('ccxt' in sys.modules)")
    env = {"DJANGO_SETTINGS_MODULE": "trifecta_site.settings", "TRIFECTA_FEED": "ccxt", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
