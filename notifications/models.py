"""Channels the operator subscribes to desk events, and the record of every delivery.

A channel is one Apprise URL (Telegram, Slack, Discord, e-mail, a JSON webhook...). A
subscription says which event a channel hears, with its thresholds. Every notice the desk
sends becomes a `Delivery` (one per subscription it passed) and each try to send it a
`DeliveryAttempt`: what failed, and why, stays readable in admin.
"""
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from trifecta_site.models import configuration_changed, kept_configuration

ZERO = Decimal(0)


def parsed_url(url: str):
    """Apprise's plugin for the URL, or None when Apprise does not understand it."""
    import apprise  # here, not at the top: with its plugins some 50 MB, loaded only where URLs are read or sent

    return apprise.Apprise.instantiate(url.strip()) if url and url.strip() else None


def masked_url(url: str) -> str:
    """The URL with its secrets (tokens, passwords) masked, as Apprise itself prints it, less its options."""
    plugin = parsed_url(url)
    if plugin is None:
        return "(not an Apprise URL)"
    return plugin.url(privacy=True).split("?", 1)[0]


class Channel(models.Model):
    """Where notices go: one Apprise URL, and at most `max_per_minute` messages a minute."""

    name = models.CharField(max_length=100, unique=True)
    url = models.TextField(help_text="Apprise URL, e.g. tgram://BOT_TOKEN/CHAT_ID, slack://TOKEN_A/TOKEN_B/TOKEN_C, "
                                     "discord://WEBHOOK_ID/WEBHOOK_TOKEN, mailtos://user:password@host?to=..., "
                                     "json://host:port/path (a webhook). A secret: lists show it masked")
    max_per_minute = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1)],
        help_text="messages a minute at most (count); more wait until the minute has room (delayed, never dropped)")
    active = models.BooleanField(default=True, help_text="off = nothing is sent to this channel")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        if parsed_url(self.url) is None:
            raise ValidationError({"url": "Apprise does not understand this URL (see Apprise's documentation for each service's form)"})

    @property
    def masked_url(self) -> str:
        return masked_url(self.url)


class Subscription(models.Model):
    """One channel hearing one kind of event, when the event passes the thresholds set here."""

    KILL_SWITCH, RISK_HALT, FEED_DOWN, FEED_BACK, TRADE_CLOSED = "kill_switch", "risk_halt", "feed_down", "feed_back", "trade_closed"
    EVENTS = [
        (KILL_SWITCH, "kill switch turned on or off"),
        (RISK_HALT, "risk halt (daily loss, loss streak, drawdown)"),
        (FEED_DOWN, "feed venue down"),
        (FEED_BACK, "feed venue back (after more than N seconds down)"),
        (TRADE_CLOSED, "trade closed (|P&L| or size at or above a threshold)"),
    ]

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="subscriptions")
    event = models.CharField(max_length=16, choices=EVENTS)
    min_outage_s = models.PositiveIntegerField(
        default=0, help_text="feed back: only after an outage longer than this, seconds (0: every return)")
    min_abs_pnl_usd = models.DecimalField(
        max_digits=18, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(ZERO)],
        help_text="trade closed: when |realized P&L| is at least this, USD (blank: not this test)")
    min_size_usd = models.DecimalField(
        max_digits=18, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(ZERO)],
        help_text="trade closed: when its size is at least this, USD (blank: not this test). Both blank: every close")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["channel", "event"]
        indexes = [models.Index(fields=["event", "active"], name="subscription_event")]

    def __str__(self):
        return f"{self.channel} ← {self.get_event_display()}"

    def wants(self, data: dict) -> bool:
        """Whether an event of this subscription's kind, with these figures, passes its thresholds."""
        if self.event == self.FEED_BACK:
            return float(data.get("outage_s", 0)) > self.min_outage_s
        if self.event == self.TRADE_CLOSED:
            tests = []
            if self.min_abs_pnl_usd is not None:
                tests.append(abs(Decimal(data.get("realized_pnl") or ZERO)) >= self.min_abs_pnl_usd)
            if self.min_size_usd is not None:
                tests.append(Decimal(data.get("size_usd") or ZERO) >= self.min_size_usd)
            return any(tests) if tests else True
        return True


def subscribed_events() -> frozenset[str]:
    """The events some active subscription of an active channel hears, kept per process until the
    configuration changes: the desk's trade closes cost no query while nobody subscribes to them."""
    return kept_configuration("notification subscriptions", lambda: frozenset(
        Subscription.objects.filter(active=True, channel__active=True).values_list("event", flat=True)))


for _model in (Channel, Subscription):  # a change is a new configuration version (`kept_configuration`)
    post_save.connect(configuration_changed, sender=_model, dispatch_uid=f"configuration-{_model.__name__}-saved")
    post_delete.connect(configuration_changed, sender=_model, dispatch_uid=f"configuration-{_model.__name__}-deleted")


class Delivery(models.Model):
    """One notice for one channel: queued, retried with backoff, sent or given up."""

    QUEUED, WAITING, SENDING, RETRYING, SENT, FAILED = "queued", "waiting", "sending", "retrying", "sent", "failed"
    STATUSES = [(QUEUED, "queued"), (WAITING, "waiting for the channel's rate limit"), (SENDING, "sending"),
                (RETRYING, "failed, retrying"), (SENT, "sent"), (FAILED, "failed, given up")]
    TEST = "test"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    subscription = models.ForeignKey(Subscription, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries")
    event = models.CharField(max_length=16, choices=[*Subscription.EVENTS, (TEST, "test message")])
    title = models.CharField(max_length=200)
    body = models.TextField()
    data = models.JSONField(default=dict, blank=True, help_text="the event's figures")
    status = models.CharField(max_length=16, choices=STATUSES, default=QUEUED)
    attempts = models.PositiveIntegerField(default=0, help_text="tries to send it so far (count)")
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    next_try_at = models.DateTimeField(null=True, blank=True, help_text="when it is tried next (backoff or rate limit)")
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_try_at"], name="delivery_pending")]

    def __str__(self):
        return f"{self.get_event_display()} → {self.channel}: {self.status}"


class DeliveryAttempt(models.Model):
    """One try to send a delivery; the channel's attempts of the last minute are its rate limit."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="tries")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+", db_index=False)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(null=True, help_text="empty while it runs")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [models.Index(fields=["channel", "started_at"], name="attempt_channel_recent")]

    def __str__(self):
        return f"attempt on delivery #{self.delivery_id} at {self.started_at:%Y-%m-%d %H:%M:%S}"


class FeedOutage(models.Model):
    """A feed's venue down from `started_at` until `ended_at`: how long a 'feed back' notice says it was away."""

    feed = models.CharField(max_length=16)
    venue = models.CharField(max_length=64)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [models.UniqueConstraint(fields=["feed", "venue"], condition=models.Q(ended_at__isnull=True),
                                               name="one_open_outage_per_venue")]

    def __str__(self):
        return f"{self.feed}:{self.venue} down since {self.started_at:%Y-%m-%d %H:%M:%S}"


class RiskHalt(models.Model):
    """A halt reason's first block in a risk day: announced once, however often it blocks after."""

    day = models.DateField()
    reason = models.CharField(max_length=32)
    noticed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-day", "reason"]
        constraints = [models.UniqueConstraint(fields=["day", "reason"], name="one_halt_notice_per_day_reason")]

    def __str__(self):
        return f"{self.reason} on {self.day}"
