from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from trifecta_site.api import DateTimeField, DecimalField, RowSerializer, SingletonSettingsView, epoch_ms_param, exact_filters, filter_param, settings_serializer, time_range
from trifecta_site.exports import CsvExportMixin

from .exports import OPPORTUNITIES
from .models import ArbitrageSettings, BinarySettings, FeedState, ForexSettings, Opportunity, ScanRun

KINDS = ["arbitrage", "forex", "binary"]
THRESHOLD_MODELS = {"arbitrage": ArbitrageSettings, "forex": ForexSettings, "binary": BinarySettings}


class DecisionTrailSerializer(serializers.Serializer):
    layer = serializers.CharField()
    verdict = serializers.CharField()
    reasons = serializers.JSONField()
    level = serializers.CharField()
    score = DecimalField(max_digits=12, decimal_places=6, allow_null=True)
    size_usd = DecimalField(max_digits=28, decimal_places=8, allow_null=True)
    figures = serializers.JSONField()
    decided_at = DateTimeField()


class OpportunitySerializer(RowSerializer):
    decisions = DecisionTrailSerializer(source="decision_trail", many=True, read_only=True)  # prefetched by the view

    class Meta:
        model = Opportunity
        exclude = ["scan_run"]


OPPORTUNITY_FILTERS = [epoch_ms_param("since", "detected at or after"), epoch_ms_param("until", "detected before"),
                       filter_param("kind", KINDS), filter_param("status", [s for s, _ in Opportunity.STATUSES]), filter_param("symbol")]


@extend_schema_view(list=extend_schema(parameters=OPPORTUNITY_FILTERS), export=extend_schema(parameters=OPPORTUNITY_FILTERS))
class OpportunityViewSet(CsvExportMixin, viewsets.ReadOnlyModelViewSet):
    """What the scanners found, newest first, each with its decision trail (why traded or not)."""

    serializer_class = OpportunitySerializer
    export_table = OPPORTUNITIES

    def get_queryset(self):
        # One query for a page's decision trails, as a plain list on each opportunity (`to_attr`:
        # no related manager built per row), in the decisions' own order.
        rows = Opportunity.objects.order_by("-detected_at", "rank", "-id").prefetch_related(
            Prefetch("decisions", to_attr="decision_trail"))
        rows = exact_filters(self.request, rows, {"kind": "kind", "status": "status", "symbol": "symbol"})
        return time_range(self.request, "detected_at", rows)


class ScanRunSerializer(RowSerializer):
    class Meta:
        model = ScanRun
        fields = "__all__"


@extend_schema_view(list=extend_schema(parameters=[filter_param("kind", KINDS)]))
class ScanRunViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ScanRunSerializer

    def get_queryset(self):
        return exact_filters(self.request, ScanRun.objects.order_by("-started_at", "-id"), {"kind": "kind"})


class FeedStateSerializer(RowSerializer):
    class Meta:
        model = FeedState
        fields = "__all__"


class FeedStateViewSet(viewsets.ReadOnlyModelViewSet):
    """Status per venue as the scan worker last saw it."""

    serializer_class = FeedStateSerializer
    queryset = FeedState.objects.order_by("feed", "venue")


class ThresholdsView(APIView):
    @extend_schema(responses={200: {"type": "object"}})
    def get(self, request):
        """Every kind's thresholds; change one at /api/thresholds/<kind>/."""
        return Response({kind: settings_serializer(model)(model.get_solo()).data
                         for kind, model in THRESHOLD_MODELS.items()})


def threshold_view(kind: str):
    model = THRESHOLD_MODELS[kind]
    return type(f"{model.__name__}View", (SingletonSettingsView,),
                {"model": model, "serializer_class": settings_serializer(model),
                 "__doc__": f"The {kind} scanner's thresholds (staff may change them; applied from the next scan)."})

