from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from scanners.feeds import desk_feed
from scanners.feeds.base import FeedError
from trifecta_site.admin import ReadOnlyAdmin, ReadOnlyInline, SingletonAdmin

from . import portfolio as book_keeping
from .exports import TRADES
from .closing import CloseRefused, close_position
from .models import Balance, EquitySnapshot, ExecutionSettings, Fill, ManualClose, Portfolio, Position, SignalWatch, Trade

admin.site.register(ExecutionSettings, SingletonAdmin)


class FillInline(ReadOnlyInline):
    model = Fill
    fields = ("leg", "venue", "symbol", "side", "requested", "quantity", "price", "notional", "fee", "fee_rate", "evidence", "filled_ts")


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = ("opened_at", "kind", "symbol", "venues", "status", "size_usd", "fees_usd", "expected_pnl_usd", "realized_pnl", "reject_reason")
    list_filter = ("kind", "status", "portfolio")
    search_fields = ("symbol", "route")
    date_hierarchy = "opened_at"
    inlines = [FillInline]
    actions = [TRADES.admin_action()]


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = ("opened_ts", "kind", "symbol", "direction", "quantity", "entry_price", "stop_loss", "take_profit", "expiry_ts", "status", "close_reason", "realized_pnl", "unrealized_pnl")
    list_filter = ("kind", "status", "close_reason")
    search_fields = ("symbol",)
    actions = ["close_now"]

    def has_close_permission(self, request) -> bool:
        """Closing is the API's POST /api/positions/{id}/close/: the change permission on positions."""
        return request.user.has_perm("execution.change_position")

    @admin.action(description="Close the selected open positions now (asks why)", permissions=["close"])
    def close_now(self, request, queryset):
        """Asks for the reason first, then closes each open forex position as the API does."""
        positions = list(queryset.filter(status=Position.OPEN, kind="forex").order_by("id"))
        reason = request.POST.get("reason", "").strip()[:300]
        if request.POST.get("confirmed") != "yes" or not reason:
            context = {**self.admin_site.each_context(request), "title": "Close positions now?", "positions": positions,
                       "queryset": queryset, "opts": self.model._meta}
            return TemplateResponse(request, "admin/execution/position/close_confirmation.html", context)
        try:
            feed = desk_feed()
        except FeedError as exc:
            self.message_user(request, f"Nothing closed: no market data ({exc}).", messages.ERROR)
            return None
        for position in positions:
            try:
                closed = close_position(position_id=position.pk, feed=feed, by=request.user, reason=reason)
            except CloseRefused as exc:
                self.message_user(request, f"#{position.pk} not closed: {exc}", messages.WARNING)
            else:
                self.message_user(request, f"#{closed.pk} {closed.symbol} closed at {closed.exit_price}: "
                                           f"realized {closed.realized_pnl:+.2f} USD.")
        return None


@admin.register(ManualClose)
class ManualCloseAdmin(ReadOnlyAdmin):
    """Who closed which position by hand, and why; the closing fill holds the price and its age."""

    list_display = ("closed_at", "position", "closed_by", "reason", "fill")
    list_filter = ("closed_by",)
    search_fields = ("reason", "position__symbol")
    list_select_related = ("position", "closed_by", "fill")


@admin.register(SignalWatch)
class SignalWatchAdmin(ReadOnlyAdmin):
    """Signals decided but not traded, followed to their outcome; the counted ones taught the agent."""

    list_display = ("opened_ts", "kind", "symbol", "direction", "entry_price", "stop_loss", "take_profit", "status",
                    "outcome", "counted")
    list_filter = ("kind", "status", "outcome", "counted")
    search_fields = ("symbol",)
    raw_id_fields = ("opportunity",)


@admin.register(Balance)
class BalanceAdmin(ReadOnlyAdmin):
    list_display = ("portfolio", "venue", "currency", "free", "reserved", "total")
    list_filter = ("portfolio", "venue")
    search_fields = ("currency",)


@admin.register(EquitySnapshot)
class EquitySnapshotAdmin(ReadOnlyAdmin):
    list_display = ("portfolio", "minute_ts", "equity", "realized_pnl", "unrealized_pnl", "peak_equity", "drawdown_pct", "open_positions")
    list_filter = ("portfolio",)


@admin.register(Portfolio)
class PortfolioAdmin(ReadOnlyAdmin):
    """Portfolios are history; a reset (with confirmation) closes the current one and opens a fresh one."""

    list_display = ("id", "started_at", "ended_at", "starting_value", "currency", "reset_by")
    change_list_template = "admin/execution/portfolio/change_list.html"

    def get_urls(self):
        return [path("reset/", self.admin_site.admin_view(self.reset_view), name="execution_portfolio_reset"),
                *super().get_urls()]

    RESET_PERMISSIONS = ("execution.change_portfolio", "execution.add_portfolio")

    def has_reset_permission(self, request) -> bool:
        """A reset closes the current portfolio (change) and opens a fresh one (add): both
        model permissions, as admin would ask of those two edits (superusers hold them)."""
        return request.user.has_perms(self.RESET_PERMISSIONS)

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {**(extra_context or {}), "can_reset": self.has_reset_permission(request)})

    def reset_view(self, request):
        if not self.has_reset_permission(request):
            raise PermissionDenied("Resetting the portfolio needs the change and add portfolio permissions.")
        if request.method == "POST":
            fresh = book_keeping.reset_portfolio(by=request.user)
            messages.success(request, f"Portfolio reset: {fresh} is now the desk's; earlier portfolios are kept as history.")
            return redirect("admin:execution_portfolio_changelist")
        context = {**self.admin_site.each_context(request), "title": "Reset the paper portfolio?",
                   "current": book_keeping.current_portfolio(), "opts": self.model._meta}
        return TemplateResponse(request, "admin/execution/portfolio/reset_confirmation.html", context)
