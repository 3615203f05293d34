"""How fast a large recording opens and answers its first quote, and how much it holds once loaded.

Generates a seeded ~30 MB recording in a temporary folder (3 venues x 4 symbols, each
with quotes every 500 ms, 10-level books every 10 s, 1m and 5m bars), then measures in
the same run (best of several runs; the files are in the OS cache for every figure):
- open_reader: `RecordingReader(path)` against reading and parsing manifest.json alone;
- open_and_first_quote: open + `ReplayFeed.quote()` of one instrument at mid-span (its
  quotes file read and checked, its books file indexed) against a `wc -l` style read of
  every file (read the bytes, count the newlines): target < 50 ms;
- load_all: reading and checking every row and snapshot, against the same full read;
- held_after_load_all: memory the loaded reader holds (tracemalloc) against the memory
  of every file kept as a list of line strings, the least a line-based reader keeps.
Run: `cd bench && ../.venv/bin/python replay_open.py` (or `make bench-replay-open`).
"""
import json
import random
import shutil
import tempfile
import tracemalloc
from pathlib import Path

from common import metric, timed, write_results

from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed

VENUES = ["alpha", "beta", "gamma"]
SYMBOLS = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT"]
START = 1_700_000_040_000  # a minute boundary
QUOTE_EVERY_MS = 500
BOOK_EVERY_MS = 10_000
TARGET_BYTES = 30_000_000


def cents(value: int) -> str:
    return f"{value // 100}.{value % 100:02d}"


def generate(root: Path, target_bytes: int = TARGET_BYTES) -> int:
    """Write the recording; returns its size in bytes. Prices move by a seeded random walk in cents."""
    rng = random.Random(7)
    instruments = [(v, s) for v in VENUES for s in SYMBOLS]
    rows = target_bytes // len(instruments) // 60  # ~43 bytes a quote row + ~17 of books per quote row
    end = START + (rows - 1) * QUOTE_EVERY_MS
    for venue, symbol in instruments:
        price = rng.randint(100_00, 50_000_00)
        quotes, books, bars_1m, bars_5m = ["ts,bid,ask,bid_size,ask_size\n"], [], [], []
        bar = {}
        for row in range(rows):
            ts = START + row * QUOTE_EVERY_MS
            price = max(1_00, price + rng.randint(-5, 5))
            bid, ask = price, price + rng.choice((1, 1, 2, 3))
            quotes.append(f"{ts},{cents(bid)},{cents(ask)},{rng.randint(1, 900) / 100},{rng.randint(1, 900) / 100}\n")
            if ts % BOOK_EVERY_MS == 0:
                books.append(json.dumps({
                    "ts": ts,
                    "bids": [[cents(bid - level * 5), str(rng.randint(1, 500) / 100)] for level in range(10)],
                    "asks": [[cents(ask + level * 5), str(rng.randint(1, 500) / 100)] for level in range(10)],
                }) + "\n")
            for frame, span, out in (("1m", 60_000, bars_1m), ("5m", 300_000, bars_5m)):
                opened = ts - ts % span
                current = bar.get(frame)
                if current is None or current[0] != opened:
                    if current is not None:
                        out.append(f"{current[0]},{cents(current[1])},{cents(current[2])},{cents(current[3])},{cents(current[4])},{current[5]}\n")
                    current = bar[frame] = [opened, price, price, price, price, 0]
                current[2], current[3], current[4] = max(current[2], price), min(current[3], price), price
                current[5] += 1
        for folder, name, lines in (
            ("quotes", f"{symbol}.csv", quotes),
            ("books", f"{symbol}.jsonl", books),
            ("bars", f"{symbol}@1m.csv", ["ts,open,high,low,close,volume\n", *bars_1m]),
            ("bars", f"{symbol}@5m.csv", ["ts,open,high,low,close,volume\n", *bars_5m]),
        ):
            (root / folder / venue).mkdir(parents=True, exist_ok=True)
            (root / folder / venue / name).write_text("".join(lines))
    manifest = {
        "format": "trifecta-recording/1", "name": "bench-30mb", "start": START, "end": end,
        "venues": {v: {"asset_class": "crypto", "taker_fee": "0.001"} for v in VENUES},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def data_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")


def held_bytes(build) -> int:
    """Bytes still allocated after `build()` returns, while its result is alive."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del kept
    return held


def main():
    root = Path(tempfile.mkdtemp(prefix="trifecta-bench-replay-"))
    try:
        size = generate(root)
        files = data_files(root)
        mid = (START + json.loads((root / "manifest.json").read_text())["end"]) // 2
        print(f"recording: {size / 1e6:.1f} MB in {len(files)} data files + manifest.json")

        def manifest_only():
            json.loads((root / "manifest.json").read_text())

        def read_everything():
            return sum(path.read_bytes().count(b"\n") for path in files)

        def open_reader():
            RecordingReader(root)

        def open_and_first_quote():
            quote = ReplayFeed(RecordingReader(root), ReplayClock.stepped(mid)).quote("beta", "ETH/USDT")
            assert quote is not None and quote.ts <= mid

        def load_all():
            RecordingReader(root).load_all()

        def loaded_reader():
            reader = RecordingReader(root)
            reader.load_all()
            return reader

        def lines_of_every_file():
            return [path.read_text().splitlines() for path in files]

        manifest_ms = timed(manifest_only, repeat=20) * 1000
        full_read_ms = timed(read_everything, repeat=5) * 1000
        open_ms = timed(open_reader, repeat=20) * 1000
        first_quote_ms = timed(open_and_first_quote, repeat=7) * 1000
        load_all_ms = timed(load_all, repeat=3) * 1000
        held_mb = held_bytes(loaded_reader) / 1e6
        lines_mb = held_bytes(lines_of_every_file) / 1e6

        print(f"recording: {size / 1e6:.1f} MB on disk; ratio = baseline / value (above 1: less time or memory)")
        write_results("replay-open", {
            "open_reader": metric(open_ms, "ms", manifest_ms, "< 5 ms (manifest and folder listing only)", open_ms < 5),
            "open_and_first_quote": metric(first_quote_ms, "ms", full_read_ms, "< 50 ms", first_quote_ms < 50),
            "load_all": metric(load_all_ms, "ms", full_read_ms, "none (informative: every row and snapshot checked)", True),
            "held_after_load_all": metric(held_mb, "MB", lines_mb, "less than every file kept as lines", held_mb < lines_mb),
        })
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
