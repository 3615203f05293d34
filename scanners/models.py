from decimal import Decimal

from django.db import models
from django.db.models.signals import post_delete, post_save

from trifecta_site.models import SingletonSettings, configuration_changed


class FeedState(models.Model):
    """Status of one venue of one feed, as the scan worker last saw it.

    Written by the `poll_feeds` task; read by the health endpoint and the API, so the
    desk exposes which venues are ok, degraded or down and why.
    """

    feed = models.CharField(max_length=16)
    venue = models.CharField(max_length=64)
    state = models.CharField(max_length=16)
    detail = models.CharField(max_length=500, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    error_at = models.DateTimeField(null=True, blank=True)
    last_ok_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name = "feed status"
        verbose_name_plural = "feed statuses"
        constraints = [models.UniqueConstraint(fields=["feed", "venue"], name="one_state_per_feed_venue")]
        ordering = ["feed", "venue"]

    def __str__(self):
        return f"{self.feed}:{self.venue} {self.state}"


class ScanRun(models.Model):
    """One pass of one scanner: what it saw, what it found, what it skipped and why."""

    kind = models.CharField(max_length=16, db_index=True)
    started_at = models.DateTimeField(db_index=True)
    market_ts = models.BigIntegerField(help_text="the feed clock the scan ran at, epoch ms")
    duration_ms = models.DecimalField(max_digits=12, decimal_places=3)
    instruments_seen = models.PositiveIntegerField(default=0)
    opportunities_found = models.PositiveIntegerField(default=0, help_text="at or above the thresholds")
    opportunities_kept = models.PositiveIntegerField(default=0, help_text="stored: the top N of this scan")
    skipped = models.JSONField(default=dict, blank=True, help_text="reason -> count")
    feed_status = models.JSONField(default=dict, blank=True, help_text="venue -> state at scan time")
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        verbose_name = "scan run"
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["kind", "-started_at"], name="scanrun_kind_recent"),
                   models.Index(fields=["-started_at", "-id"], name="scanrun_recent_list")]

    def __str__(self):
        return f"{self.kind} scan at {self.started_at:%Y-%m-%d %H:%M:%S}"


class Opportunity(models.Model):
    """What a scanner found and kept, with the figures that justify it.

    `figures` is the scan contract's line (decimal strings); the columns beside it are
    the figures the dashboard, API and pipeline filter and sort on.
    """

    ARBITRAGE, FOREX, BINARY = "arbitrage", "forex", "binary"
    KINDS = [(ARBITRAGE, "arbitrage"), (FOREX, "forex"), (BINARY, "binary")]

    DETECTED, DECIDED, EXECUTED, REJECTED, EXPIRED = "detected", "decided", "executed", "rejected", "expired"
    STATUSES = [(s, s) for s in (DETECTED, DECIDED, EXECUTED, REJECTED, EXPIRED)]

    kind = models.CharField(max_length=16, choices=KINDS)
    type = models.CharField(max_length=16, blank=True, help_text="cross_venue or triangular for arbitrage")
    symbol = models.CharField(max_length=200)
    venues = models.JSONField(default=list)
    direction = models.CharField(max_length=16, blank=True, help_text="BUY/SELL, CALL/PUT, or blank for arbitrage")
    route = models.CharField(max_length=300, help_text="what makes two opportunities the same exposure")
    risk_score = models.DecimalField(max_digits=7, decimal_places=2)
    net_pct = models.DecimalField(max_digits=20, decimal_places=8, null=True, blank=True)
    expected_profit = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    expected_profit_usd = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    confidence = models.DecimalField(max_digits=7, decimal_places=6, null=True, blank=True)
    probability = models.DecimalField(max_digits=7, decimal_places=6, null=True, blank=True)
    figures = models.JSONField(default=dict)
    rank = models.PositiveSmallIntegerField(help_text="1 = best of its scan")
    observed_at = models.DateTimeField(help_text="when the oldest market value behind it was observed")
    market_ts = models.BigIntegerField(help_text="the feed clock at detection, epoch ms")
    detected_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=STATUSES, default=DETECTED)
    scan_run = models.ForeignKey(ScanRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="opportunities")

    class Meta:
        ordering = ["-detected_at", "rank"]
        verbose_name = "opportunity"
        verbose_name_plural = "opportunities"
        indexes = [
            models.Index(fields=["-detected_at", "rank", "-id"], name="opp_recent_list"),
            models.Index(fields=["kind", "-detected_at"], name="opp_kind_recent"),
            models.Index(fields=["status", "-detected_at"], name="opp_status_recent"),
            models.Index(fields=["symbol", "-detected_at"], name="opp_symbol_recent"),
        ]

    def __str__(self):
        return f"{self.kind} {self.symbol} {' → '.join(self.venues)} ({self.status})"

    def legs(self) -> list[tuple[str, str]]:
        """The (venue, symbol) markets a trade of this opportunity fills on, in order."""
        f = self.figures
        if f.get("type") == "triangular":
            return [(f["venue"], leg["symbol"]) for leg in f["path"]]
        if "buy_venue" in f:
            return [(f["buy_venue"], f["symbol"]), (f["sell_venue"], f["symbol"])]
        return [(f["venue"], f["symbol"])]


def _pct(**kwargs):
    from django.core.validators import MaxValueValidator, MinValueValidator

    return models.DecimalField(
        max_digits=9, decimal_places=4, validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))], **kwargs
    )


def _fraction(**kwargs):
    from django.core.validators import MaxValueValidator, MinValueValidator

    return models.DecimalField(
        max_digits=7, decimal_places=4, validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))], **kwargs
    )


def _at_least_zero():
    """A cap, a minimum profit or a risk/reward is never negative."""
    from django.core.validators import MinValueValidator

    return MinValueValidator(Decimal("0"))


def _at_least(minimum: Decimal):
    from django.core.validators import MinValueValidator

    return MinValueValidator(minimum)


def _positive_int(default, **kwargs):
    from django.core.validators import MinValueValidator

    return models.PositiveIntegerField(default=default, validators=[MinValueValidator(1)], **kwargs)


class ArbitrageSettings(SingletonSettings):
    min_net_pct = _pct(default=Decimal("0.5"), help_text="keep opportunities at or above this net profit, percent")
    max_risk_score = _pct(default=Decimal("75"), help_text="drop opportunities above this risk score (0-100)")
    top_n = _positive_int(3, help_text="opportunities stored per scan (count)")
    max_quote_age_ms = _positive_int(5000, help_text="skip quotes older than this at scan time, ms")
    notional_cap_usd = models.DecimalField(max_digits=18, decimal_places=2, default=Decimal("10000"), validators=[_at_least_zero()], help_text="size cap where the venue gives no sizes, USD")
    rebalance = models.BooleanField(default=False, help_text="on = net profit includes the share of moving inventory back (withdrawal fees); off = it does not")
    auto_min_net_pct = _pct(default=Decimal("0.5"), help_text="auto-execute only above this net profit, percent")
    auto_min_profit_usd = models.DecimalField(max_digits=18, decimal_places=2, default=Decimal("50"), validators=[_at_least_zero()], help_text="auto-execute only above this expected profit, USD")
    auto_max_risk = _pct(default=Decimal("30"), help_text="auto-execute only below this risk score (0-100)")

    class Meta:
        verbose_name = verbose_name_plural = "arbitrage thresholds"


class ForexSettings(SingletonSettings):
    timeframe = models.CharField(max_length=4, default="15m", choices=[(t, t) for t in ("1m", "5m", "15m", "1h", "4h", "1d")],
                                 help_text="bar length the signals, their ATR and their freshness are computed on; built from "
                                           "finer bars where a pair has only those (15m: the shortest on which ATR stops clear "
                                           "three spreads on the shared minute recordings)")
    min_confidence = _fraction(default=Decimal("0.60"), help_text="keep signals at or above this confidence, 0-1 (not a probability)")
    min_risk_reward = models.DecimalField(max_digits=7, decimal_places=3, default=Decimal("1.5"), validators=[_at_least_zero()],
                                          help_text="keep signals whose target is at least this many times the stop distance (ratio)")
    top_n = _positive_int(2, help_text="signals stored per scan (count)")
    auto_min_confidence = _fraction(default=Decimal("0.70"), help_text="auto-execute only at or above this confidence, 0-1")
    auto_min_risk_reward = models.DecimalField(max_digits=7, decimal_places=3, default=Decimal("2.0"), validators=[_at_least_zero()],
                                               help_text="auto-execute only at or above this risk/reward (ratio)")
    stop_atr_multiple = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal("1.5"), validators=[_at_least(Decimal("0.1"))],
        help_text="stop-loss distance from the exit-side price, in ATRs (average true ranges) of the signal's timeframe")
    target_atr_multiple = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal("4"), validators=[_at_least(Decimal("0.1"))],
        help_text="take-profit distance from the exit-side price, in ATRs of the signal's timeframe")
    min_stop_spreads = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal("3"), validators=[_at_least(Decimal("1"))],
        help_text="minimum stop-loss distance from the entry, in spreads (ask − bid at the signal); a nearer ATR stop is moved out to it")
    bar_only_spread_pips = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal("2"), validators=[_at_least(Decimal("0.01"))],
        help_text="spread assumed where a pair has bid bars but no quote, in pips (0.0001; 0.01 for JPY-quoted pairs); never zero")

    class Meta:
        verbose_name = verbose_name_plural = "forex thresholds"


class BinarySettings(SingletonSettings):
    expiries = models.CharField(max_length=100, default="60,120,300", help_text="expiries in seconds, comma-separated")
    min_probability = _fraction(default=Decimal("0.75"), help_text="keep options at or above this calibrated probability, 0-1")
    top_n = _positive_int(1, help_text="options stored per scan (count)")
    auto_expiry_s = _positive_int(60, help_text="auto-execute only options of this expiry, seconds")
    auto_min_probability = _fraction(default=Decimal("0.75"), help_text="auto-execute only at or above this probability, 0-1")
    default_payout = _fraction(default=Decimal("0.85"), help_text="payout per unit stake where no per-underlying payout is set, 0-1 (0.85 = 85 %)")

    class Meta:
        verbose_name = verbose_name_plural = "binary thresholds"

    def clean(self):
        from django.core.exceptions import ValidationError

        try:
            expiries = self.expiry_seconds()
        except ValueError:
            raise ValidationError({"expiries": "whole seconds, comma-separated, e.g. 60,120,300"})
        if not expiries or min(expiries) <= 0:
            raise ValidationError({"expiries": "at least one positive expiry"})

    def expiry_seconds(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.expiries.split(",") if x.strip())

    def threshold_value(self, name: str):
        return self.expiry_seconds() if name == "expiries" else getattr(self, name)


def default_venues() -> str:
    from django.conf import settings

    return ",".join(settings.TRIFECTA_VENUES)


def default_stream_venues() -> str:
    from django.conf import settings

    return ",".join(settings.TRIFECTA_STREAM_VENUES)


def default_symbols() -> str:
    from django.conf import settings

    return ",".join(settings.TRIFECTA_SYMBOLS)


def default_mt5_symbols() -> str:
    from django.conf import settings

    return ",".join(settings.MT5_SYMBOLS)


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


class FeedSettings(SingletonSettings):
    """What the live feeds poll. First values from the environment (TRIFECTA_VENUES,
    TRIFECTA_SYMBOLS, MT5_SYMBOLS); a change applies at the scan worker's next poll."""

    venues = models.CharField(max_length=500, default=default_venues,
                              help_text="ccxt exchange ids, comma-separated, e.g. binance,kraken")
    symbols = models.CharField(max_length=1000, default=default_symbols,
                               help_text="unified symbols, comma-separated, e.g. BTC/USDT,ETH/USDT")
    mt5_symbols = models.CharField(max_length=500, default=default_mt5_symbols,
                                   help_text="MetaTrader 5 names as in Market Watch, comma-separated")
    stream_venues = models.CharField(
        max_length=500, default=default_stream_venues, blank=True,
        help_text="venues followed by WebSocket where ccxt streams them (REST polling otherwise, and while a "
                  "stream is down), comma-separated; * for every venue, empty for none")

    class Meta:
        verbose_name = verbose_name_plural = "feed settings"

    def clean(self):
        import re

        from django.core.exceptions import ValidationError

        errors = {}
        venues = self.venue_list()
        if not venues:
            errors["venues"] = "at least one venue"
        else:
            import ccxt  # only here, to know the venue ids: the web process never polls

            unknown = [venue for venue in venues if venue not in ccxt.exchanges]
            if unknown:
                errors["venues"] = f"unknown venue {', '.join(unknown)}: use ccxt exchange ids such as binance, kraken"
        bad = [symbol for symbol in self.symbol_list() if not re.fullmatch(r"[A-Z0-9]+/[A-Z0-9]+(:[A-Z0-9]+)?", symbol)]
        if bad or not self.symbol_list():
            errors["symbols"] = f"not a unified symbol: {', '.join(bad)} (write BASE/QUOTE, e.g. BTC/USDT)" if bad else "at least one symbol"
        unknown = [venue for venue in self.stream_venue_list() if venue != "*" and venue not in venues]
        if unknown:
            errors["stream_venues"] = f"not among the venues: {', '.join(unknown)}"
        bad = [symbol for symbol in self.mt5_symbol_list() if not re.fullmatch(r"[A-Za-z0-9._#-]+", symbol)]
        if bad:
            errors["mt5_symbols"] = f"not a MetaTrader symbol name: {', '.join(bad)}"
        if errors:
            raise ValidationError(errors)

    def venue_list(self) -> list[str]:
        return _items(self.venues)

    def symbol_list(self) -> list[str]:
        return _items(self.symbols)

    def mt5_symbol_list(self) -> list[str]:
        return _items(self.mt5_symbols)

    def stream_venue_list(self) -> list[str]:
        return _items(self.stream_venues)

    def universe(self, kind: str) -> tuple:
        """What a live feed of this kind is built from: when it changes, the feed is rebuilt."""
        if kind == "ccxt":
            return tuple(self.venue_list()), tuple(self.symbol_list()), tuple(self.stream_venue_list())
        if kind == "mt5":
            return tuple(self.mt5_symbol_list())
        return ()


class WithdrawalFee(models.Model):
    """What moving a currency off a venue costs, for transfer-aware arbitrage."""

    venue = models.CharField(max_length=64)
    currency = models.CharField(max_length=16)
    fee = models.DecimalField(max_digits=28, decimal_places=12, help_text="in the currency itself")

    class Meta:
        verbose_name = "withdrawal fee"
        constraints = [models.UniqueConstraint(fields=["venue", "currency"], name="one_fee_per_venue_currency")]

    def __str__(self):
        return f"{self.venue} {self.currency}: {self.fee}"


class BinaryPayout(models.Model):
    """Payout per unit stake on a win, per underlying (Pocket-Option-style 0.80-0.92)."""

    symbol = models.CharField(max_length=64, unique=True, help_text="underlying, unified symbol, e.g. BTC/USD")
    payout = _fraction(help_text="paid per unit stake on a win, 0-1 (0.85 = 85 %)")

    class Meta:
        verbose_name = "binary payout"

    def __str__(self):
        return f"{self.symbol}: {self.payout}"


for _model in (WithdrawalFee, BinaryPayout):  # configuration the scans keep per process (`kept_configuration`)
    post_save.connect(configuration_changed, sender=_model, dispatch_uid=f"configuration-{_model.__name__}-saved")
    post_delete.connect(configuration_changed, sender=_model, dispatch_uid=f"configuration-{_model.__name__}-deleted")
