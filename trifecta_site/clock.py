"""Market time: epoch milliseconds as the feeds stamp prices, and aware datetimes as the database keeps them."""
from __future__ import annotations

from datetime import datetime, timezone


def ms_to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
