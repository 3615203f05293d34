from django.contrib import admin

from .models import Heartbeat


@admin.register(Heartbeat)
class HeartbeatAdmin(admin.ModelAdmin):
    list_display = ("process", "hostname", "seen_at")
    list_filter = ("process",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
