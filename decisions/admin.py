from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils import timezone

from scanners.admin import OpportunityAdmin
from scanners.models import Opportunity
from trifecta_site.admin import ReadOnlyAdmin, ReadOnlyInline, SingletonAdmin

from .exports import DECISIONS
from .models import AgentState, Controls, Decision, Pause, RiskDay, RiskLimits, RiskState
from .pauses import PauseAlreadyLifted, create_pause, lift_pause

admin.site.register(Controls, SingletonAdmin)
admin.site.register(RiskLimits, SingletonAdmin)


@admin.register(RiskState)
class RiskStateAdmin(ReadOnlyAdmin):
    list_display = ("loss_streak", "cooldown_until", "peak_equity")


@admin.register(RiskDay)
class RiskDayAdmin(ReadOnlyAdmin):
    list_display = ("date", "trades", "realized_pnl", "realized_loss", "limit_trips")
    date_hierarchy = "date"


@admin.register(AgentState)
class AgentStateAdmin(ReadOnlyAdmin):
    list_display = ("agent", "key", "wins", "losses", "expected_sum", "realized_sum", "updated_at")
    list_filter = ("agent",)
    search_fields = ("key",)
    actions = ["reset_agents"]

    def has_delete_permission(self, request, obj=None):
        """The model's delete permission (superusers hold it), as for any admin delete."""
        return super().has_delete_permission(request, obj)

    @admin.action(description="Reset the learning of the selected rows' agents (every key of each)",
                  permissions=["delete"])
    def reset_agents(self, request, queryset):
        """Asks first (listing what goes), then forgets every key of the selected agents.

        It deletes rows, so it needs the delete permission: admin leaves it out of the
        action list, and refuses its POST, for anyone without it (a view-only user ran it)."""
        agents = sorted(set(queryset.values_list("agent", flat=True)))
        if request.POST.get("confirmed") != "yes":
            context = {**self.admin_site.each_context(request), "title": "Reset agent learning?", "agents": agents,
                       "rows": AgentState.objects.filter(agent__in=agents).count(), "queryset": queryset,
                       "opts": self.model._meta}
            return TemplateResponse(request, "admin/decisions/agentstate/reset_confirmation.html", context)
        deleted, _ = AgentState.objects.filter(agent__in=agents).delete()
        self.message_user(request, f"Reset {', '.join(agents)}: {deleted} learned rows removed.")


@admin.register(Pause)
class PauseAdmin(admin.ModelAdmin):
    """Pause a pair or a route (add), lift it (action); a pause is never edited or deleted: its
    row is the record of who paused what, why, and who lifted it."""

    list_display = ("created_at", "scope", "target", "until", "in_force", "reason", "created_by", "lifted_at", "lifted_by")
    list_filter = ("scope", ("lifted_at", admin.EmptyFieldListFilter))
    search_fields = ("target", "reason")
    fields = ("scope", "target", "until", "reason")
    actions = ["lift"]

    @admin.display(boolean=True, description="in force")
    def in_force(self, pause):
        return pause.in_force(timezone.now())

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_lift_permission(self, request) -> bool:
        """Lifting is the API's DELETE: the model's delete permission."""
        return request.user.has_perm("decisions.delete_pause")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def save_model(self, request, obj, form, change):
        create_pause(pause=obj, by=request.user)

    @admin.action(description="Lift the selected pauses", permissions=["lift"])
    def lift(self, request, queryset):
        lifted = []
        for pause in queryset:
            try:
                lifted.append(str(lift_pause(pause_id=pause.pk, by=request.user).target))
            except PauseAlreadyLifted as exc:
                self.message_user(request, str(exc), messages.WARNING)
        if lifted:
            self.message_user(request, f"Lifted: {', '.join(lifted)}.")


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = ("decided_at", "opportunity", "layer", "verdict", "reasons", "level", "score", "size_usd")
    list_filter = ("layer", "verdict", "level")
    search_fields = ("opportunity__symbol", "opportunity__route")
    date_hierarchy = "decided_at"
    list_select_related = ("opportunity",)
    actions = [DECISIONS.admin_action()]


class DecisionInline(ReadOnlyInline):
    """The decision trail on each opportunity: why it was traded or not."""

    model = Decision
    fields = ("layer", "verdict", "reasons", "level", "score", "size_usd", "figures", "decided_at")


class OpportunityWithDecisionsAdmin(OpportunityAdmin):
    """An opportunity with its decision trail: the inline lives with the decisions it shows, so
    scanners' admin never imports decisions."""

    inlines = [DecisionInline]


admin.site.unregister(Opportunity)
admin.site.register(Opportunity, OpportunityWithDecisionsAdmin)
