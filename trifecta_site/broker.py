"""kombu's Redis transport (setting `CELERY_BROKER_TRANSPORT`), without its per-call client objects.

kombu builds a new `redis.Redis` client for every publish and for each of the two writes
that acks_late costs a task (the message into the unacknowledged set when it is received,
out of it on ack), then a redis-py pipeline object for those writes (a client object
costs about 0.15 ms of CPU to build, the pipeline's bookkeeping twice a raw round trip). Here a
channel keeps one client on its connection pool, and the two acks_late writes go out as
one MULTI/EXEC on a pooled connection. What is written, and so what the visibility-timeout
sweep restores, is kombu's own.

A worker that has just received a message fetches the next one with a script that pops it
and records it as unacknowledged in one step (`FETCH`): one round trip where kombu makes
two (BRPOP, then the writes), and no moment when a popped message is recorded nowhere (a
worker that died between the two lost it). The acknowledgements made since the last poll
go with it: a worker polls again as soon as its task is done, so they are written as soon
as kombu's own would be, in the same round trip. When the queues are empty it waits in
BRPOP, as kombu does (acknowledgements still due are written first), and records what
that brings as kombu does.
"""
from contextlib import contextmanager
from queue import Empty
from time import monotonic, time

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

# KEYS: the queues in the order BRPOP reads them, then the unacked index and hash; ARGV: now,
# then the delivery tags acknowledged since the last poll, which leave the unacked set first.
# The first message found is popped and written where kombu's QoS.append writes it (the
# hash holds [message, exchange, routing key] as JSON); returns its queue's place, it, and
# 1 when it was recorded (not a message kombu wrote: it is handed on as BRPOP would).
FETCH = """
for j = 2, #ARGV do
  redis.call('ZREM', KEYS[#KEYS - 1], ARGV[j])
  redis.call('HDEL', KEYS[#KEYS], ARGV[j])
end
for i = 1, #KEYS - 2 do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    local ok, message = pcall(cjson.decode, item)
    local properties = ok and type(message) == 'table' and message['properties']
    local delivery = type(properties) == 'table' and properties['delivery_info']
    local tag = type(delivery) == 'table' and properties['delivery_tag']
    if type(tag) ~= 'string' then
      return {i, item, 0}
    end
    redis.call('ZADD', KEYS[#KEYS - 1], ARGV[1], tag)
    redis.call('HSET', KEYS[#KEYS], tag, '[' .. item .. ',' ..
               cjson.encode(delivery['exchange']) .. ',' .. cjson.encode(delivery['routing_key']) .. ']')
    return {i, item, 1}
  end
end
return false
"""


class QoS(kombu_redis.QoS):
    def append(self, message, delivery_tag):
        if delivery_tag == self.channel._recorded:  # FETCH wrote it already
            self.channel._recorded = None
            virtual.QoS.append(self, message, delivery_tag)
            return
        delivery = message.delivery_info
        self.channel.transact(
            ("ZADD", self.unacked_index_key, time(), delivery_tag),
            ("HSET", self.unacked_key, delivery_tag,
             dumps([message._raw, delivery["exchange"], delivery["routing_key"]])),
        )
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag):
        if not self.channel.ack_with_next_fetch(delivery_tag):
            self.channel.transact(
                ("ZREM", self.unacked_index_key, delivery_tag),
                ("HDEL", self.unacked_key, delivery_tag),
            )
        virtual.QoS.ack(self, delivery_tag)


class Channel(kombu_redis.Channel):
    QoS = QoS
    _commands_client = None
    _fetch_next = False  # the last poll brought a message: the next one fetches with FETCH, not BRPOP
    _fetching = None  # the queues of the FETCH in flight
    _recorded = None  # the delivery tag FETCH recorded, until QoS.append sees it

    def __init__(self, *args, **kwargs):
        self._acks = []  # delivery tags acknowledged, to leave the unacked set with the next FETCH
        self._acks_sent = []  # those the FETCH in flight carries
        super().__init__(*args, **kwargs)

    def ack_with_next_fetch(self, delivery_tag) -> bool:
        """Whether the next poll, a FETCH not yet sent, will write this acknowledgement: in a
        worker's event loop, which polls again at its next turn (not a consumer that may
        acknowledge and poll no more)."""
        if self.connection.polled_by_event_loop and self._fetch_next and not self._in_poll and self.active_queues:
            self._acks.append(delivery_tag)
            return True
        return False

    def _write_acks(self):
        """Acknowledgements still due, written on their own (before a BRPOP, on close)."""
        if self._acks:
            self.transact(("ZREM", self.unacked_index_key, *self._acks), ("HDEL", self.unacked_key, *self._acks))
            self._acks = []

    def _brpop_start(self, timeout=None):
        if not self._fetch_next:
            self._write_acks()
            self._fetching = None
            return super()._brpop_start(timeout)
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        self._fetching = keys
        keys = [*keys, self.unacked_index_key, self.unacked_key]
        if self.global_keyprefix:
            keys = [self.global_keyprefix + key for key in keys]
        self._acks_sent, self._acks = self._acks, []
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        try:
            self.client.connection.send_command("EVAL", FETCH, len(keys), *keys, time(), *self._acks_sent)
        except self.connection_errors:
            self._unsent_acks()
            raise

    def _brpop_read(self, **options):
        if self._fetching is None:
            delivered = super()._brpop_read(**options)  # raises Empty when BRPOP timed out
            self._fetch_next = True
            return delivered
        queues, self._fetching = self._fetching, None
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "EVAL", **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # the next poll reconnects
                self._unsent_acks()
                raise
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()
        self._acks_sent = []
        if not reply:
            self._fetch_next = False  # nothing waiting: the next poll blocks in BRPOP
            raise Empty()
        place, item, recorded = reply
        dest = queues[place - 1].rsplit(self.sep, 1)[0]
        self._queue_cycle.rotate(dest)
        message = loads(bytes_to_str(item))
        self._recorded = message["properties"]["delivery_tag"] if recorded else None
        try:
            self.connection._deliver(message, dest)
        finally:
            self._recorded = None
        return True

    def _unsent_acks(self):
        """A FETCH whose reply never came may or may not have run: its acknowledgements are
        written again (removing a tag twice is harmless)."""
        self._acks, self._acks_sent = self._acks_sent + self._acks, []

    def close(self):
        try:
            self._write_acks()
        except self.connection_errors:  # left in the unacked set: the sweep delivers them again, as after a crash
            pass
        super().close()

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
    polled_by_event_loop = False

    def register_with_event_loop(self, connection, loop):
        super().register_with_event_loop(connection, loop)
        self.polled_by_event_loop = True
