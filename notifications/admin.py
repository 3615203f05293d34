from django import forms
from django.contrib import admin, messages

from trifecta_site.admin import ReadOnlyAdmin, ReadOnlyInline

from . import services
from .models import Channel, Delivery, DeliveryAttempt, FeedOutage, RiskHalt, Subscription, parsed_url


class ChannelForm(forms.ModelForm):
    """The URL is a secret: never shown again once saved; left empty on a change, the saved one stays."""

    url = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False, attrs={"size": 80}),
                          help_text=Channel._meta.get_field("url").help_text + ". Leave empty to keep the saved URL.")

    class Meta:
        model = Channel
        fields = ("name", "url", "max_per_minute", "active")

    def clean_url(self):
        url = self.cleaned_data["url"].strip()
        if not url and self.instance.pk:
            return self.instance.url
        if not url:
            raise forms.ValidationError("An Apprise URL is required.")
        if parsed_url(url) is None:
            raise forms.ValidationError("Apprise does not understand this URL (see Apprise's documentation for each service's form).")
        return url


class SubscriptionInline(admin.TabularInline):
    model = Subscription
    fields = ("event", "min_outage_s", "min_abs_pnl_usd", "min_size_usd", "active")
    extra = 1


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ("name", "masked", "max_per_minute", "active", "subscribed_to")
    list_filter = ("active",)
    search_fields = ("name",)
    readonly_fields = ("masked",)
    inlines = [SubscriptionInline]
    actions = ["send_test_message"]

    def get_fields(self, request, obj=None):
        return ("name", "masked", "url", "max_per_minute", "active") if obj else ("name", "url", "max_per_minute", "active")

    @admin.display(description="URL (masked)")
    def masked(self, channel):
        return channel.masked_url

    @admin.display(description="events")
    def subscribed_to(self, channel):
        return ", ".join(sorted({s.get_event_display() for s in channel.subscriptions.all() if s.active})) or "—"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("subscriptions")

    @admin.action(description="Send a test message", permissions=["change"])
    def send_test_message(self, request, queryset):
        for channel in queryset:
            services.send_test(channel=channel)
        self.message_user(request, f"{queryset.count()} test message(s) queued: see Deliveries for the outcome.", messages.SUCCESS)


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("channel", "event", "min_outage_s", "min_abs_pnl_usd", "min_size_usd", "active")
    list_filter = ("event", "active", "channel")


class DeliveryAttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = ("started_at", "finished_at", "ok", "error")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """What was sent where, and what failed and why; read-only but for the retry action."""

    list_display = ("created_at", "event", "title", "channel", "status", "attempts", "short_error", "next_try_at", "sent_at")
    list_filter = ("status", "event", "channel")
    search_fields = ("title", "last_error")
    date_hierarchy = "created_at"
    fields = ("created_at", "event", "channel", "subscription", "title", "body", "data", "status", "attempts",
              "last_error", "next_try_at", "sent_at")
    readonly_fields = fields
    inlines = [DeliveryAttemptInline]
    actions = ["retry_failed"]

    @admin.display(description="last error")
    def short_error(self, delivery):
        return (delivery.last_error[:120] + "…") if len(delivery.last_error) > 120 else delivery.last_error

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        """Each delivery's page is read-only; the model's change permission is what the retry action asks for."""
        return obj is None and super().has_change_permission(request, obj)

    @admin.action(description="Retry the failed ones now", permissions=["change"])
    def retry_failed(self, request, queryset):
        count = services.retry_now(deliveries=queryset)
        self.message_user(request, f"{count} failed deliver{'y' if count == 1 else 'ies'} queued again.", messages.SUCCESS)


@admin.register(FeedOutage)
class FeedOutageAdmin(ReadOnlyAdmin):
    list_display = ("feed", "venue", "started_at", "ended_at", "error")
    list_filter = ("feed", "venue")


@admin.register(RiskHalt)
class RiskHaltAdmin(ReadOnlyAdmin):
    list_display = ("day", "reason", "noticed_at")
    list_filter = ("reason",)

