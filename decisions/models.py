import re
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from trifecta_site import events
from trifecta_site.models import SingletonSettings, configuration_changed

ZERO = Decimal("0")


def initial_auto_execute() -> bool:
    return settings.AUTO_EXECUTE


class Controls(SingletonSettings):
    """The operator's switches; a change applies to the next decision on every worker."""

    auto_execute = models.BooleanField(default=initial_auto_execute,
                                       help_text="off = display only: opportunities are evaluated, nothing executes")
    kill_switch = models.BooleanField(default=False, help_text="on = no new execution at all (open positions are still monitored)")
    arbitrage_enabled = models.BooleanField(default=True, help_text="off = arbitrage opportunities are never executed")
    forex_enabled = models.BooleanField(default=True, help_text="off = forex signals are never executed")
    binary_enabled = models.BooleanField(default=True, help_text="off = binary options are never executed")

    class Meta:
        verbose_name = verbose_name_plural = "controls"

    def save(self, *args, **kwargs):
        """Saved and, after commit, announced (`controls` event): dashboards show the new mode at once."""
        super().save(*args, **kwargs)
        data = {"mode": self.mode, "auto_execute": self.auto_execute, "kill_switch": self.kill_switch,
                **{f"{kind}_enabled": getattr(self, f"{kind}_enabled") for kind in ("arbitrage", "forex", "binary")}}
        transaction.on_commit(lambda: events.publish("controls", data))

    @property
    def mode(self) -> str:
        if self.kill_switch:
            return "HALTED"
        return "AUTO-EXECUTE" if self.auto_execute else "DISPLAY ONLY"


class RiskLimits(SingletonSettings):
    """The risk manager's limits: one row, edited in admin, read on every approval."""

    max_trades_per_day = models.PositiveIntegerField(default=50, validators=[MinValueValidator(1)],
                                                     help_text="approved trades per calendar day (count)")
    max_daily_loss = models.DecimalField(max_digits=18, decimal_places=2, default=Decimal("100"),
                                         validators=[MinValueValidator(ZERO)], help_text="USD of realized loss per day")
    max_consecutive_losses = models.PositiveIntegerField(default=5, validators=[MinValueValidator(1)],
                                                         help_text="losing trades in a row before the cooldown (count)")
    max_position_pct = models.DecimalField(max_digits=6, decimal_places=2, default=Decimal("25"),
                                           validators=[MinValueValidator(ZERO), MaxValueValidator(Decimal("100"))],
                                           help_text="largest position, percent of portfolio value")
    cooldown_minutes = models.PositiveIntegerField(default=30, help_text="pause after the loss streak trips, minutes")
    drawdown_halt_pct = models.DecimalField(max_digits=6, decimal_places=2, default=Decimal("10"),
                                            validators=[MinValueValidator(ZERO), MaxValueValidator(Decimal("100"))],
                                            help_text="halt when equity is this far below its peak, percent")
    binary_max_stake_pct = models.DecimalField(max_digits=6, decimal_places=2, default=Decimal("2"),
                                               validators=[MinValueValidator(ZERO), MaxValueValidator(Decimal("100"))],
                                               help_text="largest binary stake, percent of portfolio value")
    day_timezone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone of the calendar day the limits count in, e.g. UTC or Europe/London")
    max_risk_per_trade_pct = models.DecimalField(
        max_digits=6, decimal_places=3, default=Decimal("0.05"),
        validators=[MinValueValidator(ZERO), MaxValueValidator(Decimal("100"))],
        help_text="largest worst-case loss (max_loss) of one trade, percent of portfolio value; trades are sized down to it")
    min_trade_usd = models.DecimalField(max_digits=18, decimal_places=2, default=Decimal("10"),
                                        validators=[MinValueValidator(ZERO)],
                                        help_text="a trade the risk budget sizes below this is refused, USD notional or stake")

    class Meta:
        verbose_name = verbose_name_plural = "risk limits"

    def clean(self):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from django.core.exceptions import ValidationError

        try:
            ZoneInfo(self.day_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError({"day_timezone": f"unknown time zone {self.day_timezone!r}"})


class RiskState(SingletonSettings):
    """What outlives a day: the loss streak, its cooldown and the equity peak. Locked on every approval."""

    audited = False  # runtime state, not configuration

    loss_streak = models.PositiveIntegerField(default=0)
    cooldown_until = models.DateTimeField(null=True, blank=True)
    peak_equity = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)

    class Meta:
        verbose_name = verbose_name_plural = "risk state"


class RiskDay(models.Model):
    """One calendar day's usage, in the limits' time zone."""

    date = models.DateField(unique=True)
    trades = models.PositiveIntegerField(default=0, help_text="approved trade slots")
    realized_pnl = models.DecimalField(max_digits=20, decimal_places=8, default=ZERO)
    realized_loss = models.DecimalField(max_digits=20, decimal_places=8, default=ZERO, help_text="sum of losing outcomes")
    at_risk = models.DecimalField(max_digits=20, decimal_places=8, default=ZERO,
                                  help_text="max_loss of the trades approved this day and not yet closed, USD")
    limit_trips = models.JSONField(default=dict, blank=True, help_text="reason code -> times it blocked")

    class Meta:
        verbose_name = "risk day"
        ordering = ["-date"]

    def __str__(self):
        return f"{self.date}: {self.trades} trades, {self.realized_pnl} P&L"


class AgentState(models.Model):
    """What an agent has learned about one key (a route, a pair and signal, an underlying and expiry).

    Beta-Bernoulli counts of realized wins and losses, plus sums for realized against
    expected figures. Updated with F() expressions, so concurrent workers never lose an
    update; reset per agent from admin.
    """

    ARBITRAGE, FOREX, BINARY = "arbitrage", "forex", "binary"

    agent = models.CharField(max_length=16, choices=[(a, a) for a in (ARBITRAGE, FOREX, BINARY)])
    key = models.CharField(max_length=300)
    wins = models.PositiveIntegerField(default=0)
    losses = models.PositiveIntegerField(default=0)
    expected_sum = models.DecimalField(max_digits=28, decimal_places=10, default=ZERO,
                                       help_text="arbitrage: expected profit; binary: predicted probability")
    realized_sum = models.DecimalField(max_digits=28, decimal_places=10, default=ZERO)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "agent state"
        verbose_name_plural = "agent states"
        constraints = [models.UniqueConstraint(fields=["agent", "key"], name="one_state_per_agent_key")]
        ordering = ["agent", "key"]

    def __str__(self):
        return f"{self.agent} {self.key}: {self.wins}W/{self.losses}L"


class Decision(models.Model):
    """One layer's verdict on one opportunity, with reason codes and the figures behind it.

    The unique (opportunity, layer) pair is what makes deciding idempotent: a redelivered
    decide task finds the rows (or collides with them) and stores nothing twice.
    """

    AGENT, RISK, GOVERNOR = "agent", "risk", "governor"
    LAYERS = [(AGENT, "agent"), (RISK, "risk manager"), (GOVERNOR, "governor")]

    # Indexed by the unique (opportunity, layer) pair and `decision_recent_list`: a separate
    # index on the key or the time would only slow the three inserts of every decision.
    opportunity = models.ForeignKey("scanners.Opportunity", on_delete=models.CASCADE, related_name="decisions",
                                    db_index=False)
    layer = models.CharField(max_length=16, choices=LAYERS)
    verdict = models.CharField(max_length=16, help_text="agent: approve/skip; risk: approved/blocked; governor: execute/display/skip")
    reasons = models.JSONField(default=list, blank=True)
    figures = models.JSONField(default=dict, blank=True)
    score = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    level = models.CharField(max_length=8, blank=True, help_text="risk level LOW/MEDIUM/HIGH/BLOCKED")
    size_usd = models.DecimalField(max_digits=28, decimal_places=8, null=True, blank=True, help_text="the size this layer saw or approved")
    probability = models.DecimalField(max_digits=7, decimal_places=6, null=True, blank=True,
                                      help_text="calibrated probability of success the layer acted on (forex, binary)")
    expected_pnl_usd = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True,
                                           help_text="expected P&L at this layer's size, USD")
    max_loss_usd = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True,
                                       help_text="worst-case loss at this layer's size, USD")
    decided_at = models.DateTimeField()
    market_ts = models.BigIntegerField(help_text="the feed clock at decision time, epoch ms")

    class Meta:
        ordering = ["-decided_at", "opportunity_id", "id"]
        constraints = [models.UniqueConstraint(fields=["opportunity", "layer"], name="one_decision_per_layer")]
        indexes = [models.Index(fields=["layer", "verdict", "-decided_at"], name="decision_verdict_recent"),
                   models.Index(fields=["-decided_at", "-id"], name="decision_recent_list")]

    def __str__(self):
        return f"{self.layer} on #{self.opportunity_id}: {self.verdict}"


PAIR_FORM = re.compile(r"[A-Z0-9][A-Z0-9._-]*/[A-Z0-9][A-Z0-9._:-]*")
MARKET = r"[^\s:>]+/[^\s>]+"  # a symbol as a route names it (BTC/USDT, BTC/USDT:USDT)
ROUTE_FORMS = (re.compile(rf"xv:{MARKET}:[^\s:>]+>[^\s:>]+"),  # cross-venue: xv:SYMBOL:BUY_VENUE>SELL_VENUE
               re.compile(rf"tri:[^\s:>]+:(buy|sell):{MARKET}(>(buy|sell):{MARKET})+"))  # tri:VENUE:side:SYMBOL>...


class Pause(models.Model):
    """The operator's hold on one pair or one arbitrage route: the governor skips every
    opportunity it matches (`PAUSED`) until `until`, or until lifted. A lifted pause is kept,
    with who paused, who lifted and why: the rows are their own audit."""

    PAIR, ROUTE = "pair", "route"
    SCOPES = [(PAIR, "pair (a symbol, on any venue)"), (ROUTE, "route (one arbitrage route)")]

    scope = models.CharField(max_length=8, choices=SCOPES)
    target = models.CharField(max_length=300, help_text="pair: a symbol as the desk names it, e.g. EUR/USD or BTC/USDT "
                              "(any venue, any leg of an arbitrage); route: an arbitrage route as its opportunities "
                              "name it, e.g. xv:BTC/USDT:binance>kraken or tri:binance:buy:ETH/BTC>sell:ETH/USDT>buy:BTC/USDT")
    reason = models.CharField(max_length=300, blank=True, help_text="why, for the audit")
    until = models.DateTimeField(null=True, blank=True, help_text="wall clock; empty: until lifted")
    created_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    lifted_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    lifted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["lifted_at", "until"], name="pause_in_force")]

    def __str__(self):
        return f"{self.scope} {self.target} paused {self.span()}"

    def span(self) -> str:
        if self.lifted_at is not None:
            return f"until lifted at {self.lifted_at:%Y-%m-%d %H:%M:%S} UTC"
        return "until lifted" if self.until is None else f"until {self.until:%Y-%m-%d %H:%M:%S} UTC"

    def in_force(self, at) -> bool:
        return self.lifted_at is None and (self.until is None or at < self.until)

    def clean(self):
        """The target in the form the scanners name it (a pair in capitals), and a new pause ending after now."""
        target = "".join(self.target.split()) if self.target else ""
        if self.scope == self.PAIR:
            target = target.upper()
            if not PAIR_FORM.fullmatch(target):
                raise ValidationError({"target": f"a pair is a symbol such as EUR/USD or BTC/USDT, not {self.target!r}"})
        elif self.scope == self.ROUTE and not any(form.fullmatch(target) for form in ROUTE_FORMS):
            raise ValidationError({"target": "a route is an arbitrage route as its opportunities name it: "
                                             f"xv:SYMBOL:BUY_VENUE>SELL_VENUE or tri:VENUE:side:SYMBOL>…, not {self.target!r}"})
        self.target = target
        if self.pk is None and self.until is not None and self.until <= timezone.now():
            raise ValidationError({"until": "a pause must end in the future (leave it empty: until lifted)"})


# Pauses are read on every decision from a copy each process keeps (`decisions.pauses`): a change
# replaces the configuration version in its own transaction, as a settings row's does.
post_save.connect(configuration_changed, sender=Pause, dispatch_uid="configuration-Pause-saved")
post_delete.connect(configuration_changed, sender=Pause, dispatch_uid="configuration-Pause-deleted")
