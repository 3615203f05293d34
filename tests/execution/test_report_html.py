"""report.html and its charts: written from any report, complete or empty, escaped, self-contained."""
import copy
import json
import re

from execution.report_html import write_html_report

REPORT = {
    "format": "trifecta-replay-report/1", "recording": {"name": "fx-test-2024", "start": 1700000000000, "end": 1700003600000},
    "complete": True, "simulated_to": 1700003600000, "start_equity": "100000.0000000000",
    "final_equity": "100012.5000000000", "realized_pnl": "12.5000000000", "unrealized_pnl": "0E-10", "cash": "100012.5",
    "max_drawdown_pct": "0.0100",
    "settings": {"limits": {"max_trades_per_day": 50}, "thresholds": {"binary": {"min_probability": "0.75"}}, "intervals_s": {"forex": 10}},
    "summary": {"opportunities": 3, "executed": 2, "skipped": 1, "trades": 2, "wins": 1, "losses": 1, "win_rate": "0.5000",
                "fees": "1.5", "expected_pnl": "20", "realized_pnl": "12.5", "scans": {"forex": 360}, "market_events": 900,
                "rejected_at_execution": 0},
    "per_kind": {"forex": {"trades": 2, "wins": 1, "win_rate": "0.5000", "realized_pnl": "12.5", "expected_pnl": "20", "fees": "1.5"}},
    "per_route": [{"kind": "forex", "route": "fx:b:<script>alert(1)</script>", "trades": 1, "wins": 1, "win_rate": "1.0000",
                   "realized_pnl": "1234.5000000000", "expected_pnl": "20", "fees": "1"},
                  {"kind": "forex", "route": "fx:b:EUR/USD", "trades": 1, "wins": 0, "win_rate": "0.0000",
                   "realized_pnl": "-17.5", "expected_pnl": "0", "fees": "0.5"}],
    "trades": [{"id": 1, "opportunity": 1, "kind": "forex", "symbol": "<script>alert(1)</script>", "venues": ["b"], "route": "r",
                "direction": "BUY", "status": "closed", "opened_at": 1700000060000, "closed_at": 1700000960000,
                "size_usd": "1000", "fees": "1", "expected_pnl": "20", "realized_pnl": "30", "close_reason": "take_profit",
                "edge": {}, "fills": []}],
    "days": [{"date": "2023-11-14", "trades": 2, "realized_pnl": "12.5", "realized_loss": "17.5", "limit_trips": {"TRADE_COUNT": 3}}],
    "opportunities": [], "decisions": [],
    "skipped": {"count": 1, "would_realize": "-4.2", "by_reason": {"TRADE_COUNT": {"count": 1, "would_realize": "-4.2"}}},
    "calibration": {"forex": {"count": 2, "brier": "0.2500", "bins": [{"from": "0.6", "to": "0.7", "count": 2, "predicted": "0.65", "realized": "0.5"}]},
                    "binary": {"count": 0, "brier": None, "bins": []}},
    "equity_curve": [{"ts": 1700000000000, "equity": "100000", "drawdown_pct": "0"},
                     {"ts": 1700000960000, "equity": "100012.5", "drawdown_pct": "0.01"}],
    "limit_trips": {"TRADE_COUNT": 3}, "data_quality": {"stale_quote": 4},
}
PNG = b"\x89PNG\r\n\x1a\n"


def test_the_page_and_its_charts_are_written_escaped_and_self_contained(tmp_path):
    written = write_html_report(copy.deepcopy(REPORT), tmp_path)
    assert {p.name for p in written} == {"report.html", "equity.png", "drawdown.png", "calibration.png", "pnl_by_route.png"}
    assert all(p.is_file() and p.parent == tmp_path for p in written)
    for chart in ("equity", "drawdown", "calibration", "pnl_by_route"):
        assert (tmp_path / f"{chart}.png").read_bytes().startswith(PNG)
    page = (tmp_path / "report.html").read_text()
    assert "fx-test-2024" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert page.count("data:image/png;base64,") == 4
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "TRADE_COUNT" in page and "saved 4.20" in page and "0.2500" in page
    assert "1,234.50" in page and "100,012.50" in page and "0000000000" not in page


def test_a_report_with_nothing_in_it_still_renders(tmp_path):
    empty = json.loads(json.dumps(REPORT))
    empty.update(per_kind={}, per_route=[], trades=[], days=[], equity_curve=[], data_quality={}, limit_trips={},
                 skipped={"count": 0, "would_realize": "0", "by_reason": {}}, complete=False,
                 calibration={"forex": {"count": 0, "brier": None, "bins": []}, "binary": {"count": 0, "brier": None, "bins": []}})
    written = write_html_report(empty, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "Partial report" in page and "no trades" in page
    assert page.count("data:image/png;base64,") == 4
    assert all(p.read_bytes().startswith(PNG) for p in written if p.suffix == ".png")


def test_a_single_equity_point_draws_no_curve_but_does_not_fail(tmp_path):
    one_point = copy.deepcopy(REPORT)
    one_point["equity_curve"] = one_point["equity_curve"][:1]
    written = write_html_report(one_point, tmp_path)
    assert (tmp_path / "drawdown.png").read_bytes().startswith(PNG) and len(written) == 5
