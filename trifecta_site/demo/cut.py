"""Cut the demo recording `make run` falls back to from the shared recordings (run once,
by hand: `python trifecta_site/demo/cut.py ../shared/recordings`). Kept so the slice can
be checked and cut again: every row is copied unchanged, only the time window is chosen.

EUR/USD at OANDA and FXCM. From 2014-05-01 12:00 UTC FXCM's minute quotes and 1-minute
bid bars (fx-brokers-2014-05), so the forex scanner has its 60 bars of 15 minutes when the
clock starts; from 2014-05-02 03:35 to 13:30 UTC both brokers' tick quotes
(fx-ticks-2014-05-02) and FXCM's bars of the same minutes. OANDA has ticks only (beside
bars the binary scanner would read the bars instead), so the binary scanner's history
starts at 03:35. It runs into the US payrolls release at 12:30 UTC. `make run` starts the
clock at BEGIN_MS, at SPEED: forex signals and binary options (60-second ones among them)
come every scan there.
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "eurusd-2014-05-02"
FROM_MS = 1399001700000  # 2014-05-02T03:35:00Z: ticks from here
HISTORY_FROM_MS = 1398945600000  # 2014-05-01T12:00:00Z: minute quotes and bars from here (60 bars of 15 minutes)
TO_MS = 1399037400000  # 2014-05-02T13:30:00Z (exclusive)
BEGIN_MS = 1399002000000  # 2014-05-02T03:40:00Z: where `make run` starts the clock (history behind it)
SPEED = 5  # simulated seconds per wall second: ten minutes of market in two. The desk's own latency
# (scan, Celery hops, decision) counts in market time times SPEED against the 5 s quote age: at 10 a
# busy machine judged most 60 s binaries STALE_DATA before they reached the governor
LICENCE = (
    "QuantConnect LEAN sample data (repository QuantConnect/Lean, Apache-2.0); the prices were licensed to "
    "QuantConnect by FXCM and OANDA: check their terms before redistributing this slice outside Trifecta"
)
PARTS = [  # (source recording, file inside it, from, to): minute quotes before the ticks, ticks after
    ("fx-ticks-2014-05-02", "quotes/oanda/EUR-USD.csv", FROM_MS, TO_MS),
    ("fx-brokers-2014-05", "quotes/fxcm/EUR-USD.csv", HISTORY_FROM_MS, FROM_MS),
    ("fx-ticks-2014-05-02", "quotes/fxcm/EUR-USD.csv", FROM_MS, TO_MS),
    ("fx-brokers-2014-05", "bars/fxcm/EUR-USD@1m.csv", HISTORY_FROM_MS, TO_MS),
]


def cut(source_root: Path) -> None:
    first, last, files = None, None, {}
    for recording, name, since, until in PARTS:
        lines = (source_root / recording / name).read_text().splitlines()
        kept = [line for line in lines[1:] if since <= int(line.split(",", 1)[0]) < until]
        files.setdefault(name, [lines[0]]).extend(kept)
        stamps = [int(line.split(",", 1)[0]) for line in kept]
        first = min(stamps[0], first or stamps[0])
        last = max(stamps[-1], last or stamps[-1])
    for name, lines in files.items():
        target = OUT / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(lines) + "\n")
    manifests = {r: json.loads((source_root / r / "manifest.json").read_text()) for r, *_ in PARTS}
    manifest = {
        "format": "trifecta-recording/1",
        "name": "demo-eurusd-2014-05-02",
        "description": "EUR/USD at OANDA and FXCM: FXCM minute quotes and 1-minute bid bars from 2014-05-01 12:00 UTC, then "
                       "both brokers' tick quotes 2014-05-02 03:35-13:30 UTC (into the US payrolls release at 12:30 UTC): the "
                       "demo `make run` replays when no live venue answers.",
        "source": "Cut unchanged (rows copied as they are, only the time window chosen) by trifecta_site/demo/cut.py from "
                  "the shared recordings fx-brokers-2014-05 (minute quotes, bars) and fx-ticks-2014-05-02 (tick quotes). Their sources: "
                  + " | ".join(m["source"] for m in manifests.values()),
        "source_recordings": sorted(manifests),
        "licence": LICENCE,
        "start": first,
        "end": last,
        "venues": {"oanda": {"asset_class": "forex", "taker_fee": "0"}, "fxcm": {"asset_class": "forex", "taker_fee": "0"}},
        "demo": {"begin": BEGIN_MS, "speed": SPEED},
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    cut(Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "recordings"))
