"""The replay feed: a recording (trifecta-recording/1) served as of a replay clock.

`parsing` holds the file grammar, `reader` the lazily read recording, `clock` the replay's
time and `feed` the `Feed` over both; callers import from here.
"""
from .clock import ReplayClock
from .feed import ReplayFeed
from .reader import Event, RecordingReader

__all__ = ["Event", "RecordingReader", "ReplayClock", "ReplayFeed"]
