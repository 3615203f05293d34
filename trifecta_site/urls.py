from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from decisions import api as decisions_api
from execution import api as execution_api
from scanners import api as scanners_api

from . import views

router = DefaultRouter()
router.register("opportunities", scanners_api.OpportunityViewSet, basename="opportunity")
router.register("scans", scanners_api.ScanRunViewSet, basename="scan")
router.register("feeds", scanners_api.FeedStateViewSet, basename="feed")
router.register("decisions", decisions_api.DecisionViewSet, basename="decision")
router.register("agents", decisions_api.AgentStateViewSet, basename="agent")
router.register("pauses", decisions_api.PauseViewSet, basename="pause")
router.register("trades", execution_api.TradeViewSet, basename="trade")
router.register("positions", execution_api.PositionViewSet, basename="position")

api = [
    path("portfolio/", execution_api.PortfolioView.as_view(), name="portfolio"),
    path("stats/", execution_api.StatsView.as_view(), name="stats"),
    path("risk/", execution_api.RiskView.as_view(), name="risk"),
    path("best-pairs/", decisions_api.BestPairsView.as_view(), name="best-pairs"),
    path("controls/", decisions_api.ControlsView.as_view(), name="controls"),
    path("limits/", decisions_api.LimitsView.as_view(), name="limits"),
    path("thresholds/", scanners_api.ThresholdsView.as_view(), name="thresholds"),
    *(path(f"thresholds/{kind}/", scanners_api.threshold_view(kind).as_view(), name=f"thresholds-{kind}")
      for kind in scanners_api.THRESHOLD_MODELS),
    path("", include(router.urls)),
]

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("dashboard/state/", views.dashboard_state, name="dashboard-state"),
    path("dashboard/prices/", views.dashboard_prices, name="dashboard-prices"),
    path("sweeps/", include("sweeps.urls")),
    path("admin/", admin.site.urls),
    path("api/health/", views.HealthView.as_view(), name="health"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),  # its script not inline: the CSP allows none
    path("api/", include(api)),
]
