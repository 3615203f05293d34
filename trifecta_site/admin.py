from django.contrib import admin
from django.shortcuts import redirect

from .models import ConfigChange, Heartbeat


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what happened: operators read and filter them, nobody edits them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class SingletonAdmin(admin.ModelAdmin):
    """One row of settings: it can be changed, never added twice or deleted; every change is audited."""

    def has_add_permission(self, request):
        return not self.model.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        row = self.model.get_solo()
        return redirect(f"admin:{self.model._meta.app_label}_{self.model._meta.model_name}_change", row.pk)

    def save_model(self, request, obj, form, change):
        obj.save(changed_by=request.user)


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = ("process", "hostname", "seen_at")
    list_filter = ("process",)


@admin.register(ConfigChange)
class ConfigChangeAdmin(ReadOnlyAdmin):
    list_display = ("changed_at", "setting", "field", "old_value", "new_value", "changed_by")
    list_filter = ("setting", "field", "changed_by")
    search_fields = ("setting", "field", "old_value", "new_value")
    date_hierarchy = "changed_at"
