"""How long a large recording takes to open and answer its first quote.

Generates a seeded ~30 MB recording (quotes, 1m bars and 10-level books for several
venues and symbols), then times, in the same run:
- open: `RecordingReader(path)` + `ReplayFeed.quote()` for one instrument at mid-span,
- baseline: reading every line of every file once (what a reader that loads everything
  up front must at least do).
Target: open + first quote < 50 ms for the 30 MB recording.
"""
import json
import random
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path

from common import metric, timed, write_results

from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed

VENUES = ["alpha", "beta", "gamma"]
SYMBOLS = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT"]
START = 1_700_000_000_000


def generate(root: Path, target_bytes: int = 30_000_000) -> int:
    rng = random.Random(7)
    manifest = {"format": "trifecta-recording/1", "name": "bench", "start": START, "end": START,
                "venues": {v: {"asset_class": "crypto", "taker_fee": "0.001"} for v in VENUES}}
    files = []
    for venue in VENUES:
        for symbol in SYMBOLS:
            for folder in ("quotes", "books", "bars"):
                (root / folder / venue).mkdir(parents=True, exist_ok=True)
            files.append((venue, symbol))
    per_file = target_bytes // len(files)
    end = START
    for venue, symbol in files:
        price = Decimal(rng.randint(100, 50000))
        with open(root / "quotes" / venue / f"{symbol}.csv", "w") as quotes, \
                open(root / "books" / venue / f"{symbol}.jsonl", "w") as books, \
                open(root / "bars" / venue / f"{symbol}@1m.csv", "w") as bars:
            quotes.write("ts,bid,ask,bid_size,ask_size\n")
            bars.write("ts,open,high,low,close,volume\n")
            ts, written = START, 0
            while written < per_file:
                price += Decimal(rng.randint(-5, 5)) / 100
                bid, ask = price, price + Decimal("0.01")
                line = f"{ts},{bid},{ask},{rng.randint(1, 900) / 100},{rng.randint(1, 900) / 100}\n"
                quotes.write(line)
                written += len(line)
                if ts % 10_000 == 0:
                    book = {"ts": ts, "bids": [[str(bid - Decimal(i) / 100), "1.5"] for i in range(10)],
                            "asks": [[str(ask + Decimal(i) / 100), "1.5"] for i in range(10)]}
                    text = json.dumps(book) + "\n"
                    books.write(text)
                    written += len(text)
                if ts % 60_000 == 0:
                    bars.write(f"{ts},{price},{price + 1},{price - 1},{price},12.5\n")
                ts += 500
            end = max(end, ts)
    manifest["end"] = end
    (root / "manifest.json").write_text(json.dumps(manifest))
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main():
    root = Path(tempfile.mkdtemp(prefix="trifecta-bench-"))
    try:
        size = generate(root)
        mid = (START + json.loads((root / "manifest.json").read_text())["end"]) // 2

        def open_and_quote():
            reader = RecordingReader(root)
            ReplayFeed(reader, ReplayClock.stepped(mid)).quote("beta", "ETH/USDT")

        def read_everything():
            for path in root.rglob("*"):
                if path.is_file():
                    with open(path, "rb") as handle:
                        for _ in handle:
                            pass

        baseline = timed(read_everything, repeat=3)
        value = timed(open_and_quote, repeat=3)
        print(f"recording: {size / 1e6:.1f} MB in {len(list(root.rglob('*.*')))} files")
        write_results("replay-open", {
            "open_and_first_quote": metric(value * 1000, "ms", baseline * 1000, "< 50 ms", value * 1000 < 50),
        })
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
