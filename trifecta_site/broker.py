"""kombu's Redis transport (setting `CELERY_BROKER_TRANSPORT`), without its per-call client objects.

kombu builds a new `redis.Redis` client for every publish and for each of the two writes
that acks_late costs a task (the message into the unacknowledged set when it is received,
out of it on ack), then a redis-py pipeline object for those writes (a client object
costs about 0.15 ms of CPU to build, the pipeline's bookkeeping twice a raw round trip). Here a
channel keeps one client on its connection pool, and the two acks_late writes go out as
one MULTI/EXEC on a pooled connection. What is written, and so what the visibility-timeout
sweep restores, is kombu's own.
"""
from contextlib import contextmanager
from time import time

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps


class QoS(kombu_redis.QoS):
    def append(self, message, delivery_tag):
        delivery = message.delivery_info
        self.channel.transact(
            ("ZADD", self.unacked_index_key, time(), delivery_tag),
            ("HSET", self.unacked_key, delivery_tag,
             dumps([message._raw, delivery["exchange"], delivery["routing_key"]])),
        )
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag):
        self.channel.transact(
            ("ZREM", self.unacked_index_key, delivery_tag),
            ("HDEL", self.unacked_key, delivery_tag),
        )
        virtual.QoS.ack(self, delivery_tag)


class Channel(kombu_redis.Channel):
    QoS = QoS
    _commands_client = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        """One client per connection pool (a new pool after a reconnect gets a new client)."""
        if client:
            yield client
            return
        pool = self.pool
        if self._commands_client is None or self._commands_client.connection_pool is not pool:
            self._commands_client = self._create_client()
        yield self._commands_client

    def transact(self, *commands):
        """Run `commands` (whose first argument is a key) in one MULTI/EXEC round trip.

        The pool hands out a connection the server has dropped reconnected; a connection lost
        during the round trip raises redis-py's ConnectionError, which the worker's consumer
        answers by reconnecting, as it does for kombu's own calls.
        """
        if self.global_keyprefix:
            commands = [(name, self.global_keyprefix + key, *args) for name, key, *args in commands]
        packed = [("MULTI",), *commands, ("EXEC",)]
        connection = self.pool.get_connection()
        try:
            connection.send_packed_command(connection.pack_commands(packed))
            for _ in range(len(packed) - 1):
                connection.read_response()
            replies = connection.read_response()
        except BaseException:
            connection.disconnect()
            raise
        finally:
            self.pool.release(connection)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply


class Transport(kombu_redis.Transport):
    Channel = Channel
