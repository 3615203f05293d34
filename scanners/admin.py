from django.contrib import admin

from .models import FeedState


@admin.register(FeedState)
class FeedStateAdmin(admin.ModelAdmin):
    list_display = ("feed", "venue", "state", "detail", "last_error", "error_at", "updated_at")
    list_filter = ("feed", "state")
    search_fields = ("venue",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
