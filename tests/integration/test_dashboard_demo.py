"""The dashboard of a desk started as a new user starts it (`manage.py run`, nothing set,
no venue reachable: the demo), in Chromium at 1280x800 and at a phone's width: the charts
have axes with values and show values on hover, every column is visible, the empty states
say why and what to do, and rows arrive without a reload.

TRIFECTA_SCREENSHOTS=docs refreshes the screenshots README shows (docs/dashboard.png,
docs/dashboard-phone.png) from this run."""
import os
import re
import shutil
import socket
import time

import pytest
from django.db import connection

from trifecta_site import embedded

from . import processes
from .test_run_command import RunningDesk, bare_env, stop_desk

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]
DOCS = processes.ROOT / "docs"
PASSWORD = "demo-pw-for-tests-1"
TABLES = ("opportunities", "positions", "trades", "feeds", "scans")


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_desk(tmp_path_factory):
    if connection.vendor != "sqlite":
        pytest.skip("the embedded default is exercised in the SQLite pass")
    port, dead = embedded.free_port(), dead_port()
    env = bare_env(TRIFECTA_VAR_DIR=str(tmp_path_factory.mktemp("demo") / "var"), DJANGO_SUPERUSER_PASSWORD=PASSWORD,
                   CCXT_URLS=f"binance=http://127.0.0.1:{dead}/b,kraken=http://127.0.0.1:{dead}/k")  # no venue answers
    desk = RunningDesk(env, port)
    try:
        desk.wait_for(r"Log in as 'admin'", 120)
        assert "Data: DEMO" in desk.output
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_desk(desk)


def hidden_columns(page, table: str) -> list[str]:
    """Headers (desktop) or cells (phone cards) of `table` cut off by its container or the window."""
    return page.evaluate("""(id) => {
        const table = document.getElementById(id), box = table.parentElement.getBoundingClientRect();
        const right = Math.min(box.right, window.innerWidth) + 1;
        const head = table.tHead.getBoundingClientRect().height > 0;
        const cells = head ? [...table.tHead.rows[0].cells] : [...(table.tBodies[0].rows[0] || {cells: []}).cells];
        return cells.filter((c) => { const r = c.getBoundingClientRect(); return r.width <= 0 || r.right > right || r.left < box.left - 1; })
                    .map((c) => c.textContent || c.dataset.label);
    }""", table)


def axes(page, chart: str) -> dict:
    return page.evaluate("""(name) => {
        const chart = window.trifecta.charts[name];
        const range = chart.timeScale().getVisibleRange();
        return {price_axis: chart.priceScale('right').width(), time_axis: chart.timeScale().height(), range: range};
    }""", chart)


def hover(page, element: str, legend: str) -> str:
    """Move the mouse across the chart until its legend shows a value (a chart of few points has gaps)."""
    page.locator(element).scroll_into_view_if_needed()
    box = page.locator(element).bounding_box()
    text = ""
    for step in range(1, 40):
        page.mouse.move(box["x"] + box["width"] * (1 - step / 40), box["y"] + box["height"] * 0.5)
        text = page.text_content(legend)
        if "UTC" in text:
            return text
    return text


def test_the_demo_dashboard_at_desktop_and_phone_width(demo_desk):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(demo_desk + "/admin/login/?next=/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_function("() => window.trifecta && window.trifecta.stream === 'connected'", timeout=30_000)
        page.evaluate("window.notReloaded = true")

        # Which data, in words, how to switch, and one market clock: the replay's simulated time.
        page.wait_for_selector("#badge[data-state=ok]", timeout=60_000)
        assert page.text_content("#badge").startswith("DEMO")
        assert "Demo data: real EUR/USD ticks of 2014-05-02" in page.text_content("#source-words")
        assert "TRIFECTA_FEED=ccxt" in page.text_content("#source-switch")
        # the clock comes with the state, which a busy machine may answer after the feeds
        page.wait_for_function("() => document.getElementById('clock').textContent.includes('UTC')", timeout=60_000)
        assert re.fullmatch(r"2014-05-02 \d\d:\d\d:\d\d UTC \(demo · ×\d+(\.\d+)?\)", page.text_content("#clock")), page.text_content("#clock")

        # Empty states say why and what to do.
        page.wait_for_selector("#trades-empty:not([hidden])")
        assert "Display only" in page.text_content("#trades-empty") and "auto-execute" in page.text_content("#trades-empty")
        assert "Display only" in page.text_content("#positions-empty")

        # Opportunities arrive from the stream, no reload; each kind shows its own figures.
        page.wait_for_function("() => document.querySelectorAll('#opportunities tbody tr').length > 0", timeout=120_000)
        page.wait_for_selector("#opportunities-empty", state="hidden")
        kinds = page.eval_on_selector_all("#opportunities tbody tr", "rows => rows.map(r => [r.cells[1].textContent, r.cells[7].textContent])")
        for kind, figure in kinds:
            # binary: a probability; forex: a probability where the desk has one, else its confidence, labelled so
            assert figure.startswith(("p ", "conf. ") if kind == "forex" else "p ") if kind != "arbitrage" else True, kinds
        for table in TABLES:
            assert hidden_columns(page, table) == [], table

        # Charts with time and value axes, and values on hover.
        page.select_option("#instrument", "fxcm|EUR/USD")
        page.wait_for_function("() => window.trifecta.prices && window.trifecta.prices.series.length > 10", timeout=30_000)
        page.wait_for_function("() => window.trifecta.portfolio && window.trifecta.portfolio.equity_curve.length > 0", timeout=60_000)
        for chart in ("price", "equity", "drawdown"):
            found = axes(page, chart)
            assert found["price_axis"] > 30 and found["time_axis"] > 10 and found["range"], (chart, found)
        assert re.search(r"price 1\.3\d{4}", hover(page, "#price-chart", "#price-legend"))
        assert re.search(r"equity \$\d{2,3},\d{3}\.\d\d", hover(page, "#equity-chart", "#equity-legend"))
        assert page.evaluate("window.trifecta.charts.startLine.options().price") == page.evaluate("window.trifecta.startValue") > 0

        if os.environ.get("TRIFECTA_SCREENSHOTS") == "docs":  # a fuller page for README
            try:
                page.wait_for_function("() => document.querySelectorAll('#opportunities tbody tr').length >= 4", timeout=60_000)
            except playwright.TimeoutError:
                pass
            page.mouse.move(0, 0)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)

        # Auto-execute on from the header: the mode and the empty states follow without a reload.
        page.click("#toggle-auto")
        page.wait_for_function("() => document.querySelector('#mode').dataset.mode === 'AUTO-EXECUTE'")
        page.wait_for_function("() => document.querySelector('#trades tbody tr') || "
                               "document.querySelector('#trades-empty').textContent.includes('auto-execute is on')", timeout=20_000)
        assert page.evaluate("window.notReloaded") is True
        for table in TABLES:
            assert hidden_columns(page, table) == [], table

        # A phone: no sideways scrolling, every row a card with every column, charts with axes.
        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
        phone.context.add_cookies(page.context.cookies())
        phone.goto(demo_desk + "/")
        phone.wait_for_function("() => window.trifecta && window.trifecta.stream === 'connected'", timeout=30_000)
        phone.wait_for_function("() => document.querySelector('#opportunities tbody tr') && document.querySelector('#scans tbody tr')",
                                timeout=30_000)
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "the page scrolls sideways on a phone"
        for table in ("opportunities", "scans"):
            assert hidden_columns(phone, table) == [], table
            labels = phone.eval_on_selector(f"#{table} tbody tr", "r => [...r.cells].map(c => getComputedStyle(c, '::before').content)")
            assert all(label not in ("none", '""') for label in labels), labels
        phone.wait_for_function("() => window.trifecta.portfolio && window.trifecta.portfolio.equity_curve.length > 0", timeout=30_000)
        for chart in ("price", "equity"):
            found = axes(phone, chart)
            assert found["price_axis"] > 30 and found["time_axis"] > 10, (chart, found)
        if os.environ.get("TRIFECTA_SCREENSHOTS") == "docs":
            phone.screenshot(path=str(DOCS / "dashboard-phone.png"), full_page=True)
        browser.close()
    assert not [e for e in errors if "Content Security Policy" in e or "TypeError" in e], errors
