"""Market feeds: one interface (`base.Feed`), three implementations.

`replay` reads a recording, `exchanges` streams and polls ccxt venues (public data only),
`metatrader` reads MetaTrader 5 on Windows. `build_feed()` makes the one the
settings name; scan workers keep one per process (`current_feed()`); desk workers read
`desk_feed()`.
"""
from __future__ import annotations

import os
import threading

from django.conf import settings

from .base import Feed, FeedError
from .replay import RecordingReader, ReplayClock, ReplayFeed
from .snapshot import SnapshotFeed

_lock = threading.Lock()
_current: Feed | None = None


def build_feed(kind: str | None = None) -> Feed:
    kind = kind or settings.TRIFECTA_FEED
    if kind == "replay":
        if not settings.TRIFECTA_RECORDING:
            raise FeedError(
                "TRIFECTA_FEED=replay needs TRIFECTA_RECORDING, the path of a recording directory "
                "(the demo: trifecta_site/demo/eurusd-2014-05-02); or unset TRIFECTA_FEED and start with "
                "`manage.py run`, which uses live data or the demo"
            )
        reader = RecordingReader(settings.TRIFECTA_RECORDING)
        anchor = os.environ.get("TRIFECTA_REPLAY_ANCHOR_MS")
        clock = ReplayClock.realtime(
            start=reader.start,
            end=reader.end,
            speed=float(settings.TRIFECTA_REPLAY_SPEED),
            anchor_wall_ms=int(anchor) if anchor else None,
            loop=True,
        )
        return ReplayFeed(reader, clock)
    if kind == "ccxt":
        from scanners.models import FeedSettings  # models need Django set up; the live probe imports this package before

        from .exchanges import Backoff, CcxtFeed  # only a process that polls venues imports ccxt (desk workers never do)

        universe = FeedSettings.get_solo()
        return CcxtFeed(venues=universe.venue_list(), symbols=universe.symbol_list(), timeout_ms=settings.CCXT_TIMEOUT_MS,
                        urls=settings.CCXT_URLS, stream_venues=universe.stream_venue_list(),
                        backoff=Backoff(cap_s=settings.CCXT_STREAM_BACKOFF_MAX_S))
    if kind == "mt5":
        from scanners.models import FeedSettings  # models need Django set up; the live probe imports this package before

        from .metatrader import MetaTraderFeed  # MetaTrader5 exists only on Windows

        return MetaTraderFeed(symbols=FeedSettings.get_solo().mt5_symbol_list())
    raise FeedError(f"unknown TRIFECTA_FEED {kind!r}: use replay, ccxt or mt5")


_current_universe: tuple = ()


def current_feed() -> Feed:
    """The feed of this process, built on first use and again when the venues or symbols
    to poll are changed (admin: Feed settings); a replay is built once."""
    global _current, _current_universe
    universe = ()
    if settings.TRIFECTA_FEED != "replay":
        from scanners.models import FeedSettings  # models need Django set up; the live probe imports this package before

        universe = FeedSettings.get_solo().universe(settings.TRIFECTA_FEED)
    with _lock:
        if _current is not None and universe != _current_universe:
            _current.close()
            _current = None
        if _current is None:
            _current = build_feed()
            _current_universe = universe
        return _current


_snapshot: Feed | None = None


def desk_feed() -> Feed:
    """The feed of a desk worker (decide, execute, monitor): the replay itself, or the
    live market the scan worker publishes (`snapshot`), so desk workers never import ccxt."""
    global _snapshot
    if settings.TRIFECTA_FEED == "replay":
        return current_feed()
    with _lock:
        if _snapshot is None:
            _snapshot = SnapshotFeed()
        return _snapshot


def reset_current_feed() -> None:
    global _current
    with _lock:
        if _current is not None:
            _current.close()
        _current = None
