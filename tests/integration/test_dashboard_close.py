"""Closing a position from the dashboard, in Chromium, as an operator does: the first click
arms the button, the second closes, even though the positions table redraws in between (it
redraws at every monitor mark; the armed state once vanished with it, and no position could
be closed from the page)."""
import os
import shutil
import time
from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model

from execution.deciding import execute_opportunity
from execution.models import ManualClose, Position
from scanners.feeds import desk_feed, reset_current_feed
from tests.factories import opportunity

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]
START = 1_700_000_000_000
PASSWORD = "close-pw-for-tests-1"


def quoting_market(root):
    """EUR/USD at one broker, a quote every second for an hour (bid 1.10000 + n pips % 10)."""
    (root / "quotes" / "fx").mkdir(parents=True)
    (root / "manifest.json").write_text(
        '{"format": "trifecta-recording/1", "name": "close", "description": "one broker", "source": "tests",'
        f' "start": {START}, "end": {START + 3_600_000}, "venues": {{"fx": {{"asset_class": "forex", "taker_fee": "0"}}}}}}')
    rows = [f"{START + s * 1000},1.1{s % 10:04d},1.1{s % 10 + 2:04d},," for s in range(3601)]
    (root / "quotes" / "fx" / "EUR-USD.csv").write_text("ts,bid,ask,bid_size,ask_size\n" + "\n".join(rows) + "\n")


@pytest.fixture
def open_position(tmp_path, settings, monkeypatch):
    quoting_market(tmp_path / "market")
    settings.TRIFECTA_FEED, settings.TRIFECTA_RECORDING, settings.TRIFECTA_REPLAY_SPEED = "replay", str(tmp_path / "market"), 1
    monkeypatch.setenv("TRIFECTA_REPLAY_ANCHOR_MS", str(time.time_ns() // 1_000_000 - 1_800_000))  # half an hour in
    reset_current_feed()
    feed = desk_feed()
    now = feed.now()
    figures = {"symbol": "EUR/USD", "venue": "fx", "signal": "BUY", "confidence": "0.8", "entry": "1.1002",
               "stop_loss": "1.0950", "take_profit": "1.1100", "risk_reward": "2.0"}
    opp = opportunity("forex", figures, route="fx:fx:EUR/USD", direction="BUY", ts=now - 2000)
    trade = execute_opportunity(opportunity_id=opp.pk, feed=feed, size_usd=D("5000"), decided_ts=now - 2000)
    yield Position.objects.get(trade=trade, status=Position.OPEN)
    reset_current_feed()


def test_a_position_closes_from_the_dashboard_with_two_clicks_across_a_redraw(open_position, live_server):
    get_user_model().objects.create_superuser("operator", password=PASSWORD)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{live_server.url}/admin/login/?next=/")
            page.fill("#id_username", "operator")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            button = page.locator(f"#close-{open_position.pk}")
            button.wait_for(timeout=30_000)
            button.click()
            assert button.text_content() == "Confirm close"
            page.evaluate("(id) => { document.getElementById(id).dataset.before = 'redraw'; window.trifecta.refresh(['positions']); }",
                          f"close-{open_position.pk}")
            page.wait_for_function(  # redrawn: a new button element in its place
                "(id) => { const b = document.getElementById(id); return b && !b.dataset.before }",
                arg=f"close-{open_position.pk}", timeout=10_000)
            assert page.locator(f"#close-{open_position.pk}").text_content() == "Confirm close"
            page.locator(f"#close-{open_position.pk}").click()
            page.wait_for_selector("#positions-empty:not([hidden])", timeout=15_000)
        finally:
            browser.close()
    open_position.refresh_from_db()
    assert open_position.status == Position.CLOSED and open_position.close_reason == "manual"
    assert ManualClose.objects.get(position=open_position).reason == "closed from the dashboard"
