from celery import shared_task
from django.conf import settings

from trifecta_site.locks import exclusive

from . import services


@shared_task(ignore_result=True, expires=15)
def poll_feeds():
    """Refresh this scan worker's feed and store each venue's status."""
    with exclusive("poll_feeds", ttl_s=60) as mine:
        if mine:
            services.poll_configured_feed()


def _scan(kind: str) -> None:
    """A scan that overlaps its predecessor is skipped, not stacked."""
    with exclusive(f"scan_{kind}", ttl_s=120) as mine:
        if mine:
            services.run_configured_scan(kind)


@shared_task(ignore_result=True, expires=10)
def scan_arbitrage():
    _scan("arbitrage")


@shared_task(ignore_result=True, expires=20)
def scan_forex():
    _scan("forex")


@shared_task(ignore_result=True, expires=10)
def scan_binary():
    _scan("binary")


@shared_task(ignore_result=True)
def prune_history():
    services.prune_history(older_than_days=settings.TRIFECTA_RETENTION_DAYS)
