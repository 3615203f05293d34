from axes import admin as axes_admin
from axes.models import AccessAttempt
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import PeriodicTask

from .models import ConfigChange, Heartbeat


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what happened: operators read and filter them, nobody edits them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    """A record's parts shown on it (`fields`, all read-only): never added, changed or deleted there."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False


class SingletonAdmin(admin.ModelAdmin):
    """One row of settings: it can be changed, never added twice or deleted; every change is audited."""

    def has_add_permission(self, request):
        """The model's add permission, as for any admin page, and only while there is no row yet."""
        return super().has_add_permission(request) and not self.model.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        """Straight to the one row, for those who may see it (checked first: reading it creates it)."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
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


class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin):
    """Celery beat's schedule admin, whose actions (enable, disable, toggle, run now) check no
    permission: a view-only user could switch off the desk's scans or run any task. Here
    each needs the change permission on periodic tasks, like editing one in its form."""

    @admin.action(description=beat_admin.PeriodicTaskAdmin.enable_tasks.short_description, permissions=["change"])
    def enable_tasks(self, request, queryset):
        return super().enable_tasks(request, queryset)

    @admin.action(description=beat_admin.PeriodicTaskAdmin.disable_tasks.short_description, permissions=["change"])
    def disable_tasks(self, request, queryset):
        return super().disable_tasks(request, queryset)

    @admin.action(description=beat_admin.PeriodicTaskAdmin.toggle_tasks.short_description, permissions=["change"])
    def toggle_tasks(self, request, queryset):
        return super().toggle_tasks(request, queryset)

    @admin.action(description=beat_admin.PeriodicTaskAdmin.run_tasks.short_description, permissions=["change"])
    def run_tasks(self, request, queryset):
        return super().run_tasks(request, queryset)


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)


class AccessAttemptAdmin(axes_admin.AccessAttemptAdmin):
    """Axes' failed sign-ins (delete a row to unlock its address), its clean-up action
    needing the delete permission like deleting the rows one by one."""

    @admin.action(description=axes_admin.AccessAttemptAdmin.cleanup_expired_attempts.short_description,
                  permissions=["delete"])
    def cleanup_expired_attempts(self, request, queryset):
        return super().cleanup_expired_attempts(request, queryset)


admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, AccessAttemptAdmin)
