from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .health import desk_health


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "down"])
    checked_at = serializers.DateTimeField()
    checks = serializers.DictField()


class HealthView(APIView):
    """Open to anonymous users on purpose: load balancers and operators probe it."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(responses={200: HealthSerializer, 503: HealthSerializer})
    def get(self, request):
        healthy, report = desk_health()
        return Response(report, status=200 if healthy else 503)


@login_required
def dashboard(request):
    return render(request, "dashboard.html")
