"""Durations as operators type them: `500ms`, `60s`, `5m`, `1h`, `1d`."""
import re

UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
PATTERN = re.compile(r"\s*(\d+)\s*(ms|s|m|h|d)\s*")


def parse_duration(text: str) -> int:
    """Milliseconds in `text`; a unit is required so `5` is never ambiguous."""
    match = PATTERN.fullmatch(text or "")
    if not match:
        raise ValueError(f"{text!r} is not a duration: use a number and a unit, e.g. 500ms, 60s, 5m, 1h, 1d")
    return int(match.group(1)) * UNITS_MS[match.group(2)]
