"""Walk-forward split: where the split falls, and which side each trade, prediction and equity point counts on."""
from decimal import Decimal as D

import pytest

from sweeps.walk_forward import figures, split_ts


def test_the_split_is_the_share_of_the_window_s_market_time_rounded_down():
    assert split_ts(start=1_000, end=11_000, split=D("0.6")) == 7_000
    assert split_ts(start=0, end=999, split=D("0.5")) == 499
    for bad in (D(0), D(1), D("-0.1"), D("1.5")):
        with pytest.raises(ValueError, match="between 0 and 1"):
            split_ts(start=0, end=10, split=bad)


def trade(id, closed_at, pnl, *, kind="forex", status="closed", reason="take_profit", outcome=None):
    return {"id": id, "kind": kind, "status": status, "closed_at": closed_at, "realized_pnl": pnl,
            "close_reason": reason, "outcome": outcome}


def opportunity(ts, probability, *, kind="forex", trade=None, would=None):
    return {"kind": kind, "market_ts": ts, "probability": probability, "trade": trade, "would_realize": would}


REPORT = {
    "start_equity": "1000",
    "trades": [
        trade(1, 5_000, "30", reason="take_profit"),            # in-sample
        trade(2, 7_000, "-10", reason="stop_loss"),             # closes exactly at the split: in-sample
        trade(3, 7_001, "-50", reason="stop_loss"),             # out-of-sample
        trade(4, 9_000, "20", kind="binary", reason="win", outcome="win"),
        trade(5, None, "0", status="open"),                     # still open: no side
    ],
    "opportunities": [
        opportunity(4_000, "0.8", trade=1),                     # hit (take profit), in-sample
        opportunity(6_500, "0.6", trade=2),                     # miss, in-sample (made before the split)
        opportunity(6_900, "0.7", trade=3),                     # made in-sample, closed out-of-sample: in-sample
        opportunity(8_000, "0.9", kind="binary", trade=4),      # hit, out-of-sample
        opportunity(8_500, "0.5", kind="binary", would={"realized_pnl": "-1", "outcome": "loss"}),  # scored miss
        opportunity(8_600, "0.5", kind="binary", would={"realized_pnl": None, "outcome": "no_size"}),  # says nothing
        opportunity(8_700, None, kind="arbitrage"),
    ],
    "equity_curve": [{"ts": ts, "equity": eq} for ts, eq in [
        (1_000, "1000"), (5_000, "1030"), (7_000, "1020"), (7_001, "970"), (9_000, "990")]],
}


def test_each_side_counts_what_closed_or_was_predicted_on_it():
    parts = figures(REPORT, split_at=7_000)
    ins, out, whole = parts["in_sample"], parts["out_of_sample"], parts["whole"]
    assert (ins["trades"], ins["pnl"], ins["wins"], ins["losses"]) == (2, "20.0000000000", 1, 1)
    assert (out["trades"], out["pnl"], out["wins"], out["losses"]) == (2, "-30.0000000000", 1, 1)
    assert D(ins["pnl"]) + D(out["pnl"]) == D(whole["pnl"]) and whole["trades"] == 4
    # in-sample: (0.8-1)^2, (0.6-0)^2, (0.7-0)^2 ; out-of-sample: (0.9-1)^2, (0.5-0)^2
    assert (ins["predictions"], ins["brier"]) == (3, "0.2967")  # 0.89 / 3
    assert (out["predictions"], out["brier"]) == (2, "0.1300")
    assert whole["predictions"] == 5


def test_each_side_s_drawdown_is_from_the_equity_it_started_with():
    parts = figures(REPORT, split_at=7_000)
    # in-sample: peak 1030, low 1020 after it
    assert parts["in_sample"]["max_drawdown_pct"] == f"{(D(10) / 1030 * 100).quantize(D('0.0001'))}"
    # out-of-sample starts at 1020 (the last in-sample point): falls to 970
    assert parts["out_of_sample"]["max_drawdown_pct"] == f"{(D(50) / 1020 * 100).quantize(D('0.0001'))}"
    # over the whole window the peak 1030 is the reference
    assert parts["whole"]["max_drawdown_pct"] == f"{(D(60) / 1030 * 100).quantize(D('0.0001'))}"


def test_a_side_with_nothing_in_it_has_zero_figures_and_no_brier():
    parts = figures(REPORT, split_at=100_000)
    assert parts["out_of_sample"] == {"pnl": "0.0000000000", "trades": 0, "wins": 0,
                                      "losses": 0, "max_drawdown_pct": "0.0000", "brier": None, "predictions": 0}
