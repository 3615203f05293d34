"""Walk-forward on a real replay: the in-sample part of one replay over the whole window is what
a replay stopped at the split did (a replay never looks ahead), and its figures add up."""
from decimal import Decimal as D

import pytest
from django.db import transaction

from scanners.feeds.replay import RecordingReader
from sweeps.walk_forward import figures, split_ts
from tests.execution.synthetic import START, write_market
from tests.execution.test_replay import PERMISSIVE, replay_report
from trifecta_site.models import forget_settings

pytestmark = [pytest.mark.django_db, pytest.mark.replay_database]  # a replay runs on its own SQLite: the SQLite pass
SETTINGS = PERMISSIVE
FEW_FOREX_SCANS = {"forex": 86_400}  # arbitrage and binaries trade on both sides: a shorter replay


def closed_before(report: dict, ts: int) -> list[tuple]:
    return [(t["kind"], t["symbol"], t["opened_at"], t["closed_at"], t["realized_pnl"]) for t in report["trades"]
            if t["status"] == "closed" and t["closed_at"] < ts]


def test_the_in_sample_part_is_what_a_replay_stopped_at_the_split_did(tmp_path):
    market = write_market(tmp_path / "synthetic", minutes=30)
    end = RecordingReader(market).end
    split_at = split_ts(start=START, end=end, split=D("0.6"))  # the crypto span (forex bars start an hour earlier)
    with transaction.atomic():
        whole = replay_report(market, SETTINGS, start=START, intervals=FEW_FOREX_SCANS)
        transaction.set_rollback(True)
    forget_settings()
    stopped = replay_report(market, SETTINGS, start=START, end=split_at, intervals=FEW_FOREX_SCANS)

    assert closed_before(whole, split_at) == closed_before(stopped, split_at) != []
    parts = figures(whole, split_at=split_at)
    closed = [t for t in whole["trades"] if t["status"] == "closed"]
    in_sample = [t for t in closed if t["closed_at"] <= split_at]
    assert parts["in_sample"]["trades"] == len(in_sample) and parts["out_of_sample"]["trades"] == len(closed) - len(in_sample) > 0
    assert D(parts["in_sample"]["pnl"]) == sum(D(t["realized_pnl"]) for t in in_sample)
    assert D(parts["in_sample"]["pnl"]) + D(parts["out_of_sample"]["pnl"]) == D(whole["realized_pnl"])
