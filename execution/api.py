from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from decisions.models import Decision
from decisions.risk import risk_usage
from scanners.api import KINDS
from scanners.feeds import desk_feed
from scanners.feeds.base import FeedError
from trifecta_site.clock import ms_to_datetime
from trifecta_site.api import ModelPermissionsOrReadOnly, RowSerializer, epoch_ms_param, exact_filters, filter_param, integer_param, time_range
from trifecta_site.exports import CsvExportMixin

from . import portfolio as book_keeping
from .closing import CloseRefused, close_position
from .exports import TRADES
from .models import EquitySnapshot, Fill, Position, Trade


class FillSerializer(RowSerializer):
    class Meta:
        model = Fill
        exclude = ["trade"]


class TradeSerializer(RowSerializer):
    fills = FillSerializer(source="fill_list", many=True, read_only=True)  # prefetched by the view

    class Meta:
        model = Trade
        fields = "__all__"


TRADE_FILTERS = [
    filter_param("kind", KINDS), filter_param("status", [Trade.OPEN, Trade.CLOSED, Trade.REJECTED]), filter_param("symbol"),
    epoch_ms_param("since", "opened at or after"), epoch_ms_param("until", "opened before")]


@extend_schema_view(list=extend_schema(parameters=TRADE_FILTERS), export=extend_schema(parameters=TRADE_FILTERS))
class TradeViewSet(CsvExportMixin, viewsets.ReadOnlyModelViewSet):
    """Paper trades with their fills, fees, expected vs realized edge and P&L, newest first."""

    serializer_class = TradeSerializer
    export_table = TRADES

    def get_queryset(self):
        rows = Trade.objects.order_by("-opened_at", "-id").prefetch_related(Prefetch("fills", to_attr="fill_list"))  # one query a page
        rows = exact_filters(self.request, rows, {"kind": "kind", "status": "status", "symbol": "symbol"})
        return time_range(self.request, "opened_at", rows)


class PositionSerializer(RowSerializer):
    class Meta:
        model = Position
        fields = "__all__"


class ClosePermission(ModelPermissionsOrReadOnly):
    """Closing changes the position: `change_position`, as any other write asks the model's permission."""

    perms_map = {**permissions.DjangoModelPermissions.perms_map, "POST": ["%(app_label)s.change_%(model_name)s"]}


class CloseRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="",
                                   help_text="why, for the audit")

    def validate_reason(self, value):
        if "\x00" in value:
            raise serializers.ValidationError("must not contain NUL characters")
        return value


@extend_schema_view(list=extend_schema(parameters=[filter_param("kind", ["forex", "binary"]), filter_param("status", [Position.OPEN, Position.CLOSED])]))
class PositionViewSet(viewsets.ReadOnlyModelViewSet):
    """Forex positions and binary stakes; open ones carry their unrealized P&L."""

    serializer_class = PositionSerializer

    def get_queryset(self):
        rows = Position.objects.order_by("-opened_ts", "-id")
        return exact_filters(self.request, rows, {"kind": "kind", "status": "status"})

    @extend_schema(request=CloseRequestSerializer, responses={
        200: PositionSerializer, 404: OpenApiResponse(description="no such position"),
        409: OpenApiResponse(description="closed already, a binary (settles at expiry), or no fresh price to close at")})
    @action(detail=True, methods=["post"], permission_classes=[ClosePermission])
    def close(self, request, pk=None, **kwargs):
        """Close an open forex position now at its executable price (as the monitor closes at market);
        audited with the user and `reason`. Needs `change_position`."""
        incoming = CloseRequestSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        position = self.get_object()
        try:
            feed = desk_feed()
            closed = close_position(position_id=position.pk, feed=feed, by=request.user,
                                    reason=incoming.validated_data["reason"])
        except FeedError as exc:
            return Response({"detail": f"no market data to close at: {exc}"}, status=status.HTTP_409_CONFLICT)
        except CloseRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(PositionSerializer(closed).data)


class EquitySnapshotSerializer(RowSerializer):
    class Meta:
        model = EquitySnapshot
        exclude = ["id", "portfolio"]


class PortfolioView(APIView):
    @extend_schema(parameters=[epoch_ms_param("since", "equity curve from")], responses={200: {"type": "object"}})
    def get(self, request):
        """The current portfolio and its equity curve (one point a minute; the last day unless `since`)."""
        portfolio = book_keeping.current_portfolio()
        points = EquitySnapshot.objects.filter(portfolio=portfolio)
        since = integer_param(request, "since", "an integer of epoch milliseconds")
        if since is not None:
            points = points.filter(minute_ts__gte=since).order_by("minute_ts")[:10_080]
        else:
            points = reversed(list(points.order_by("-minute_ts")[:1440]))
        return Response({
            "id": portfolio.pk, "started_at": portfolio.started_at, "currency": portfolio.currency,
            **book_keeping.desk_stats(portfolio),
            "equity_curve": EquitySnapshotSerializer(points, many=True).data,
        })


class StatsView(APIView):
    @extend_schema(responses={200: {"type": "object"}})
    def get(self, request):
        """Paper trades, portfolio value, scans, counts and P&L per kind and route, feed status."""
        return Response(book_keeping.desk_stats())


class RiskView(APIView):
    @extend_schema(responses={200: {"type": "object"}})
    def get(self, request):
        """Today's usage against each limit, the risk level and the reasons it would block now.

        "Today" is the day of the desk's latest decision (in the limits' time zone): live
        that is today; replaying a recording it is the recording's day."""
        value, _, _ = book_keeping.desk_exposure()
        latest = Decision.objects.order_by("-id").values_list("market_ts", flat=True).first()
        now = None if latest is None else ms_to_datetime(latest)  # the desk's clock: a replay's day, not today's
        return Response({"portfolio_value": str(value), **risk_usage(portfolio_value=value, now=now)})
