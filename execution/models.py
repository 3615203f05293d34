from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from trifecta_site.clock import ms_to_datetime
from trifecta_site.models import SingletonSettings

ZERO = Decimal("0")
QUANTUM = Decimal("1e-10")


def stored(value: Decimal) -> Decimal:
    """A value as its column keeps it (10 places), so sums made in Python match the database's."""
    return value.quantize(QUANTUM)


def _money(**kwargs):
    return models.DecimalField(max_digits=28, decimal_places=10, **kwargs)


class ExecutionSettings(SingletonSettings):
    """How paper fills are made and sized; one row, edited in admin, read on every execution."""

    OPTIMISTIC, REALISTIC, CONSERVATIVE = "optimistic", "realistic", "conservative"
    REALISM = [(OPTIMISTIC, "optimistic: no latency, no extra slippage"),
               (REALISTIC, "realistic: the configured latency"),
               (CONSERVATIVE, "conservative: 4× the latency and extra slippage")]

    realism = models.CharField(max_length=16, choices=REALISM, default=REALISTIC,
                               help_text="how hard paper fills are: latency and slippage presets")
    latency_ms = models.PositiveIntegerField(default=250, help_text="decision to fill, realistic preset, ms")
    conservative_slippage_bps = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("5"),
                                                    validators=[MinValueValidator(ZERO)],
                                                    help_text="extra slippage of the conservative preset, basis points (0.01 %)")
    starting_value = models.DecimalField(max_digits=20, decimal_places=2, default=Decimal("100000"),
                                         validators=[MinValueValidator(Decimal("1"))],
                                         help_text="USD; applies to the next portfolio reset")
    arbitrage_max_notional_usd = models.DecimalField(max_digits=20, decimal_places=2, default=Decimal("10000"),
                                                     validators=[MinValueValidator(ZERO)],
                                                     help_text="largest arbitrage trade, USD notional")
    inventory_usd = models.DecimalField(max_digits=20, decimal_places=2, default=Decimal("20000"),
                                        validators=[MinValueValidator(ZERO)],
                                        help_text="arbitrage working inventory per venue and currency, USD worth at first use")
    forex_risk_per_trade_pct = models.DecimalField(max_digits=6, decimal_places=3, default=Decimal("1"),
                                                   validators=[MinValueValidator(ZERO), MaxValueValidator(Decimal("100"))],
                                                   help_text="percent of portfolio value lost if the stop-loss is hit")
    forex_leverage = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1)],
                                                 help_text="times (30 = 30:1): margin reserved = notional / leverage")
    binary_stake_pct = models.DecimalField(max_digits=6, decimal_places=3, default=Decimal("1"),
                                           validators=[MinValueValidator(ZERO), MaxValueValidator(Decimal("100"))],
                                           help_text="stake of a binary option, percent of portfolio value")
    max_open_positions = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)],
                                                     help_text="forex and binary positions open at once (count)")
    max_holding_minutes = models.PositiveIntegerField(default=240, validators=[MinValueValidator(1)],
                                                      help_text="forex positions are closed at market after this, minutes")
    max_quote_age_ms = models.PositiveIntegerField(default=5000, validators=[MinValueValidator(1)],
                                                   help_text="no decision, fill or close on market data older than this, ms")
    arbitrage_adverse_move_bps = models.DecimalField(
        max_digits=8, decimal_places=2, default=Decimal("20"), validators=[MinValueValidator(ZERO)],
        help_text="adverse price move each arbitrage leg may suffer during the fill latency, basis points: "
                  "its part of a trade's max_loss")

    class Meta:
        verbose_name = verbose_name_plural = "execution settings"

    def fill_latency_ms(self) -> int:
        return {self.OPTIMISTIC: 0, self.REALISTIC: self.latency_ms, self.CONSERVATIVE: 4 * self.latency_ms}[self.realism]

    def extra_slippage_bps(self) -> Decimal:
        return self.conservative_slippage_bps if self.realism == self.CONSERVATIVE else ZERO


class Portfolio(models.Model):
    """One paper account from a reset to the next; the latest open one is the desk's."""

    starting_value = models.DecimalField(max_digits=20, decimal_places=2)
    currency = models.CharField(max_length=8, default="USD")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    reset_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"portfolio #{self.pk} from {self.started_at:%Y-%m-%d %H:%M} ({self.starting_value} {self.currency})"


class Balance(models.Model):
    """What the desk holds of one currency on one venue (`desk` is the reporting-currency cash account).

    `free + reserved == total` is kept by every writer (and tested); it is not a database
    constraint because SQLite compares decimals as 15-digit floats.
    """

    DESK = "desk"

    portfolio = models.ForeignKey(Portfolio, on_delete=models.CASCADE, related_name="balances",
                                  db_index=False)  # one_balance_per_venue_currency leads with it
    venue = models.CharField(max_length=64)
    currency = models.CharField(max_length=16)
    free = _money(default=ZERO)
    reserved = _money(default=ZERO)
    total = _money(default=ZERO)
    usd_at_seed = _money(null=True, blank=True, help_text="USD per unit when the inventory was seeded")
    seed_usd = _money(null=True, blank=True, help_text="USD worth when seeded: part of the portfolio's starting value")
    usd_mark = _money(null=True, blank=True, help_text="USD per unit at the latest mark: inventory is valued at market")
    marked_ts = models.BigIntegerField(null=True, blank=True, help_text="market time of the latest mark, epoch ms")

    class Meta:
        ordering = ["venue", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["portfolio", "venue", "currency"], name="one_balance_per_venue_currency"),
            models.CheckConstraint(condition=Q(free__gte=0) & Q(reserved__gte=0), name="balance_not_negative"),
        ]

    def __str__(self):
        return f"{self.venue} {self.currency}: {self.total} ({self.reserved} reserved)"


class Trade(models.Model):
    """A paper execution of one opportunity: its fills, fees and, once closed, realized P&L (USD).

    `opportunity` is unique: the idempotency key, written in the same transaction as the
    fills and balance changes, so a redelivered execution never fills twice.
    """

    OPEN, CLOSED, REJECTED = "open", "closed", "rejected"

    portfolio = models.ForeignKey(Portfolio, on_delete=models.PROTECT, related_name="trades",
                                  db_index=False)  # trade_portfolio_status leads with it
    opportunity = models.OneToOneField("scanners.Opportunity", on_delete=models.PROTECT, related_name="trade")
    kind = models.CharField(max_length=16)
    route = models.CharField(max_length=300)
    symbol = models.CharField(max_length=200)
    venues = models.JSONField(default=list)
    direction = models.CharField(max_length=16, blank=True)
    status = models.CharField(max_length=16, choices=[(s, s) for s in (OPEN, CLOSED, REJECTED)])
    reject_reason = models.CharField(max_length=300, blank=True)
    opened_ts = models.BigIntegerField(help_text="market clock of the first fill, epoch ms")
    opened_at = models.DateTimeField()  # trade_recent_list leads with it
    booked_at = models.DateTimeField(auto_now_add=True, help_text="wall clock when the trade was written")
    closed_ts = models.BigIntegerField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    size_usd = _money(default=ZERO, help_text="notional (arbitrage, forex) or stake (binary) in USD")
    fees_usd = _money(default=ZERO)
    expected_pnl_usd = _money(null=True, blank=True, help_text="expected P&L at the executed size, USD")
    max_loss_usd = _money(null=True, blank=True, help_text="worst-case loss at entry, USD (the risk budget it used)")
    probability = models.DecimalField(max_digits=7, decimal_places=6, null=True, blank=True,
                                      help_text="calibrated probability of success the desk acted on (forex, binary)")
    realized_pnl = _money(null=True, blank=True, help_text="USD, after fees and spread; set when closed")
    edge = models.JSONField(default=dict, blank=True,
                            help_text="expected vs realized, split into latency move, depth slippage and fees (USD)")

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [models.Index(fields=["status", "kind"], name="trade_status_kind"),
                   models.Index(fields=["-opened_at", "-id"], name="trade_recent_list"),
                   models.Index(fields=["portfolio", "status"], name="trade_portfolio_status")]

    def __str__(self):
        return f"{self.kind} {self.symbol} #{self.pk} {self.status}"


class Fill(models.Model):
    """One leg of a trade, with the evidence of how it was filled."""

    trade = models.ForeignKey(Trade, on_delete=models.CASCADE, related_name="fills", db_index=False)  # one_fill_per_leg leads with it
    leg = models.PositiveSmallIntegerField()
    venue = models.CharField(max_length=64)
    symbol = models.CharField(max_length=64)
    side = models.CharField(max_length=4)
    requested = _money(help_text="base quantity asked for")
    quantity = _money(help_text="base quantity filled (0 when the leg did not fill)")
    price = _money(null=True, blank=True, help_text="VWAP of the fill")
    notional = _money(default=ZERO, help_text="quote currency")
    fee = _money(default=ZERO, help_text="quote currency")
    fee_rate = models.DecimalField(max_digits=10, decimal_places=6, default=ZERO)
    evidence = models.JSONField(default=dict, help_text="levels consumed, depth share, quote age, latency, top of book")
    filled_ts = models.BigIntegerField()

    class Meta:
        verbose_name = "fill"
        ordering = ["trade_id", "leg"]
        constraints = [models.UniqueConstraint(fields=["trade", "leg"], name="one_fill_per_leg")]

    def __str__(self):
        return f"leg {self.leg} of trade #{self.trade_id}: {self.side} {self.quantity} {self.symbol} on {self.venue}"


class Position(models.Model):
    """A forex position or a binary stake, open until the monitor closes it."""

    OPEN, CLOSED = "open", "closed"

    trade = models.OneToOneField(Trade, on_delete=models.CASCADE, related_name="position")
    kind = models.CharField(max_length=16)
    venue = models.CharField(max_length=64)
    symbol = models.CharField(max_length=64)
    direction = models.CharField(max_length=8, help_text="BUY/SELL or CALL/PUT")
    quantity = _money(help_text="forex: base units; binary: stake in USD")
    entry_price = _money()
    stop_loss = _money(null=True, blank=True)
    take_profit = _money(null=True, blank=True)
    expiry_ts = models.BigIntegerField(null=True, blank=True, help_text="binary: settles at this market time")
    payout = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    reserved_usd = _money(default=ZERO, help_text="margin or stake held in the desk's cash")
    opened_ts = models.BigIntegerField()
    checked_ts = models.BigIntegerField(help_text="market time the monitor last looked")
    status = models.CharField(max_length=8, default=OPEN, choices=[(OPEN, OPEN), (CLOSED, CLOSED)])
    closed_ts = models.BigIntegerField(null=True, blank=True)
    exit_price = _money(null=True, blank=True)
    close_reason = models.CharField(max_length=16, blank=True,
                                    help_text="stop_loss, take_profit, max_hold, manual (an operator's close); win, loss, tie for binaries")
    realized_pnl = _money(null=True, blank=True)
    unrealized_pnl = _money(default=ZERO, help_text="as the monitor last marked it")

    class Meta:
        ordering = ["-opened_ts"]
        indexes = [models.Index(fields=["status", "kind"], name="position_status_kind")]

    def __str__(self):
        return f"{self.kind} {self.direction} {self.symbol} ({self.status})"


class ManualClose(models.Model):
    """An operator's close of an open position: who, why and when (the audit row). What it filled
    at and on what price, with its age, is on the closing fill; one per position (unique)."""

    position = models.OneToOneField(Position, on_delete=models.PROTECT, related_name="manual_close")
    fill = models.OneToOneField(Fill, on_delete=models.PROTECT, related_name="+", help_text="the closing leg, with its evidence")
    closed_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    reason = models.CharField(max_length=300, blank=True, help_text="why, as the operator gave it")
    closed_at = models.DateTimeField(help_text="wall clock of the request")

    class Meta:
        verbose_name = "manual close"
        ordering = ["-closed_at", "-id"]

    def __str__(self):
        return f"position #{self.position_id} closed by {self.closed_by or 'nobody'} at {self.closed_at:%Y-%m-%d %H:%M:%S}"


class EquitySnapshot(models.Model):
    """The portfolio once a minute: the equity curve and drawdown from the peak."""

    portfolio = models.ForeignKey(Portfolio, on_delete=models.CASCADE, related_name="snapshots")
    minute_ts = models.BigIntegerField(help_text="market time, epoch ms, floored to the minute")
    taken_at = models.DateTimeField()
    cash = _money()
    realized_pnl = _money()
    unrealized_pnl = _money()
    starting_value = _money(null=True, help_text="cash at the start + the inventory at its seed value, USD")
    inventory_usd = _money(default=ZERO, help_text="arbitrage inventory at market, USD")
    inventory_revaluation = _money(default=ZERO, help_text="inventory's price moves since seeded, USD: "
                                                           "its market value − seed value − arbitrage realized P&L")
    equity = _money()
    peak_equity = _money()
    drawdown_pct = models.DecimalField(max_digits=10, decimal_places=4)
    open_positions = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["portfolio_id", "minute_ts"]
        verbose_name = "equity snapshot"
        constraints = [models.UniqueConstraint(fields=["portfolio", "minute_ts"], name="one_snapshot_per_minute")]

    def __str__(self):
        return f"equity {self.equity} at {ms_to_datetime(self.minute_ts):%Y-%m-%d %H:%M} (market time)"


class SignalWatch(models.Model):
    """A forex or binary signal the desk decided but did not trade, followed as if it had been
    (a position without money) until the rules close it: the agents learn from every decided
    signal's outcome, not only from the few the desk traded. Same rules as `Position`."""

    OPEN, SETTLED = "open", "settled"

    opportunity = models.OneToOneField("scanners.Opportunity", on_delete=models.CASCADE, related_name="watch")
    kind = models.CharField(max_length=16)
    venue = models.CharField(max_length=64)
    symbol = models.CharField(max_length=64)
    direction = models.CharField(max_length=8, help_text="BUY/SELL or CALL/PUT")
    quantity = _money(default=ZERO, help_text="the nominal size its levels were planned at")
    entry_price = _money(null=True, blank=True)
    stop_loss = _money(null=True, blank=True)
    take_profit = _money(null=True, blank=True)
    spread = _money(default=ZERO, help_text="the spread at entry (a short's bid bars are shifted by it)")
    expiry_ts = models.BigIntegerField(null=True, blank=True, help_text="binary: settles at this market time")
    payout = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    opened_ts = models.BigIntegerField(help_text="market time of the entry it would have had")
    checked_ts = models.BigIntegerField(help_text="market time it was last looked at")
    status = models.CharField(max_length=8, default=OPEN, choices=[(OPEN, OPEN), (SETTLED, SETTLED)])
    outcome = models.CharField(max_length=32, blank=True,
                               help_text="take_profit, stop_loss, max_hold; win, loss, tie, void; or why it could not enter")
    counted = models.BooleanField(default=False, help_text="an independent window the agent learns from: no counted "
                                  "watch or open position of the same instrument and direction was open at its entry")
    won = models.BooleanField(null=True, blank=True, help_text="the outcome: the target first, or in the money")
    settled_ts = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_ts"]
        indexes = [models.Index(fields=["status", "opened_ts"], name="signalwatch_status_opened")]

    def __str__(self):
        return f"watch {self.kind} {self.direction} {self.symbol} ({self.outcome or self.status})"
