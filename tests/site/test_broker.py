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


def received(connection, queue, timeout=2):
    """The next message of `queue` as a worker receives it: through the transport's poll (BRPOP, or
    the fetch script once a message came), not `basic_get`."""
    got = []
    with connection.Consumer(connection.SimpleQueue(queue).queue, callbacks=[lambda body, message: got.append(message)],
                             accept=["json"]):
        connection.drain_events(timeout=timeout)
    return got[0]


def spy_on_commands(channel) -> list[str]:
    """The commands the channel sends from now on: on its polling connection, and its own writes."""
    sent, send, transact = [], channel.client.connection.send_command, channel.transact
    channel.client.connection.send_command = lambda *args, **kw: sent.append(args[0]) or send(*args, **kw)
    channel.transact = lambda *commands: sent.append("MULTI") or transact(*commands)
    return sent


def test_the_message_after_a_received_one_is_popped_and_recorded_unacked_in_one_step(keys):
    with connect(keys) as connection, connection.SimpleQueue(keys["queue"]) as queue:
        for n in range(3):
            queue.put({"n": n})
        channel = connection.default_channel
        first = received(connection, keys["queue"])
        assert channel._fetch_next  # a message came: the next poll runs the fetch script
        sent = spy_on_commands(channel)
        second = received(connection, keys["queue"])
        assert sent == ["EVAL"]  # popped and recorded by the script alone: no BRPOP, no MULTI/EXEC after it
        assert second.payload == {"n": 1}
        tags = {first.delivery_tag.encode(), second.delivery_tag.encode()}
        assert set(unacked(keys)[0]) == tags and set(unacked(keys)[1]) == tags
        first.ack()
        second.ack()
        assert unacked(keys) == ([], [])
        received(connection, keys["queue"]).ack()
        with pytest.raises(TimeoutError):
            received(connection, keys["queue"], timeout=0.2)  # the script found nothing: back to BRPOP
        assert not channel._fetch_next


def test_a_fetched_message_past_its_visibility_timeout_is_delivered_again_intact(keys):
    with connect(keys, visibility_timeout=0, global_keyprefix="p:") as connection, \
            connection.SimpleQueue(keys["queue"]) as queue:
        queue.put({"n": 1})
        queue.put({"n": 2, "text": 'a "quoted" é'})
        received(connection, keys["queue"]).ack()
        fetched = received(connection, keys["queue"])
        assert unacked(keys, prefix="p:") == ([fetched.delivery_tag.encode()], [fetched.delivery_tag.encode()])
        connection.default_channel.qos.restore_visible()
        again = received(connection, keys["queue"])
        assert again.payload == {"n": 2, "text": 'a "quoted" é'} and again.delivery_tag == fetched.delivery_tag
        again.ack()
        assert unacked(keys, prefix="p:") == ([], [])


def test_in_a_workers_event_loop_an_acknowledgement_goes_with_the_next_fetch(keys):
    got = []
    with connect(keys) as connection, connection.SimpleQueue(keys["queue"]) as queue, \
            connection.Consumer(queue.queue, callbacks=[lambda body, message: got.append(message)], accept=["json"]):
        def received(timeout=2):
            connection.drain_events(timeout=timeout)
            return got.pop()

        for n in range(3):
            queue.put({"n": n})
        channel = connection.default_channel
        connection.transport.polled_by_event_loop = True  # what registering with a worker's event loop sets
        first = received()
        first.ack()
        assert unacked(keys)[0] == [first.delivery_tag.encode()]  # due, written by the next poll
        sent = spy_on_commands(channel)
        second = received()
        assert sent == ["EVAL"]
        assert unacked(keys) == ([second.delivery_tag.encode()], [second.delivery_tag.encode()])
        second.ack()
        received().ack()
        with pytest.raises(TimeoutError):
            received(timeout=0.2)  # an empty fetch still writes what was due
        assert unacked(keys) == ([], [])
        assert sent[:3] == ["EVAL"] * 3 and "MULTI" not in sent  # then a BRPOP waits for more
        queue.put({"n": 3})
        received().ack()
        assert len(unacked(keys)[0]) == 1
    assert unacked(keys) == ([], [])  # closing the channel wrote the acknowledgement still due


def test_a_fetched_message_kombu_did_not_write_is_handed_on_unrecorded_as_brpop_would(keys):
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    with connect(keys) as connection, connection.SimpleQueue(keys["queue"]) as queue:
        queue.put({"n": 1})
        received(connection, keys["queue"]).ack()
        client.lpush(keys["queue"], b"not json")
        with pytest.raises(ValueError):
            received(connection, keys["queue"])  # kombu's own error for it, as after BRPOP
        assert unacked(keys) == ([], [])
        queue.put({"n": 2})
        assert received(connection, keys["queue"]).payload == {"n": 2}  # and the channel goes on
