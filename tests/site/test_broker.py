"""The desk's Redis transport keeps kombu's acks_late bookkeeping, on the real Redis of the run."""
import uuid

import pytest
import redis
from django.conf import settings
from kombu import Connection

from trifecta_site import broker


@pytest.fixture
def keys():
    tag = uuid.uuid4().hex
    names = {"queue": f"broker-test-{tag}", "unacked_key": f"unacked-{tag}",
             "unacked_index_key": f"unacked-index-{tag}", "unacked_mutex_key": f"unacked-mutex-{tag}"}
    yield names
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(*names.values(), *(f"p:{name}" for name in names.values()))


def connect(keys, **options):
    transport_options = {key: value for key, value in keys.items() if key != "queue"}
    return Connection(settings.CELERY_BROKER_URL, transport=settings.CELERY_BROKER_TRANSPORT,
                      transport_options={**transport_options, **options})


def unacked(keys, prefix=""):
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return (client.hkeys(prefix + keys["unacked_key"]),
            client.zrange(prefix + keys["unacked_index_key"], 0, -1))


def test_the_desk_publishes_and_consumes_through_its_own_transport():
    with Connection(settings.CELERY_BROKER_URL, transport=settings.CELERY_BROKER_TRANSPORT) as connection:
        assert isinstance(connection.default_channel, broker.Channel)
        with connection.default_channel.conn_or_acquire() as first, \
                connection.default_channel.conn_or_acquire() as second:
            assert first is second


def test_a_received_message_is_in_the_unacked_set_until_acknowledged(keys):
    with connect(keys) as connection, connection.SimpleQueue(keys["queue"]) as queue:
        queue.put({"n": 1})
        message = queue.get(timeout=2)
        tag = message.delivery_tag.encode()
        assert unacked(keys) == ([tag], [tag])
        message.ack()
        assert unacked(keys) == ([], [])


def test_an_unacknowledged_message_past_its_visibility_timeout_is_delivered_again(keys):
    with connect(keys, visibility_timeout=0) as connection, connection.SimpleQueue(keys["queue"]) as queue:
        queue.put({"n": 2})
        queue.get(timeout=2)
        connection.default_channel.qos.restore_visible()
        assert unacked(keys) == ([], [])
        again = queue.get(timeout=2)
        assert again.payload == {"n": 2}
        again.ack()


def test_an_acknowledgement_survives_a_connection_the_server_dropped(keys):
    with connect(keys) as connection, connection.SimpleQueue(keys["queue"]) as queue:
        queue.put({"n": 3})
        message = queue.get(timeout=2)
        channel = connection.default_channel
        pooled = channel.pool.get_connection()
        pooled.send_command("CLIENT", "ID")
        client_id = pooled.read_response()
        channel.pool.release(pooled)
        redis.Redis.from_url(settings.CELERY_BROKER_URL).client_kill_filter(_id=client_id)
        message.ack()
        assert unacked(keys) == ([], [])


def test_the_global_key_prefix_applies_to_the_unacked_set(keys):
    with connect(keys, global_keyprefix="p:") as connection, connection.SimpleQueue(keys["queue"]) as queue:
        queue.put({"n": 4})
        message = queue.get(timeout=2)
        tag = message.delivery_tag.encode()
        assert unacked(keys, prefix="p:") == ([tag], [tag])
        assert unacked(keys) == ([], [])
        message.ack()
        assert unacked(keys, prefix="p:") == ([], [])
