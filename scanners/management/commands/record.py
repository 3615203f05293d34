"""`manage.py record`: write a recording from a live feed (public market data only)."""
from django.core.management.base import BaseCommand, CommandError

from scanners.durations import parse_duration
from scanners.feeds.base import FeedError


def csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


class Command(BaseCommand):
    help = "Record quotes, order books and bars from a live feed into a recording directory."

    def add_arguments(self, parser):
        parser.add_argument("--feed", choices=["ccxt", "mt5"], default="ccxt")
        parser.add_argument("--venues", required=True, help="comma-separated ccxt exchange ids, e.g. binance,kraken")
        parser.add_argument("--symbols", required=True, help="comma-separated unified symbols, e.g. BTC/USDT,ETH/USDT")
        parser.add_argument("--duration", required=True, help="how long to record: 90s, 10m, 2h")
        parser.add_argument("--out", required=True, help="recording directory to write")
        parser.add_argument("--depth", type=int, default=20, help="order book levels per side (0 = no books)")
        parser.add_argument("--interval", default="1s", help="time between polls (default 1s)")
        parser.add_argument("--timeframes", default="1m", help="bar timeframes, comma-separated (default 1m)")
        parser.add_argument(
            "--stream", default="*",
            help="venues to follow by WebSocket where ccxt streams them, comma-separated (* all, '' none: REST only)",
        )
        parser.add_argument(
            "--urls", default="",
            help="venue=URL pairs pointing venues at a local server that speaks their public API (for testing)",
        )

    def handle(self, *args, feed, venues, symbols, duration, out, depth, interval, timeframes, stream, urls, **options):
        from scanners.feeds.recorder import record

        try:
            duration_ms, interval_ms = parse_duration(duration), parse_duration(interval)
        except ValueError as exc:
            raise CommandError(str(exc))
        venue_list, symbol_list = csv_list(venues), csv_list(symbols)
        overrides = dict(pair.split("=", 1) for pair in csv_list(urls) if "=" in pair)
        try:
            if feed == "ccxt":
                from scanners.feeds.exchanges import CcxtFeed

                source = CcxtFeed(venue_list, symbol_list, urls=overrides, book_depth=depth or 1,
                                  timeframes=tuple(csv_list(timeframes)), min_refresh_ms=0,
                                  stream_venues=csv_list(stream), keep_updates=True)
            else:
                from scanners.feeds.metatrader import MetaTraderFeed

                source = MetaTraderFeed(symbols=[s.replace("/", "") for s in symbol_list])
                venue_list = ["mt5"]
        except FeedError as exc:
            raise CommandError(str(exc))
        self.stdout.write(f"Recording {', '.join(symbol_list)} at {', '.join(venue_list)} for {duration} into {out} …")
        try:
            counts = record(
                source, venues=venue_list, symbols=symbol_list, duration_ms=duration_ms, out=out,
                book_depth=depth, interval_ms=interval_ms, timeframes=tuple(csv_list(timeframes)),
            )
        finally:
            source.close()
        for status in source.status():
            if status.state != "ok":
                self.stderr.write(f"{status.venue}: {status.state} {status.last_error}")
        self.stdout.write(
            f"Wrote {counts['quotes']} quotes, {counts['books']} books, {counts['bars']} bars in {counts['polls']} polls"
            + (" (stopped early)" if counts.get("interrupted") else "")
        )
