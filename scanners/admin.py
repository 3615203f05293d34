from django.contrib import admin

from .models import (
    ArbitrageSettings,
    BinaryPayout,
    BinarySettings,
    FeedState,
    ForexSettings,
    Opportunity,
    ScanRun,
    WithdrawalFee,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what happened: operators read and filter them, nobody edits them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


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


class SingletonAdmin(admin.ModelAdmin):
    """One row of settings: it can be changed, never added twice or deleted."""

    def has_add_permission(self, request):
        return not self.model.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        from django.shortcuts import redirect

        row = self.model.get_solo()
        return redirect(f"admin:{self.model._meta.app_label}_{self.model._meta.model_name}_change", row.pk)


for settings_model in (ArbitrageSettings, ForexSettings, BinarySettings):
    admin.site.register(settings_model, SingletonAdmin)


@admin.register(WithdrawalFee)
class WithdrawalFeeAdmin(admin.ModelAdmin):
    list_display = ("venue", "currency", "fee")
    list_filter = ("venue",)


@admin.register(BinaryPayout)
class BinaryPayoutAdmin(admin.ModelAdmin):
    list_display = ("symbol", "payout")
