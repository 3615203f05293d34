"""A small made-up market, written as a recording by the test that needs it (seeded: the same every time).

Two crypto venues quote BTC/USDT every 2 s on a random walk; the second one's price is
now and then dislocated by ~0.6 % for a minute (cross-venue arbitrage after fees). A
forex broker has EUR/USD minute bars on a trending random walk with quotes every 5 s,
starting an hour earlier (the forex scanner needs 60 bars). Enough history for the forex
and binary scanners, and all three kinds trade on it.
"""
import random
from decimal import Decimal as D

from scanners.feeds.base import Bar, Quote, Venue
from scanners.feeds.recording import RecordingWriter

START = 1_700_006_400_000  # 2023-11-15 00:00 UTC, a Wednesday (forex is open)
FOREX_LEAD_S = 65 * 60


def write_market(path, *, minutes: int = 90, seed: int = 7):
    rng = random.Random(seed)
    writer = RecordingWriter(path, name="synthetic-desk", venues={
        "alpha": Venue("alpha", "crypto", D("0.001")), "beta": Venue("beta", "crypto", D("0.001")),
        "fxb": Venue("fxb", "forex", D("0")),
    }, description="made up by tests/execution/synthetic.py", source="generated")
    btc, offset = 37_000.0, 0.0
    eur, drift = 1.0850, 0.0
    bar = None
    for second in range(-FOREX_LEAD_S, minutes * 60, 1):
        ts = START + second * 1000
        if second >= 0 and second % 2 == 0:
            btc += rng.gauss(0, 4)
            dislocated = (second // 60) % 7 == 3
            offset = 0.006 * btc if dislocated else rng.gauss(0, 2)
            for venue, mid in (("alpha", btc), ("beta", btc + offset)):
                writer.write_quote(Quote(venue, "BTC/USDT", ts, D(f"{mid - 0.5:.2f}"), D(f"{mid + 0.5:.2f}"),
                                         D("0.8"), D("0.8")))
        if second % 60 == 0:
            if bar is not None:
                writer.write_bar("fxb", "EUR/USD", "1m", bar)
            if (second // 60) % 20 == 0:
                drift = rng.choice((-1, 1)) * 0.00004
            bar = [ts, eur, eur, eur, eur]
        eur += drift / 60 + rng.gauss(0, 0.00002)
        bar[2], bar[3], bar[4] = max(bar[2], eur), min(bar[3], eur), eur
        if second % 5 == 0:
            writer.write_quote(Quote("fxb", "EUR/USD", ts, D(f"{eur - 0.00004:.5f}"), D(f"{eur + 0.00004:.5f}")))
        if second % 60 == 59:
            bar = Bar(bar[0], *(D(f"{v:.5f}") for v in bar[1:]))
    writer.close()
    return path
