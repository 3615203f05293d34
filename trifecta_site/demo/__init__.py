"""The demo recording `manage.py run` replays when no live venue answers at start: a slice
of real market data shipped with the desk (see its manifest for the source and licence,
and cut.py for how it was cut)."""
from __future__ import annotations

import json
from pathlib import Path

DEMO_RECORDING = Path(__file__).resolve().parent / "eurusd-2014-05-02"


def demo_manifest() -> dict:
    return json.loads((DEMO_RECORDING / "manifest.json").read_text())


def is_demo(recording: str | Path | None) -> bool:
    """Whether `recording` names the shipped demo (however the path is written)."""
    if not recording:
        return False
    try:
        return Path(recording).resolve() == DEMO_RECORDING
    except OSError:
        return False
