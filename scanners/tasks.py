from celery import shared_task

from . import services


@shared_task(ignore_result=True, expires=15)
def poll_feeds():
    """Refresh this scan worker's feed and store each venue's status."""
    with services.exclusive("poll_feeds", ttl_s=60) as mine:
        if mine:
            services.poll_configured_feed()
