from django.contrib import admin

from trifecta_site.admin import ReadOnlyAdmin, SingletonAdmin

from .models import Controls, RiskDay, RiskLimits, RiskState

admin.site.register(Controls, SingletonAdmin)
admin.site.register(RiskLimits, SingletonAdmin)


@admin.register(RiskState)
class RiskStateAdmin(ReadOnlyAdmin):
    list_display = ("loss_streak", "cooldown_until", "peak_equity")


@admin.register(RiskDay)
class RiskDayAdmin(ReadOnlyAdmin):
    list_display = ("date", "trades", "realized_pnl", "realized_loss", "limit_trips")
    date_hierarchy = "date"
