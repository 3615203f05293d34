"""The broker is kombu's own Redis transport, configured so that a task a worker took and never
finished (acks_late) is recorded in Redis until acknowledged and delivered again once its
visibility timeout has passed; on the real Redis of the run."""
import uuid

import pytest
import redis
from django.conf import settings
from kombu import Connection

from trifecta_site.celery import app


@pytest.fixture
def keys():
    tag = uuid.uuid4().hex
    names = {"queue": f"broker-test-{tag}", "unacked_key": f"unacked-{tag}",
             "unacked_index_key": f"unacked-index-{tag}", "unacked_mutex_key": f"unacked-mutex-{tag}"}
    yield names
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(*names.values(), *(f"p:{name}" for name in names.values()))


def connect(keys, **options):
    """A connection as the desk's workers open it (the settings' transport options), on this test's own keys."""
    transport_options = {key: value for key, value in keys.items() if key != "queue"}
    return Connection(settings.CELERY_BROKER_URL,
                      transport_options={**settings.CELERY_BROKER_TRANSPORT_OPTIONS, **transport_options, **options})


def unacked(keys, prefix=""):
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return (client.hkeys(prefix + keys["unacked_key"]),
            client.zrange(prefix + keys["unacked_index_key"], 0, -1))


def received(connection, queue, timeout=2):
    """The next message of `queue` as a worker receives it: through the transport's poll (BRPOP), not `basic_get`."""
    got = []
    with connection.Consumer(connection.SimpleQueue(queue).queue, callbacks=[lambda body, message: got.append(message)],
                             accept=["json"]):
        connection.drain_events(timeout=timeout)
    return got[0]


def test_the_desk_uses_kombus_own_redis_transport_with_late_acknowledgement():
    from kombu.transport.redis import Channel

    assert not getattr(settings, "CELERY_BROKER_TRANSPORT", None)
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    options = app.conf.broker_transport_options
    assert options["unacked_restore_interval"] == settings.CELERY_RESTORE_INTERVAL_S
    assert options["unacked_restore_throttle"] == 1  # the interval alone says how often the sweep runs
    with Connection(app.conf.broker_url, transport_options=options) as connection:
        channel = connection.default_channel
        assert type(channel) is Channel
        assert (channel.visibility_timeout, channel.unacked_restore_interval, channel.unacked_restore_throttle) == (
            options["visibility_timeout"], options["unacked_restore_interval"], 1)


def test_a_received_message_is_in_the_unacked_set_until_acknowledged(keys):
    with connect(keys) as connection, connection.SimpleQueue(keys["queue"]) as queue:
        queue.put({"n": 1})
        message = received(connection, keys["queue"])
        tag = message.delivery_tag.encode()
        assert unacked(keys) == ([tag], [tag])
        message.ack()
        assert unacked(keys) == ([], [])


def test_a_message_of_a_worker_that_died_is_delivered_again_after_its_visibility_timeout(keys):
    """The worker's connection goes without closing its channel (as after SIGKILL: nothing restores
    the message on the way out); another worker's sweep finds it past the timeout and queues it again."""
    dead = connect(keys, visibility_timeout=60)
    try:
        with dead.SimpleQueue(keys["queue"]) as queue:
            queue.put({"n": 2, "text": 'a "quoted" é'})
        taken = received(dead, keys["queue"])
        dead.default_channel.client.connection_pool.disconnect()  # gone, its message still unacknowledged
        assert unacked(keys)[0] == [taken.delivery_tag.encode()]
        with connect(keys, visibility_timeout=60) as connection:
            channel = connection.default_channel

            def sweep():  # what a worker's event loop runs every `unacked_restore_interval` seconds
                channel.qos.restore_visible(num=channel.unacked_restore_limit, interval=channel.unacked_restore_throttle)

            sweep()  # not yet past the timeout
            assert unacked(keys)[0] == [taken.delivery_tag.encode()]
            redis.Redis.from_url(settings.CELERY_BROKER_URL).zadd(keys["unacked_index_key"], {taken.delivery_tag: 0})
            sweep()  # received long ago: past the timeout
            assert unacked(keys) == ([], [])
            again = received(connection, keys["queue"])
            assert again.payload == {"n": 2, "text": 'a "quoted" é'} and again.delivery_tag == taken.delivery_tag
            again.ack()
            assert unacked(keys) == ([], [])
    finally:
        dead.release()


def test_a_consumer_that_closes_with_unacknowledged_messages_puts_them_back_at_once(keys):
    with connect(keys) as connection, connection.SimpleQueue(keys["queue"]) as queue:
        queue.put({"n": 3})
        received(connection, keys["queue"])
    assert unacked(keys) == ([], [])
    with connect(keys) as connection:
        again = received(connection, keys["queue"])
        assert again.payload == {"n": 3}
        again.ack()


def test_the_global_key_prefix_applies_to_the_unacked_set(keys):
    with connect(keys, global_keyprefix="p:") as connection, connection.SimpleQueue(keys["queue"]) as queue:
        queue.put({"n": 4})
        message = received(connection, keys["queue"])
        tag = message.delivery_tag.encode()
        assert unacked(keys, prefix="p:") == ([tag], [tag])
        assert unacked(keys) == ([], [])
        message.ack()
        assert unacked(keys, prefix="p:") == ([], [])
