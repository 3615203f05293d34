import logging
import os
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles.storage import staticfiles_storage
from django.db.models import Count, Q
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from execution.models import Fill, Position, Trade
from execution.portfolio import current_portfolio
from scanners.feeds import desk_feed
from scanners.feeds.base import TIMEFRAME_MS

from .clock import ms_to_datetime
from .demo import is_demo
from .health import desk_health

logger = logging.getLogger(__name__)
PRICE_WINDOW_MS = 2 * 3_600_000  # the price chart shows the last two hours of market time
PRICE_GAP_MS = 5 * 60_000  # quotes older than this at the chart's end: the chart says there is a gap
PRICE_POINTS = 720  # at most this many points (quote mids are thinned to one a bucket)


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "down"])
    checked_at = serializers.DateTimeField()
    checks = serializers.DictField()


class HealthView(APIView):
    """Open to anonymous users on purpose: load balancers and operators probe it."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(responses={200: HealthSerializer, 503: HealthSerializer})
    def get(self, request):
        healthy, report = desk_health()
        return Response(report, status=200 if healthy else 503)


def data_source() -> dict:
    """Where this desk's market data comes from, in words an operator reads, and how to switch."""
    feed, recording = settings.TRIFECTA_FEED, settings.TRIFECTA_RECORDING
    note = os.environ.get("TRIFECTA_DATA_NOTE", "")
    speed = settings.TRIFECTA_REPLAY_SPEED
    if feed == "ccxt":
        return {"kind": "live", "label": "LIVE", "feed": feed, "speed": 1,
                "words": "Live public market data from ccxt venues" + (f" ({note})" if note else "") + ".",
                "switch": "To replay a recording instead: TRIFECTA_FEED=replay TRIFECTA_RECORDING=DIR make run."}
    if feed == "replay" and is_demo(recording):
        return {"kind": "demo", "label": "DEMO", "feed": feed, "speed": float(speed),
                "words": f"Demo data: real EUR/USD ticks of 2014-05-02 (OANDA, FXCM) replayed at {speed}× and looped"
                         + (f", because {note}" if note else "") + ".",
                "switch": "For live data: TRIFECTA_FEED=ccxt make run (needs internet). "
                          "For another recording: TRIFECTA_FEED=replay TRIFECTA_RECORDING=DIR make run."}
    if feed == "replay" and recording:
        return {"kind": "replay", "label": "REPLAY", "feed": feed, "speed": float(speed),
                "words": f"Replay of the recording {Path(recording).name} at {speed}× (looped).",
                "switch": "For live data (or the demo when offline): unset TRIFECTA_FEED and TRIFECTA_RECORDING, then make run."}
    if feed == "replay":
        return {"kind": "none", "label": "NO DATA", "feed": feed, "speed": 1,
                "words": "No market data: TRIFECTA_FEED=replay is set without TRIFECTA_RECORDING.",
                "switch": "Set TRIFECTA_RECORDING=DIR, or unset TRIFECTA_FEED and run make run for live data or the demo."}
    return {"kind": feed, "label": feed.upper(), "feed": feed, "speed": 1,
            "words": f"Market data from the {feed} feed (TRIFECTA_FEED={feed}).",
            "switch": "Unset TRIFECTA_FEED for live ccxt data (or the demo when offline)."}


@login_required
def dashboard(request):
    return render(request, "dashboard.html", {"source": data_source()})


def favicon(request):
    """Browsers ask for /favicon.ico whatever the page says."""
    return HttpResponseRedirect(staticfiles_storage.url("trifecta/favicon.ico"))


def _desk_feed():
    """The web process's read-only view of the market (replay: the recording on the shared
    clock; live: the scan worker's snapshot); None when there is none."""
    try:
        return desk_feed()
    except Exception as exc:  # no recording, no snapshot yet: the state says so, the page keeps working
        logger.debug("no market view for the dashboard: %s", exc)
        return None


def _outcomes() -> dict:
    """Closed trades per kind, ties and voids apart from wins and losses (a tie or a void is
    neither: the stake came back)."""

    portfolio = current_portfolio()
    binary = Position.objects.filter(trade__portfolio=portfolio, kind="binary", status=Position.CLOSED).values(
        "close_reason").annotate(n=Count("id"))
    out = {kind: {"wins": 0, "losses": 0, "ties": 0, "voids": 0} for kind in ("arbitrage", "forex", "binary")}
    for row in binary:
        key = {"win": "wins", "loss": "losses", "tie": "ties", "void": "voids"}.get(row["close_reason"])
        if key:
            out["binary"][key] += row["n"]
    others = Trade.objects.filter(portfolio=portfolio, status=Trade.CLOSED).exclude(kind="binary").values("kind").annotate(
        wins=Count("id", filter=Q(realized_pnl__gt=0)), losses=Count("id", filter=Q(realized_pnl__lt=0)),
        ties=Count("id", filter=Q(realized_pnl=0)))
    for row in others:
        if row["kind"] in out:
            out[row["kind"]].update(wins=row["wins"], losses=row["losses"], ties=row["ties"])
    return out


@login_required
@require_GET
def dashboard_state(request):
    """What the dashboard's header and empty states need beside the REST API: the data
    source, the market clock (simulated in a replay), outcomes per kind, the instruments."""
    feed = _desk_feed()
    market_ms, instruments = None, []
    if feed is not None:
        try:
            market_ms = feed.now()
            instruments = [{"venue": v, "symbol": s, "last_ms": _last_price_ms(feed, v, s)}
                           for v, s in sorted({(i.venue, i.symbol) for i in feed.instruments()})]
        except Exception as exc:
            logger.debug("market view unavailable: %s", exc)
    return JsonResponse({
        "source": data_source(),
        "clock": {"market_ms": market_ms, "speed": data_source()["speed"]},
        "outcomes": _outcomes(),
        "instruments": instruments,
    })


def _last_price_ms(feed, venue: str, symbol: str) -> int | None:
    """When the instrument last had a quote: the chart opens on one that is trading now."""
    quote = feed.quote(venue, symbol)
    return None if quote is None else quote.ts


def _series(feed, venue: str, symbol: str, now: int) -> tuple[list[dict], str]:
    """(points {time: epoch s, value: decimal string}, what they are) for the price chart."""
    instrument = next((i for i in feed.instruments() if i.venue == venue and i.symbol == symbol), None)
    if instrument is None:
        return [], ""
    if instrument.has_quotes:
        quotes = [q for q in feed.quote_history(venue, symbol, now - PRICE_WINDOW_MS) if q.bid is not None and q.ask is not None]
        if len(quotes) >= 2:
            bucket_s = max(1, PRICE_WINDOW_MS // 1000 // PRICE_POINTS)
            points: dict[int, Decimal] = {}
            for q in quotes:  # the last mid of each bucket
                points[q.ts // 1000 // bucket_s * bucket_s] = (q.bid + q.ask) / 2
            return [{"time": t, "value": str(v)} for t, v in sorted(points.items())], "mid of bid and ask"
    for timeframe in instrument.timeframes:
        bars = feed.bars(venue, symbol, timeframe, PRICE_POINTS)
        if bars:
            return [{"time": b.ts // 1000, "value": str(b.close)} for b in bars], f"{timeframe} closes"
    return [], ""


def _markers(venue: str, symbol: str, since_ms: int) -> list[dict]:
    """The desk's entries and exits on this instrument since `since_ms` (market time)."""
    markers = []
    for p in Position.objects.filter(venue=venue, symbol=symbol, opened_ts__gte=since_ms).order_by("opened_ts")[:200]:
        markers.append({"time": p.opened_ts // 1000, "kind": "entry", "side": p.direction, "price": str(p.entry_price),
                        "trade": p.trade_id, "text": f"{p.direction} #{p.trade_id}"})
        if p.closed_ts:
            pnl = p.realized_pnl if p.realized_pnl is not None else Decimal(0)
            markers.append({"time": p.closed_ts // 1000, "kind": "exit", "side": p.direction,
                            "price": str(p.exit_price) if p.exit_price is not None else None, "trade": p.trade_id,
                            "outcome": p.close_reason, "pnl": str(pnl),
                            "text": f"{p.close_reason or 'exit'} {pnl:+.2f}"})
    for f in Fill.objects.filter(venue=venue, symbol=symbol, filled_ts__gte=since_ms, trade__kind="arbitrage").order_by(
            "filled_ts")[:200]:
        markers.append({"time": f.filled_ts // 1000, "kind": "fill", "side": f.side.upper(),
                        "price": str(f.price) if f.price is not None else None, "trade": f.trade_id,
                        "text": f"{f.side} #{f.trade_id}"})
    return sorted(markers, key=lambda m: m["time"])


@login_required
@require_GET
def dashboard_prices(request):
    """The selected instrument's recent prices with the desk's entries and exits on them."""
    venue, symbol = request.GET.get("venue", ""), request.GET.get("symbol", "")
    if not venue or not symbol or len(venue) > 64 or len(symbol) > 64:
        return JsonResponse({"error": "give venue and symbol, e.g. ?venue=oanda&symbol=EUR/USD"}, status=400)
    feed = _desk_feed()
    if feed is None:
        return JsonResponse({"venue": venue, "symbol": symbol, "series": [], "markers": [], "what": "",
                             "empty": "no market data: the feed is not running"})
    try:
        now = feed.now()
        points, what = _series(feed, venue, symbol, now)
    except Exception as exc:
        logger.debug("prices unavailable: %s", exc)
        points, what = [], ""
    if not points:
        return JsonResponse({"venue": venue, "symbol": symbol, "series": [], "markers": [], "what": "",
                             "empty": f"no prices of {symbol} on {venue} in the feed yet"})
    since_ms = points[0]["time"] * 1000
    last_ms = points[-1]["time"] * 1000
    timeframe = what.split(" ")[0]  # "1h closes": a bar series' last point is its last closed bar's open
    allowed = 2 * TIMEFRAME_MS[timeframe] if timeframe in TIMEFRAME_MS else PRICE_GAP_MS
    gap = "" if now - last_ms <= allowed else (
        f"no price since {ms_to_datetime(last_ms):%H:%M:%S} UTC ({(now - last_ms) // 60_000} min of market time): a gap in the data")
    return JsonResponse({"venue": venue, "symbol": symbol, "series": points, "what": what, "gap": gap,
                         "markers": _markers(venue, symbol, since_ms), "empty": ""})
