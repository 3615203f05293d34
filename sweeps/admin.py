"""Sweeps in admin: read their runs, and apply a finished run's settings to the live desk (audited)."""
from django.contrib import admin, messages

from execution.report import SETTINGS_ROWS, THRESHOLD_ROWS
from trifecta_site.admin import ReadOnlyAdmin

from . import services
from .models import Sweep, SweepRun


@admin.register(Sweep)
class SweepAdmin(ReadOnlyAdmin):
    list_display = ("id", "recording_name", "status", "split", "created_at", "finished_at")
    list_filter = ("status", "recording_name")


def _pnl(part: str, run: SweepRun) -> str:
    figures = getattr(run, part)
    return figures["pnl"] if figures else "—"


@admin.register(SweepRun)
class SweepRunAdmin(ReadOnlyAdmin):
    list_display = ("sweep", "index", "combination", "status", "in_sample_pnl", "out_of_sample_pnl", "attempts", "worker")
    list_filter = ("status", "sweep")
    actions = ["apply_to_live_desk"]

    @admin.display(description="in-sample P&L")
    def in_sample_pnl(self, run):
        return _pnl("in_sample", run)

    @admin.display(description="out-of-sample P&L")
    def out_of_sample_pnl(self, run):
        return _pnl("out_of_sample", run)

    def has_apply_permission(self, request):
        """Whoever may change every settings row a run can hold (controls, limits, execution, thresholds)."""
        models = [*SETTINGS_ROWS.values(), *THRESHOLD_ROWS.values()]
        return all(request.user.has_perm(f"{m._meta.app_label}.change_{m._meta.model_name}") for m in models)

    @admin.action(description="Apply this run's settings to the live desk (audited)", permissions=["apply"])
    def apply_to_live_desk(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one run to apply.", messages.ERROR)
            return
        run = queryset.select_related("sweep").get()
        try:
            written = services.apply_run_settings(run=run, user=request.user)
        except services.NotApplicable as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"Applied sweep {run.sweep_id} run {run.index} to the live desk: {written} "
                                   "changes in the configuration change log.", messages.SUCCESS)
