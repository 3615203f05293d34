from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from trifecta_site.api import SingletonSettingsView, exact_filters, filter_param, integer_param, settings_serializer

from .agents import ForexAgent, lower_bound, posterior_mean
from .models import AgentState, Controls, Decision, RiskLimits


class DecisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Decision
        fields = "__all__"


@extend_schema_view(list=extend_schema(parameters=[filter_param("opportunity", integer=True), filter_param("layer", [l for l, _ in Decision.LAYERS]), filter_param("verdict")]))
class DecisionViewSet(viewsets.ReadOnlyModelViewSet):
    """Every layer's verdict on every opportunity, newest first."""

    serializer_class = DecisionSerializer

    def get_queryset(self):
        rows = Decision.objects.order_by("-decided_at", "-id")
        opportunity = integer_param(self.request, "opportunity", "an opportunity id")
        if opportunity is not None:
            rows = rows.filter(opportunity_id=opportunity)
        return exact_filters(self.request, rows, {"layer": "layer", "verdict": "verdict"})


class AgentStateSerializer(serializers.ModelSerializer):
    posterior_mean = serializers.SerializerMethodField()
    lower_bound = serializers.SerializerMethodField()

    class Meta:
        model = AgentState
        fields = "__all__"

    def get_posterior_mean(self, state) -> str:
        return str(posterior_mean(state.wins, state.losses).quantize(posterior_mean(0, 0) / 10000))

    def get_lower_bound(self, state) -> float:
        return round(lower_bound(state.wins, state.losses), 4)


@extend_schema_view(list=extend_schema(parameters=[filter_param("agent", [AgentState.ARBITRAGE, AgentState.FOREX, AgentState.BINARY])]))
class AgentStateViewSet(viewsets.ReadOnlyModelViewSet):
    """What each agent has learned, per key, with the posterior mean and its 10th percentile."""

    serializer_class = AgentStateSerializer

    def get_queryset(self):
        return exact_filters(self.request, AgentState.objects.order_by("agent", "key"), {"agent": "agent"})


class BestPairsView(APIView):
    @extend_schema(responses={200: {"type": "object"}})
    def get(self, request):
        """The forex agent's pairs ranked by the lower bound of their realized accuracy."""
        return Response({"best_pairs": [{"pair": pair, "lower_bound": round(score, 4)}
                                        for pair, score in ForexAgent().get_best_pairs(10)]})


class ControlsView(SingletonSettingsView):
    """Display-only or auto-execute, the kill switch and the per-kind switches (staff change them)."""

    model = Controls
    serializer_class = settings_serializer(Controls)


class LimitsView(SingletonSettingsView):
    """The risk manager's limits (staff change them; applied from the next decision)."""

    model = RiskLimits
    serializer_class = settings_serializer(RiskLimits)
