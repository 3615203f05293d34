"""The dashboard in a real browser (Playwright driving Debian's Chromium) against real
web and worker processes: log in, see an opportunity arrive live from the worker, switch
to auto-execute and see a trade, trip the kill switch and see execution stop.

README's screenshots come from test_dashboard_demo.py."""
import os
import shutil
import time
from decimal import Decimal as D

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connections

from decisions.models import Controls, Pause, RiskLimits
from execution.models import ExecutionSettings, Trade
from scanners.models import ArbitrageSettings
from scanners.tasks import poll_feeds, scan_arbitrage
from tests.waiting import broker_holds_none_of, wait_for

from . import processes

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.integration, pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


def eager_desk():
    """Thresholds that the hand-written desk-smoke market passes, limits out of the way."""
    ArbitrageSettings.objects.update_or_create(pk=1, defaults={
        "min_net_pct": D("-5"), "max_risk_score": D("100"), "auto_min_net_pct": D("-5"),
        "auto_min_profit_usd": D("-1000"), "auto_max_risk": D("100"), "top_n": 1})
    RiskLimits.objects.update_or_create(pk=1, defaults={"max_trades_per_day": 1000, "max_daily_loss": D("100000"),
                                                        "max_consecutive_losses": 1000})
    ExecutionSettings.objects.update_or_create(pk=1, defaults={"realism": "optimistic"})
    Controls.objects.update_or_create(pk=1, defaults={"auto_execute": False, "kill_switch": False})


def scan_until(page, predicate, what: str, timeout_s: float = 45):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        scan_arbitrage.delay()
        try:
            page.wait_for_function("() => " + predicate, timeout=2500)
            return
        except playwright.TimeoutError:
            continue
    raise AssertionError(f"the dashboard never showed {what}")


def rows(table: str) -> str:
    return f"document.querySelectorAll('#{table} tbody tr').length"


def test_an_operator_watches_and_steers_the_desk(desk, monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread; the ORM calls
    # below are plain blocking calls of the test, not async code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    eager_desk()
    operator = get_user_model().objects.create_user("operator", password="pw-for-tests-1", is_staff=True)
    operator.user_permissions.add(*Permission.objects.filter(codename__in=["change_controls", "add_pause", "delete_pause"],
                                                             content_type__app_label="decisions"))
    poll_feeds.delay()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(desk["url"] + "/admin/login/?next=/")
        page.fill("#id_username", "operator")
        page.fill("#id_password", "pw-for-tests-1")
        page.click("input[type=submit]")
        page.wait_for_function("() => window.trifecta && window.trifecta.stream === 'connected'", timeout=20_000)
        page.wait_for_function("() => document.querySelector('#mode').dataset.mode !== ''")
        assert page.text_content("#mode").strip() == "DISPLAY ONLY"

        scan_until(page, f"{rows('opportunities')} > 0", "an opportunity")
        page.click("#opportunities tbody tr")
        page.wait_for_selector("#trail li")
        scan_until(page, "document.querySelector('#trail').textContent.includes('DISPLAY_ONLY')", "the decision trail")
        assert Trade.objects.count() == 0

        page.click("#toggle-auto")
        page.wait_for_function("() => document.querySelector('#mode').dataset.mode === 'AUTO-EXECUTE'")
        scan_until(page, f"{rows('trades')} > 0", "a trade")
        assert Trade.objects.exists()

        page.click("#kill-switch")
        page.wait_for_function("() => document.querySelector('#mode').dataset.mode === 'HALTED'")
        processes.wait_for_idle_queues(settings.REDIS_URL)  # what was under way before the halt is done
        halted_at = Trade.objects.count()
        for _ in range(3):
            scan = scan_arbitrage.delay().id
            wait_for(lambda: broker_holds_none_of(settings.REDIS_URL, {scan}, queue="scan"), 30, "a scan while halted",
                     desk["logs"] / "worker.log")
        processes.wait_for_idle_queues(settings.REDIS_URL)  # and the decisions those scans queued
        assert Trade.objects.count() == halted_at
        assert Controls.get_solo().kill_switch is True

        page.fill("#pause-form input[name=target]", "btc/usdt")  # pause a pair, see it listed, lift it (two clicks)
        page.fill("#pause-form input[name=reason]", "browser test")
        page.click("#pause-form button[type=submit]")
        page.wait_for_function(f"() => {rows('pauses')} === 1 && document.querySelector('#pauses tbody').textContent.includes('BTC/USDT')")
        pause = Pause.objects.get()
        page.click(f"#lift-{pause.pk}")
        page.click(f"#lift-{pause.pk}")
        page.wait_for_function(f"() => {rows('pauses')} === 0")
        pause.refresh_from_db()
        assert (pause.created_by, pause.lifted_by, pause.reason) == (operator, operator, "browser test")

        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
        phone.context.add_cookies(page.context.cookies())
        phone.goto(desk["url"] + "/")
        phone.wait_for_function("() => window.trifecta && window.trifecta.stream === 'connected'", timeout=20_000)
        phone.wait_for_function(f"() => {rows('opportunities')} > 0 && document.querySelector('#mode').dataset.mode === 'HALTED'")
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "the page scrolls sideways on a phone"
        browser.close()
        connections.close_all()  # Playwright runs this body in a greenlet: its own database connection
