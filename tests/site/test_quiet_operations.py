"""A feed that goes down is one log line when it goes down and one when it comes back,
never a traceback per tick; the tasks that cannot run meanwhile say so once; feed rows
belong to the run that wrote them."""
import logging

import pytest
from django.core.cache import cache

from execution.tasks import monitor_positions
from scanners import services
from scanners.feeds import outages, reset_current_feed
from scanners.feeds.base import DOWN, OK, FeedStatus
from scanners.models import FeedState
from tests.conftest import FIXTURES

pytestmark = pytest.mark.django_db
RECORDING = FIXTURES / "recordings" / "desk-smoke"
TICKS = 12


@pytest.fixture(autouse=True)
def fresh(settings):
    cache.delete_many([outages._key(name) for name in ("monitor_positions", "arbitrage scan", "forex scan", "binary scan")])
    reset_current_feed()
    yield
    reset_current_feed()


def lines(caplog):
    return [r for r in caplog.records if r.levelno >= logging.INFO and not r.name.startswith(("celery", "django"))]


def test_a_feed_that_cannot_start_logs_one_line_not_a_traceback_per_tick_and_one_when_it_recovers(settings, caplog):
    settings.TRIFECTA_FEED, settings.TRIFECTA_RECORDING = "replay", ""
    caplog.set_level(logging.DEBUG)
    for _ in range(TICKS):  # what beat sends: poll every 5 s, scans every 5-10 s, monitor every 2 s
        services.poll_configured_feed()
        services.run_configured_scan("arbitrage")
        monitor_positions()
    said = lines(caplog)
    assert not [r for r in said if r.exc_info], "no traceback while the feed is down"
    assert [r.getMessage() for r in said if r.levelno >= logging.WARNING] == [
        "feed replay: * is down: FeedError: TRIFECTA_FEED=replay needs TRIFECTA_RECORDING, the path of a recording "
        "directory (the demo: trifecta_site/demo/eurusd-2014-05-02); or unset TRIFECTA_FEED and start with "
        "`manage.py run`, which uses live data or the demo",
        "arbitrage scan cannot run: TRIFECTA_FEED=replay needs TRIFECTA_RECORDING, the path of a recording directory "
        "(the demo: trifecta_site/demo/eurusd-2014-05-02); or unset TRIFECTA_FEED and start with `manage.py run`, "
        "which uses live data or the demo (said once; a line follows when it runs again)",
        "monitor_positions cannot run: TRIFECTA_FEED=replay needs TRIFECTA_RECORDING, the path of a recording directory "
        "(the demo: trifecta_site/demo/eurusd-2014-05-02); or unset TRIFECTA_FEED and start with `manage.py run`, "
        "which uses live data or the demo (said once; a line follows when it runs again)",
    ]
    assert FeedState.objects.get().state == DOWN

    caplog.clear()
    settings.TRIFECTA_RECORDING = str(RECORDING)
    reset_current_feed()
    for _ in range(TICKS):
        services.poll_configured_feed()
        services.run_configured_scan("arbitrage")
        monitor_positions()
    said = [r.getMessage() for r in lines(caplog) if r.name in ("scanners.services", "trifecta.outages")]
    assert said == ["arbitrage scan runs again", "monitor_positions runs again"], said
    assert set(FeedState.objects.values_list("venue", "state")) == {("binance", OK), ("kraken", OK)}  # the "*" row is gone


def test_a_venue_that_goes_down_and_comes_back_is_two_lines(caplog):
    caplog.set_level(logging.INFO, logger="scanners.services")
    up = [FeedStatus(venue="kraken", state=OK)]
    down = [FeedStatus(venue="kraken", state=DOWN, last_error="TimeoutError: no answer")]
    for statuses in [up, down, down, down, down, up, up]:
        services.record_feed_status(feed_name="ccxt", statuses=statuses)
    assert [r.getMessage() for r in caplog.records if r.name == "scanners.services"] == [
        "feed ccxt: kraken is down: TimeoutError: no answer", "feed ccxt: kraken is ok again"]


def test_feed_rows_belong_to_the_run_that_wrote_them(client, settings):
    services.record_feed_status(feed_name="replay", statuses=[FeedStatus(venue="fxcm", state=OK), FeedStatus(venue="oanda", state=OK)])
    services.record_feed_status(feed_name="replay", statuses=[FeedStatus(venue="*", state=DOWN, last_error="old error")])
    assert list(FeedState.objects.values_list("feed", "venue")) == [("replay", "*")]
    # A restart on another recording, then on another feed: only the current feed's venues remain.
    services.record_feed_status(feed_name="replay", statuses=[FeedStatus(venue="binance", state=OK), FeedStatus(venue="kraken", state=OK)])
    assert set(FeedState.objects.values_list("venue", flat=True)) == {"binance", "kraken"}
    services.record_feed_status(feed_name="ccxt", statuses=[FeedStatus(venue="kraken", state=OK)])
    assert list(FeedState.objects.values_list("feed", "venue")) == [("ccxt", "kraken")]
    settings.TRIFECTA_FEED = "ccxt"
    feeds = client.get("/api/health/").json()["checks"]["feeds"]
    assert feeds["feed"] == "ccxt" and set(feeds["venues"]) == {"kraken"}
