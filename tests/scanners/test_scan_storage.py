"""Scans stored: the run, the top N opportunities, thresholds read from the database each time."""
from decimal import Decimal

import pytest
from django.core.management import call_command

from scanners import services, tasks
from trifecta_site.locks import exclusive
from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed
from scanners.models import ArbitrageSettings, BinarySettings, Opportunity, ScanRun
from tests.conftest import FIXTURES

from .market import MemoryMarket

pytestmark = pytest.mark.django_db
NOW = 1_000_000


def spread_market():
    market = MemoryMarket(NOW, fees={"a": "0", "b": "0", "c": "0"})
    market.set_quote("a", "BTC/USD", "99", "100", "1", "1")
    market.set_quote("b", "BTC/USD", "101", "102", "1", "1")  # buy a, sell b: +1 %
    market.set_quote("c", "BTC/USD", "102", "103", "1", "1")  # buy a, sell c: +2 %
    return market


def test_a_scan_stores_its_run_and_top_n(django_capture_on_commit_callbacks):
    ArbitrageSettings.objects.create(top_n=1)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run, stored = services.run_scan(kind="arbitrage", feed=spread_market())
    assert run.opportunities_found == 2 and run.opportunities_kept == 1  # a→b, a→c (b→c is 0 %)
    [best] = Opportunity.objects.all()
    assert best.figures["sell_venue"] == "c" and best.rank == 1 and best.status == "detected"
    assert best.net_pct == Decimal("2.000000") and best.route == "xv:BTC/USD:a>c"
    assert best.observed_at.timestamp() * 1000 == NOW
    assert len(callbacks) == 2  # the opportunity event and its decide task, both after commit


def test_the_same_opportunity_on_unchanged_market_data_is_stored_once(django_capture_on_commit_callbacks):
    market = spread_market()
    _, first = services.run_scan(kind="arbitrage", feed=market)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        again, repeated = services.run_scan(kind="arbitrage", feed=market)
    assert len(first) == 2 and repeated == [] and callbacks == []  # nothing announced or decided twice
    assert again.opportunities_found == 2 and again.skipped["unchanged_repeat"] == 2
    market.set_quote("c", "BTC/USD", "102.5", "103", "1", "1", ts=NOW)  # new prices on one route: a new opportunity
    _, changed = services.run_scan(kind="arbitrage", feed=market)
    assert changed[0].route == "xv:BTC/USD:a>c" and changed[0].rank == 1 and changed[0].net_pct == Decimal("2.500000")



def test_scan_runs_that_kept_nothing_are_inserted_together_in_order_before_one_that_kept_something():
    """A replay's empty scans wait to be inserted: at the next scan that stores an
    opportunity (before it, so the rows keep their order) and at the block's end."""
    market = spread_market()
    with services.scan_runs_inserted_together():
        _, first = services.run_scan(kind="arbitrage", feed=market, decide=False)
        services.run_scan(kind="arbitrage", feed=market, decide=False)  # a repeat: kept nothing
        services.run_scan(kind="forex", feed=market, decide=False)  # no forex here: kept nothing
        assert ScanRun.objects.count() == 1
        market.set_quote("c", "BTC/USD", "102.5", "103", "1", "1", ts=NOW)
        _, changed = services.run_scan(kind="arbitrage", feed=market, decide=False)
        assert ScanRun.objects.count() == 4 and changed
        services.run_scan(kind="binary", feed=market, decide=False)
        assert ScanRun.objects.count() == 4
    runs = list(ScanRun.objects.order_by("id"))
    assert [(r.kind, r.opportunities_kept) for r in runs] == [
        ("arbitrage", 2), ("arbitrage", 0), ("forex", 0), ("arbitrage", len(changed)), ("binary", 0)]
    assert runs[1].skipped["unchanged_repeat"] == 2
    assert changed[0].scan_run_id == runs[3].pk

def test_thresholds_changed_in_the_database_apply_to_the_next_scan():
    market = spread_market()
    services.run_scan(kind="arbitrage", feed=market)
    settings_row = ArbitrageSettings.get_solo()
    settings_row.min_net_pct = Decimal("1.5")
    settings_row.save()
    run, _ = services.run_scan(kind="arbitrage", feed=market)
    assert run.opportunities_found == 1


def test_binary_expiries_come_from_the_row():
    row = BinarySettings.get_solo()
    row.expiries = "60, 300"
    from scanners.binary import BinaryThresholds

    assert row.thresholds(BinaryThresholds).expiries == (60, 300)
    row.expiries = "soon"
    with pytest.raises(Exception):
        row.full_clean()


def test_an_overlapping_scan_is_skipped(settings):
    with exclusive("scan_arbitrage", ttl_s=30) as mine:
        assert mine
        tasks._scan("arbitrage")  # the predecessor still runs: nothing happens
    assert ScanRun.objects.count() == 0


def test_prune_keeps_recent_history():
    services.run_scan(kind="arbitrage", feed=spread_market())
    assert services.prune_history(older_than_days=30) == {"opportunities": 0, "scan_runs": 0}
    ScanRun.objects.update(started_at="2000-01-01T00:00:00Z")
    Opportunity.objects.update(detected_at="2000-01-01T00:00:00Z")
    pruned = services.prune_history(older_than_days=30)
    assert pruned["scan_runs"] == 1 and Opportunity.objects.count() == 0


def test_every_scanner_runs_against_a_replay_feed():
    reader = RecordingReader(FIXTURES / "recordings" / "two-venues")
    feed = ReplayFeed(reader, ReplayClock.stepped(1700000030000))
    for kind, seen in (("arbitrage", 4), ("forex", 0), ("binary", 4)):  # forex reads forex pairs only
        run, _ = services.run_scan(kind=kind, feed=feed)
        assert run.kind == kind and run.instruments_seen == seen and run.error == ""


def test_scan_command_prints_json_lines_and_writes_nothing(capsys):
    call_command("scan", "arbitrage", "--recording", str(FIXTURES / "recordings" / "mini"), "--at", "3500",
                 "--min-net-pct", "-5", "--max-quote-age", "10s", "--json")
    lines = capsys.readouterr().out.strip().splitlines()
    import json

    rows = [json.loads(line) for line in lines]
    assert rows and all(isinstance(r["net_pct"], str) and r["ts"] == 3500 and r["kind"] == "arbitrage" for r in rows)
    assert ScanRun.objects.count() == 0 and Opportunity.objects.count() == 0


def test_scan_command_rejects_bad_input():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="duration"):
        call_command("scan", "arbitrage", "--recording", str(FIXTURES / "recordings" / "mini"), "--every", "5 minutes")
    with pytest.raises(CommandError, match="does not apply"):
        call_command("scan", "forex", "--recording", str(FIXTURES / "recordings" / "mini"), "--at", "1", "--min-net-pct", "1")
    with pytest.raises(CommandError, match="manifest"):
        call_command("scan", "forex", "--recording", "/nonexistent", "--at", "1")


@pytest.mark.parametrize("kind", ["arbitrage", "binary"])
def test_skipping_times_without_fresh_data_changes_no_output(kind, capsys):
    """The command skips scan times with no market event inside the freshness window: exact."""
    import json

    from scanners.scanning import SCANNERS, scan_times

    recording = FIXTURES / "recordings" / "two-venues"
    loose = ["--min-net-pct", "-5"] if kind == "arbitrage" else []
    call_command("scan", kind, "--recording", str(recording), "--every", "500ms", *loose, "--json")
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    reader = RecordingReader(recording)
    feed = ReplayFeed(reader, ReplayClock.stepped(reader.start))
    scanner = SCANNERS[kind]
    thresholds = scanner.thresholds_with({"min_net_pct": Decimal("-5")} if kind == "arbitrage" else {})
    state = scanner.new_state()
    brute = []
    for ts in scan_times(reader.start, reader.end, 500).tolist():
        brute += [c.as_json() for c in scanner.scan(feed.at(ts), now=ts, thresholds=thresholds, state=state).candidates]
    assert printed == json.loads(json.dumps(brute))
    if kind == "arbitrage":
        assert printed  # the two venues' BTC/USDT and ETH/USDT routes at every fresh time


def test_a_scan_without_a_usable_feed_is_skipped_quietly(settings):
    from scanners.feeds import reset_current_feed

    settings.TRIFECTA_FEED, settings.TRIFECTA_RECORDING = "replay", ""
    reset_current_feed()
    try:
        assert services.run_configured_scan("arbitrage") is None
    finally:
        reset_current_feed()
    assert ScanRun.objects.count() == 0
