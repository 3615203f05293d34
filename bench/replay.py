"""Replay throughput: the whole desk over real recordings, against just reading them.

For two recordings of ../shared/recordings, picked by their shape (so another set of
recordings works the same way):
- `minute_day`: the first day of the first recording with 1-minute bars and at least 5
  instruments;
- `ticks`: the quote-only recording with the most market events (the densest tick data);
- `hourly`: the whole of the longest recording with hourly bars (two years of EUR/USD,
  `fx-eurusd-1h-2014-2015`, in the shared set).
Each is replayed as `manage.py replay` does (default settings and scan intervals, its
own in-memory database), and measured beside a baseline taken in the same run: reading
every row of the same span and merging them into one time-ordered stream
(`RecordingReader.load_all` + `events()`), nothing else. Figures:
- `{name}_x_real_time`: simulated seconds per wall-clock second (targets: 5,000 for the
  minute day, 1,000 for the ticks);
- `{name}_scan_events_per_s`: market events per second through the feed and the three
  scanners alone, at every scan time of the replay (target 50,000 on the ticks; on the
  minute day, whose events are sparse next to its scan times, it is reported);
- `{name}_desk_events_per_s` and `{name}_decisions_per_s`: the same for the whole desk
  (scanners, decisions, executions, monitor, database writes); issue 29's targets: 20,000
  events/s on the minute day, 100,000 on the ticks;
- `hourly_wall_s`: the whole desk over the hourly recording, in seconds (target: under 5).
The baseline of each figure is the read-and-merge pass (simulated time or market events
per second; for decisions, its events per second); `ratio` is baseline / value: how many
times faster reading the rows alone goes than the desk.
Run: `make bench-replay`.
"""
import os
import sys
import time
from pathlib import Path

os.environ["DJANGO_SETTINGS_MODULE"] = "trifecta_site.replay_settings"

from common import ROOT, metric, write_results  # noqa: E402

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from execution.management.commands.replay import apply_settings  # noqa: E402
from execution.replay import KINDS, Replay  # noqa: E402
from scanners import models as scan_models  # noqa: E402
from scanners import services  # noqa: E402
from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed  # noqa: E402
from scanners.scanning import SCANNERS  # noqa: E402

SHARED = ROOT.parent / "shared" / "recordings"
DAY_MS = 86_400_000
TARGETS = {"minute_day": 5_000, "ticks": 1_000}
SCAN_EVENTS_TARGET = 50_000
DESK_EVENTS_TARGETS = {"minute_day": 20_000, "ticks": 100_000}
HOURLY_WALL_TARGET_S = 5


def recordings() -> list[RecordingReader]:
    return [RecordingReader(p) for p in sorted(SHARED.iterdir()) if (p / "manifest.json").is_file()]


def pick(readers) -> dict[str, tuple[RecordingReader, int, int]]:
    picked = {}
    minute = [r for r in readers if any(tf == "1m" for _, _, tf in r.bars) and len(r.instruments()) >= 5]
    if minute:
        reader = minute[0]
        picked["minute_day"] = (reader, reader.start, min(reader.end, reader.start + DAY_MS - 1))
    ticks = [r for r in readers if r.quotes and not r.bars and not r.books]
    if ticks:
        reader = max(ticks, key=lambda r: len(r.event_times()))
        picked["ticks"] = (reader, reader.start, reader.end)
    hourly = [r for r in readers if any(tf == "1h" for _, _, tf in r.bars)]
    if hourly:
        reader = max(hourly, key=lambda r: r.end - r.start)
        picked["hourly"] = (reader, reader.start, reader.end)
    return picked


def read_and_merge(path: Path, start: int, end: int) -> tuple[float, int]:
    """The baseline: a fresh reader reads and checks every row, then merges them in time order."""
    began = time.perf_counter()
    reader = RecordingReader(path)
    reader.load_all()
    count = sum(1 for _ in reader.events(start, end))
    return time.perf_counter() - began, count


def scan_only(reader: RecordingReader, replay: Replay) -> float:
    """Feed and scanners alone, at the times the replay scans each kind (no database)."""
    plans = replay.schedules()
    feed = ReplayFeed(reader, ReplayClock.stepped(replay.start))
    began = time.perf_counter()
    for kind in KINDS:
        scanner = SCANNERS[kind]
        row = getattr(scan_models, services.SETTINGS_MODELS[kind]).get_solo()
        thresholds, state, plan = row.thresholds(scanner.thresholds_type), scanner.new_state(), plans[kind]
        ts = plan.first(replay.start)
        while ts is not None and ts <= replay.end:
            feed.at(ts)
            found = len(scanner.scan(feed, now=ts, thresholds=thresholds, state=state).candidates)
            ts = plan.after(ts, found=found)
    return time.perf_counter() - began


def measure(name: str, reader: RecordingReader, start: int, end: int) -> dict:
    call_command("flush", interactive=False, verbosity=0)
    apply_settings({})
    services.forget_scan_state()
    base_s, base_events = read_and_merge(reader.path, start, end)
    fresh = RecordingReader(reader.path)
    replay = Replay(fresh, start=start, end=end)
    began = time.perf_counter()
    result = replay.run()
    desk_s = time.perf_counter() - began
    scan_s = scan_only(RecordingReader(reader.path), replay)
    span_s = (end - start) / 1000
    events = result.market_events
    print(f"{name}: {reader.name} {span_s / 3600:.1f} h, {events} market events, {result.opportunities} opportunities, "
          f"{result.decisions} decisions, {result.executed} executed; replay {desk_s:.2f} s, scanners alone {scan_s:.2f} s, "
          f"read and merge {base_s:.2f} s")
    target = TARGETS.get(name)
    x_real = span_s / desk_s
    base_x_real = span_s / base_s
    desk_target = DESK_EVENTS_TARGETS.get(name)
    figures = {}
    if name == "hourly":
        figures["hourly_wall_s"] = metric(desk_s, "s", base_s, f"< {HOURLY_WALL_TARGET_S}", desk_s < HOURLY_WALL_TARGET_S,
                                          ratio=desk_s / base_s)
    return {
        **figures,
        f"{name}_x_real_time": metric(x_real, "simulated s per wall s", base_x_real,
                                      f">= {target}" if target else "(reported)", target is None or x_real >= target,
                                      ratio=base_x_real / x_real),
        f"{name}_scan_events_per_s": metric(events / scan_s, "market events/s", base_events / base_s,
                                            f">= {SCAN_EVENTS_TARGET}" if name == "ticks" else "(reported)",
                                            events / scan_s >= SCAN_EVENTS_TARGET or name != "ticks",
                                            ratio=(base_events / base_s) / (events / scan_s)),
        f"{name}_desk_events_per_s": metric(events / desk_s, "market events/s", base_events / base_s,
                                            f">= {desk_target}" if desk_target else "(reported)",
                                            desk_target is None or events / desk_s >= desk_target,
                                            ratio=(base_events / base_s) / (events / desk_s)),
        f"{name}_decisions_per_s": metric(result.decisions / desk_s, "decisions/s", base_events / base_s, "(reported)", True,
                                          ratio=(base_events / base_s) / max(result.decisions / desk_s, 1e-9)),
    }


def main() -> int:
    if not SHARED.is_dir():
        print(f"{SHARED} is absent: the replay benchmark runs on the shared recordings")
        return 1
    call_command("migrate", verbosity=0, interactive=False)
    picked = pick(recordings())
    metrics = {}
    for name, (reader, start, end) in picked.items():
        metrics.update(measure(name, reader, start, end))
    write_results("replay", metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
