from django.core.exceptions import ValidationError as ModelValidationError
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from trifecta_site.api import (ModelPermissionsOrReadOnly, RowSerializer, SingletonSettingsView, exact_filters, filter_param, integer_param,
                               settings_serializer)
from trifecta_site.exports import CsvExportMixin

from .agents import ForexAgent, lower_bound, posterior_mean
from .exports import DECISIONS
from .models import AgentState, Controls, Decision, Pause, RiskLimits
from .pauses import MAX_MINUTES, PauseAlreadyLifted, create_pause, lift_pause, pause_end


class DecisionSerializer(RowSerializer):
    class Meta:
        model = Decision
        fields = "__all__"


DECISION_FILTERS = [filter_param("opportunity", integer=True), filter_param("layer", [l for l, _ in Decision.LAYERS]), filter_param("verdict")]


@extend_schema_view(list=extend_schema(parameters=DECISION_FILTERS), export=extend_schema(parameters=DECISION_FILTERS))
class DecisionViewSet(CsvExportMixin, viewsets.ReadOnlyModelViewSet):
    """Every layer's verdict on every opportunity, newest first."""

    serializer_class = DecisionSerializer
    export_table = DECISIONS

    def get_queryset(self):
        rows = Decision.objects.order_by("-decided_at", "-id")
        opportunity = integer_param(self.request, "opportunity", "an opportunity id")
        if opportunity is not None:
            rows = rows.filter(opportunity_id=opportunity)
        return exact_filters(self.request, rows, {"layer": "layer", "verdict": "verdict"})


class AgentStateSerializer(RowSerializer):
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


class PauseSerializer(serializers.ModelSerializer):
    in_force = serializers.SerializerMethodField()
    created_by = serializers.StringRelatedField()
    lifted_by = serializers.StringRelatedField()

    class Meta:
        model = Pause
        fields = ["id", "scope", "target", "reason", "until", "in_force", "created_by", "created_at", "lifted_by",
                  "lifted_at"]

    def get_in_force(self, pause) -> bool:
        return pause.in_force(timezone.now())


class NewPauseSerializer(serializers.Serializer):
    """A pause for `minutes`, or `until` a moment, or (neither) until lifted; validated as in admin."""

    scope = serializers.ChoiceField(choices=[Pause.PAIR, Pause.ROUTE])
    target = serializers.CharField(max_length=300)
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    minutes = serializers.IntegerField(required=False, min_value=1, max_value=MAX_MINUTES)
    until = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        if "minutes" in attrs and "until" in attrs:
            raise serializers.ValidationError({"until": "give minutes or until, not both"})
        for name in ("target", "reason"):
            if "\x00" in attrs.get(name, ""):
                raise serializers.ValidationError({name: "must not contain NUL characters"})
        pause = Pause(scope=attrs["scope"], target=attrs["target"], reason=attrs["reason"],
                      until=pause_end(until=attrs.get("until"), minutes=attrs.get("minutes")))
        try:
            pause.full_clean(exclude=["created_by", "lifted_by", "created_at"])
        except ModelValidationError as exc:
            raise serializers.ValidationError(exc.message_dict)
        return {"pause": pause}


@extend_schema_view(
    list=extend_schema(parameters=[filter_param("scope", [Pause.PAIR, Pause.ROUTE]), filter_param("in_force", ["true", "false"])]),
    create=extend_schema(request=NewPauseSerializer, responses={201: PauseSerializer}),
    destroy=extend_schema(description="Lift the pause (the row stays, with who lifted it and when).",
                          responses={200: PauseSerializer, 409: OpenApiResponse(description="lifted before")}),
)
class PauseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin,
                   viewsets.GenericViewSet):
    """Pauses of a pair or an arbitrage route, newest first: the governor skips what one in force
    covers (`PAUSED`). POST needs `add_pause`, DELETE (lift) `delete_pause`; both are audited."""

    serializer_class = PauseSerializer
    permission_classes = [ModelPermissionsOrReadOnly]

    def get_queryset(self):
        rows = Pause.objects.select_related("created_by", "lifted_by").order_by("-created_at", "-id")
        rows = exact_filters(self.request, rows, {"scope": "scope"})
        in_force = self.request.query_params.get("in_force")
        if in_force is not None:
            if in_force not in ("true", "false"):
                raise serializers.ValidationError({"in_force": "true or false"})
            current = Q(lifted_at__isnull=True) & (Q(until__isnull=True) | Q(until__gt=timezone.now()))
            rows = rows.filter(current) if in_force == "true" else rows.exclude(current)
        return rows

    def create(self, request, *args, **kwargs):
        incoming = NewPauseSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        pause = create_pause(pause=incoming.validated_data["pause"], by=request.user)
        return Response(PauseSerializer(pause).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, *args, **kwargs):
        pause = self.get_object()
        try:
            pause = lift_pause(pause_id=pause.pk, by=request.user)
        except PauseAlreadyLifted as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(PauseSerializer(pause).data)
