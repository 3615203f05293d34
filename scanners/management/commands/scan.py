"""`manage.py scan KIND --recording DIR (--at TS | --every DURATION) --json`.

The scan contract acceptance checks use (README, "Scan contract"): prints every
opportunity at or above the thresholds, not only the top N, as JSON lines, and writes
nothing to the database.
"""
import json
import os
import sys
from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from scanners.durations import parse_duration
from scanners.feeds.base import FeedError
from scanners.scanning import SCANNERS, scan_times, times_with_fresh_data


class Command(BaseCommand):
    help = "Scan a recording at one time or at every multiple of a duration and print the opportunities."

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=sorted(SCANNERS))
        parser.add_argument("--recording", required=True, help="recording directory")
        when = parser.add_mutually_exclusive_group(required=True)
        when.add_argument("--at", type=int, help="scan time, epoch ms")
        when.add_argument("--every", help="scan at every multiple of this duration since the epoch (500ms, 60s, 5m, 1h, 1d)")
        parser.add_argument("--min-net-pct", help="arbitrage: minimum net profit in percent (default 0.5)")
        parser.add_argument("--max-quote-age", help="skip quotes older than this at scan time (e.g. 5s, 2m)")
        parser.add_argument("--json", action="store_true", help="print JSON lines (the contract); the default")

    def handle(self, *args, kind, recording, at, every, min_net_pct, max_quote_age, **options):
        from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed

        overrides = {}
        if min_net_pct is not None:
            try:
                overrides["min_net_pct"] = Decimal(min_net_pct)
            except InvalidOperation:
                raise CommandError(f"--min-net-pct: {min_net_pct!r} is not a number")
        if max_quote_age is not None:
            try:
                overrides["max_quote_age_ms"] = parse_duration(max_quote_age)
            except ValueError as exc:
                raise CommandError(f"--max-quote-age: {exc}")
        scanner = SCANNERS[kind]
        try:
            thresholds = scanner.thresholds_with(overrides)
        except ValueError as exc:
            raise CommandError(str(exc))
        try:
            reader = RecordingReader(recording)
            if every is not None:
                times = scan_times(reader.start, reader.end, parse_duration(every))
                times = times_with_fresh_data(times, reader.event_times(),
                                              scanner.fresh_window_ms(thresholds, reader.instruments())).tolist()
            else:
                times = [at]
            feed = ReplayFeed(reader, ReplayClock.stepped(times[0] if times else reader.start))
            state = scanner.new_state()
            out = sys.stdout
            for ts in times:
                feed.at(ts)
                result = scanner.scan(feed, now=ts, thresholds=thresholds, state=state)
                for candidate in result.candidates:
                    out.write(json.dumps(candidate.as_json(), separators=(",", ":")) + "\n")
            out.flush()
        except BrokenPipeError:  # the reader stopped early (e.g. `| head`): nothing more to say
            sys.stdout = open(os.devnull, "w")
        except (FeedError, ValueError) as exc:
            raise CommandError(str(exc))
