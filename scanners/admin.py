from django.contrib import admin

from trifecta_site.admin import ReadOnlyAdmin, SingletonAdmin

from .exports import OPPORTUNITIES
from .models import (
    ArbitrageSettings,
    BinaryPayout,
    BinarySettings,
    FeedSettings,
    FeedState,
    ForexSettings,
    Opportunity,
    ScanRun,
    WithdrawalFee,
)


@admin.register(FeedState)
class FeedStateAdmin(ReadOnlyAdmin):
    list_display = ("feed", "venue", "state", "detail", "last_error", "error_at", "updated_at")
    list_filter = ("feed", "state")
    search_fields = ("venue",)


@admin.register(ScanRun)
class ScanRunAdmin(ReadOnlyAdmin):
    list_display = ("kind", "started_at", "duration_ms", "instruments_seen", "opportunities_found", "opportunities_kept", "error")
    list_filter = ("kind",)
    date_hierarchy = "started_at"


@admin.register(Opportunity)
class OpportunityAdmin(ReadOnlyAdmin):
    list_display = ("detected_at", "kind", "type", "symbol", "venues", "direction", "net_pct", "expected_profit_usd", "confidence", "probability", "risk_score", "status")
    list_filter = ("kind", "type", "status")
    search_fields = ("symbol", "route")
    date_hierarchy = "detected_at"
    list_select_related = ("scan_run",)
    actions = [OPPORTUNITIES.admin_action()]


for settings_model in (ArbitrageSettings, ForexSettings, BinarySettings):
    admin.site.register(settings_model, SingletonAdmin)


@admin.register(WithdrawalFee)
class WithdrawalFeeAdmin(admin.ModelAdmin):
    list_display = ("venue", "currency", "fee")
    list_filter = ("venue",)


@admin.register(BinaryPayout)
class BinaryPayoutAdmin(admin.ModelAdmin):
    list_display = ("symbol", "payout")


admin.site.register(FeedSettings, SingletonAdmin)
