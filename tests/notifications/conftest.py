import pytest
import redis
from django.conf import settings

from .receiver import Receiver


@pytest.fixture(autouse=True)
def notify_queue():
    """The `notify` queue's messages this test added (taken out again: no worker of a later test sends them)."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    before = set(client.lrange("notify", 0, -1))

    def added():
        return [message for message in client.lrange("notify", 0, -1) if message not in before]
    yield added
    for message in added():
        client.lrem("notify", 0, message)


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running
