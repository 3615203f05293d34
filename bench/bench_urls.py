"""The desk's URLs plus the baseline of bench-surfaces: the same page of opportunities as
plain JSON from a Django view, without DRF (no serializers, no content negotiation)."""
from django.core.serializers.json import DjangoJSONEncoder
from django.http import JsonResponse
from django.urls import include, path

from scanners.models import Opportunity


def plain_opportunities(request):
    page = max(1, int(request.GET.get("page", "1")))
    rows = Opportunity.objects.order_by("-detected_at", "rank", "-id")
    results = list(rows.values()[(page - 1) * 50:page * 50])
    return JsonResponse({"count": rows.count(), "results": results}, encoder=DjangoJSONEncoder)


urlpatterns = [path("plain/opportunities/", plain_opportunities), path("", include("trifecta_site.urls"))]
