"""The Redis connection registry: the connections of many gateway nodes sharing one Redis.

Every key carries the namespace's hash tag, so on Redis Cluster all of them live in one slot and every
script's keys (declared, or reached through the tag) share it::

    {portway}:ws:conn:ID       hash    n node, c connectedAt, i sourceIp, a lastActiveAt (ms), u userAgent
                                       (absent: none)
    {portway}:ws:node:NODE     set     the ids of NODE's connections
    {portway}:ws:nodes         set     the nodes that heart-beat: the janitors' worklist
    {portway}:ws:alive:NODE    string  NODE's heart-beat: PX heartbeat_ttl_s, set every heartbeat_interval_s
    {portway}:ws:reaped:NODE   string  left (PX 1 h) by the janitor that reaped NODE, for NODE to find should
                                       it come back: it then closes its sockets instead of serving the dead

Every write is one Lua script (a connection's hash and its node's set change together). A send or close
for a connection of another node is one script call that looks the owner up, checks its heart-beat and
PUBLISHes the request to the owner's channel, ``{portway}:ws:inbox:NODE``; the owner performs it in the
connection's lane and PUBLISHes the outcome to the caller's own channel with the request's correlation id.

**Pub/sub, not streams.** A send needs an answer now, DELIVERED or GONE, or an error within a bound; it must
never be performed later than its caller was told it failed. Pub/sub gives that: at most once, nothing
left behind for a node that is not listening, and PUBLISH's receiver count tells at once that the owner
is not subscribed (0: reconnecting, or dead if its heart-beat is gone too). A stream per node would keep
requests for a dead or reconnecting node (to be trimmed, and replayed late: a message the caller was told
failed, delivered after all), and cost a consumer position per node, for durability this API does not
want. Channels are classic (SUBSCRIBE/PUBLISH), not slot-bound: on Redis Cluster a PUBLISH is broadcast
over the cluster bus, which works from any node; their names carry the hash tag, so SSUBSCRIBE/SPUBLISH
(sharded pub/sub, Redis 7) would keep them in the namespace's shard without renaming anything.

**Order and bounds.** Requests from one node go out in one queue, in batches, each batch one script call
whose PUBLISHes run in order; the owner reads them in order from its one subscription and performs each
connection's in a lane of its own. So sends to one connection from one node arrive in call order. At most
``max_in_flight_bytes`` of requests are out and unanswered at a time (Redis disconnects a subscriber that
falls behind by its ``client-output-buffer-limit pubsub``, 32 MB by default). A remote send answers, or
raises :class:`~portway.state.store.StoreUnavailable`, within the store deadline plus ``reply_timeout_s``
to go out, ``reply_timeout_s`` more for the owner's answer, and one more Redis call when the owner was
silent (is it dead? then reap it: GONE; else :class:`~portway.websocket.registry.NodeUnreachable`).
PUBLISH reaching nobody while the owner's heart-beat lives (it is resubscribing) is NodeUnreachable at
once: never retried, so that nothing is delivered after its caller was told it failed, or out of order.

**Staleness.** :meth:`RedisRegistry.touch` is buffered and written once per heart-beat interval (one script
call for all): other nodes see ``lastActiveAt`` at most ``heartbeat_interval_s`` (plus a round trip) late,
longer only while Redis is unreachable; the connection's own node answers :meth:`~RedisRegistry.get` from
memory, exactly.

**Outages.** A call that cannot reach Redis raises :class:`~portway.state.store.StoreUnavailable` within the
store's bounds (``connect_timeout_s``, ``timeout_s``), and the outage is logged once (a
:class:`~portway.state.outage.StoreOutage`). Meanwhile sends to this node's own connections still work;
sends to other nodes' raise. The subscription reconnects and resubscribes by itself (with back-off); the
heart-beat finds out when Redis lost its data (a restart without persistence, a failover) and writes this
node's connections again; adds and removes Redis could not take are written once it is back. For a
heart-beat TTL after an outage of its own, a node answers a connection it cannot find with
NodeUnreachable, not GONE: its owner may not have written it again yet.

Measured on the development machine (2 cores shared with Redis and other work, load about 3; local Redis
7.0): a cross-node send answers DELIVERED in a median of 0.4-0.6 ms for small messages (1000 sequential
sends; both nodes in one process, or each in its own), 1.1-1.8 ms for 128 KB; redis-py's bare pub/sub
ping-pong takes 0.28 ms there. Concurrent sends share script calls (5000 concurrent small sends: about 20
calls, 10,000-16,000 sends/s). :class:`~portway.websocket.registry.MemoryRegistry`: 15 us.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from portway.state.outage import StoreOutage
from portway.state.redis import (
    _UNAVAILABLE_REPLIES,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REDIS_URL,
    DEFAULT_TIMEOUT_S,
    _redact,
)
from portway.state.store import StoreError, StoreUnavailable
from portway.websocket.registry import (
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_HEARTBEAT_TTL_S,
    DEFAULT_JANITOR_INTERVAL_S,
    DEFAULT_REPLY_TIMEOUT_S,
    ERR_NODE_NOT_LISTENING,
    ERR_NODE_SILENT,
    ERR_NODE_SUSPECT,
    ERR_REMOTE_FAILED,
    ERR_STOPPED,
    OP_CLOSE,
    ConnectionInfo,
    Delivery,
    NodeCore,
    NodeUnreachable,
    OnOrphaned,
    cancel_and_wait,
    log,
)

__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_MAX_IN_FLIGHT_BYTES", "RedisRegistry"]

DEFAULT_MAX_BATCH = 256  # requests per script call
DEFAULT_MAX_IN_FLIGHT_BYTES = 4 * 1024 * 1024  # requests sent and not yet answered, per node
MAX_BATCH_BYTES = 1024 * 1024  # … and their bytes (a batch holds at least one request)
CHUNK = 500  # connections per script call when writing or removing many
TOMBSTONE_TTL_MS = 3_600_000
RECONNECT_FIRST_S = 0.05
RECONNECT_MAX_S = 2.0

ERR_UNAVAILABLE = "Redis at {where} cannot be reached: {error}"
ERR_FAILED = "Redis at {where} failed: {error}"
ERR_NAMESPACE = "a connection registry namespace is not empty and holds no '{{' or '}}': {namespace!r}"
ERR_SILENT_SUBSCRIPTION = "the subscription went silent"
ERR_SETTLING = (
    "connection {connection_id!r} is not registered, but Redis was unreachable moments ago: its node may not"
    " have registered it again yet"
)
ERR_BACKLOG = "node {node!r} could not send within {seconds:g} s (too many messages in flight)"

# Messages on a node's channel. A request: kind b"Q", the operation, the correlation id, the lengths of the
# caller's node name and of the connection id, then those two and the payload (binary-safe, as it is).
# A reply: kind b"R", the correlation id, the outcome.
_REQUEST = struct.Struct(">cBQHH")
_REPLY = struct.Struct(">cQB")
OUT_DELIVERED, OUT_GONE, OUT_FAILED = 0, 1, 2

# What the send script answers for each request besides a receiver count.
NO_CONNECTION = -1
OWNER_DEAD = -2

# KEYS: the connections' hashes, one per request. ARGV[1]: the key prefix; ARGV[i + 1]: request i.
# Answer: for each request, a code (receivers of the PUBLISH, NO_CONNECTION or OWNER_DEAD) and the owner.
_SEND_LUA = """
local prefix, out = ARGV[1], {}
for i = 1, #KEYS do
  local node = redis.call('HGET', KEYS[i], 'n')
  if not node then
    out[#out + 1] = -1
    out[#out + 1] = ''
  elseif redis.call('EXISTS', prefix .. 'alive:' .. node) == 0 then
    out[#out + 1] = -2
    out[#out + 1] = node
  else
    out[#out + 1] = redis.call('PUBLISH', prefix .. 'inbox:' .. node, ARGV[i + 1])
    out[#out + 1] = node
  end
end
return out
"""

# KEYS[1]: the node's set; KEYS[1 + i]: connection i's hash. ARGV: for each connection its id, node,
# connectedAt, sourceIp, lastActiveAt, '1' with a user agent / '0' without, the user agent.
_ADD_LUA = """
for i = 2, #KEYS do
  local a = (i - 2) * 7
  redis.call('DEL', KEYS[i])
  redis.call('HSET', KEYS[i], 'n', ARGV[a + 2], 'c', ARGV[a + 3], 'i', ARGV[a + 4], 'a', ARGV[a + 5])
  if ARGV[a + 6] == '1' then
    redis.call('HSET', KEYS[i], 'u', ARGV[a + 7])
  end
  redis.call('SADD', KEYS[1], ARGV[a + 1])
end
return #KEYS - 1
"""

# KEYS: the connections' hashes. ARGV[1]: the key prefix; ARGV[1 + i]: connection i's id.
_REMOVE_LUA = """
local removed = 0
for i = 1, #KEYS do
  local node = redis.call('HGET', KEYS[i], 'n')
  if node then
    redis.call('DEL', KEYS[i])
    redis.call('SREM', ARGV[1] .. 'node:' .. node, ARGV[i + 1])
    removed = removed + 1
  end
end
return removed
"""

# KEYS: the connections' hashes; ARGV[i]: connection i's lastActiveAt. Only existing hashes, only forward.
_TOUCH_LUA = """
for i = 1, #KEYS do
  local at = redis.call('HGET', KEYS[i], 'a')
  if at and tonumber(at) < tonumber(ARGV[i]) then
    redis.call('HSET', KEYS[i], 'a', ARGV[i])
  end
end
return 0
"""

# KEYS: the node's heart-beat, the nodes set, the node's tombstone. ARGV: node, TTL (ms).
# Answer: 0 alive, 1 the heart-beat was gone (Redis lost it, or it expired), 2 the node was reaped.
_BEAT_LUA = """
local state = 0
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('DEL', KEYS[3])
  state = 2
elseif redis.call('EXISTS', KEYS[1]) == 0 then
  state = 1
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return state
"""

# KEYS[1]: the nodes set. ARGV: key prefix, most connections to take, tombstone TTL (ms), the caller's node
# (never reaped), then the candidate nodes (none: every node in the set). Answer: {1 if more is left / 0,
# then for each connection removed: id, node, connectedAt, sourceIp, lastActiveAt, has user agent, agent}.
_REAP_LUA = """
local prefix, limit = ARGV[1], tonumber(ARGV[2])
local candidates = {}
if #ARGV > 4 then
  for i = 5, #ARGV do candidates[#candidates + 1] = ARGV[i] end
else
  candidates = redis.call('SMEMBERS', KEYS[1])
end
local out = {0}
for _, node in ipairs(candidates) do
  if node ~= ARGV[4] and redis.call('EXISTS', prefix .. 'alive:' .. node) == 0 then
    if limit <= 0 then
      out[1] = 1
      break
    end
    local set = prefix .. 'node:' .. node
    redis.call('SET', prefix .. 'reaped:' .. node, '1', 'PX', ARGV[3])
    for _, id in ipairs(redis.call('SPOP', set, limit)) do
      local key = prefix .. 'conn:' .. id
      local f = redis.call('HMGET', key, 'n', 'c', 'i', 'a', 'u')
      if f[1] == node then
        redis.call('DEL', key)
        out[#out + 1] = id
        out[#out + 1] = node
        out[#out + 1] = f[2]
        out[#out + 1] = f[3]
        out[#out + 1] = f[4]
        if f[5] then
          out[#out + 1] = 1
          out[#out + 1] = f[5]
        else
          out[#out + 1] = 0
          out[#out + 1] = ''
        end
        limit = limit - 1
      end
    end
    if redis.call('SCARD', set) == 0 then
      redis.call('SREM', KEYS[1], node)
    else
      out[1] = 1
    end
  end
end
return out
"""

# KEYS: the nodes set, the node's heart-beat, the node's set. ARGV: key prefix, most connections, node.
# Answer: 1 while connections are left, 0 once the node is gone.
_LEAVE_LUA = """
for _, id in ipairs(redis.call('SPOP', KEYS[3], tonumber(ARGV[2]))) do
  local key = ARGV[1] .. 'conn:' .. id
  if redis.call('HGET', key, 'n') == ARGV[3] then
    redis.call('DEL', key)
  end
end
if redis.call('SCARD', KEYS[3]) > 0 then
  return 1
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[1], ARGV[3])
return 0
"""


class _Outgoing:
    """A request waiting to go out, or gone out (``sent``: its bytes count against the window)."""

    __slots__ = ("key", "message", "routed", "sent")

    def __init__(self, key: str, message: bytes, routed: asyncio.Future[tuple[int, str]]) -> None:
        self.key = key
        self.message = message
        self.routed = routed  # the send script's answer for it: (code, owner)
        self.sent = False


class RedisRegistry(NodeCore):
    """A :class:`~portway.websocket.registry.ConnectionRegistry` on Redis, shared by many gateway nodes.

    >>> registry = RedisRegistry.from_url("redis://127.0.0.1:6379/0", namespace="shop", node="a")
    >>> registry.namespace, registry.node
    ('shop', 'a')

    Nothing connects until :meth:`start`. Intervals: every ``heartbeat_interval_s`` the node refreshes its
    heart-beat (TTL ``heartbeat_ttl_s``) and writes buffered ``touch``\\ es; every ``janitor_interval_s`` it
    reaps dead nodes. A dead node's connections are gone for the cluster after at most
    ``heartbeat_ttl_s + janitor_interval_s`` (sooner when a send runs into one of them).
    """

    name = "redis"

    def __init__(
        self,
        url: str = DEFAULT_REDIS_URL,
        *,
        namespace: str = "portway",
        node: str | None = None,
        on_orphaned: OnOrphaned | None = None,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        heartbeat_ttl_s: float = DEFAULT_HEARTBEAT_TTL_S,
        janitor_interval_s: float = DEFAULT_JANITOR_INTERVAL_S,
        reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_in_flight_bytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES,
        outage: StoreOutage | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not namespace or "{" in namespace or "}" in namespace:
            raise ValueError(ERR_NAMESPACE.format(namespace=namespace))
        super().__init__(
            node,
            on_orphaned,
            heartbeat_interval_s,
            heartbeat_ttl_s,
            janitor_interval_s,
            reply_timeout_s,
            clock,
        )
        self.namespace = namespace
        self.max_batch = max_batch
        self.max_in_flight_bytes = max_in_flight_bytes
        self.outage = outage or StoreOutage(
            "websocket connections", "@connections calls for other nodes' connections fail"
        )
        self._where = _redact(url)
        self._timeout_s = timeout_s
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=connect_timeout_s + timeout_s,  # waiting for a free connection
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # a retried send could be delivered twice; callers decide
            decode_responses=False,
        )
        self._redis = Redis(connection_pool=self._pool)
        self._deadline_s = 2 * connect_timeout_s + 3 * timeout_s
        prefix = "{" + namespace + "}:ws:"
        self._prefix = prefix
        self._conn_prefix = prefix + "conn:"
        self._nodes_key = prefix + "nodes"
        self._node_key = prefix + "node:" + self.node
        self._alive_key = prefix + "alive:" + self.node
        self._tombstone_key = prefix + "reaped:" + self.node
        self._inbox_prefix = (prefix + "inbox:").encode()
        self._node_bytes = self.node.encode()
        self._inbox = self._inbox_prefix + self._node_bytes
        self._send_script = self._script(_SEND_LUA)
        self._add_script = self._script(_ADD_LUA)
        self._remove_script = self._script(_REMOVE_LUA)
        self._touch_script = self._script(_TOUCH_LUA)
        self._beat_script = self._script(_BEAT_LUA)
        self._reap_script = self._script(_REAP_LUA)
        self._leave_script = self._script(_LEAVE_LUA)
        self._outbox: deque[_Outgoing] = deque()
        self._in_flight = 0  # bytes of requests sent and not yet answered
        self._window = asyncio.Event()  # set when _in_flight drops below the bound
        self._sender: asyncio.Task[None] | None = None
        self._replies: list[tuple[bytes, bytes]] = []
        self._replier: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[int]] = {}  # correlation id -> the reply's outcome
        self._ids = itertools.count(1)
        self._active: dict[str, int] = {}  # this node's connections' lastActiveAt, when touched
        self._touched: dict[str, int] = {}  # lastActiveAt not yet written
        self._unsynced: set[str] = set()  # this node's connections Redis may not hold
        self._unremoved: set[str] = set()  # removed here, perhaps not in Redis
        self._listened = False
        self._had_outage = False
        self._closed = False
        self.script_calls = 0  # send script invocations so far: how well the batching works

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "portway",
        node: str | None = None,
        on_orphaned: OnOrphaned | None = None,
        **options: Any,
    ) -> RedisRegistry:
        """A registry on ``redis://``, ``rediss://`` or ``unix://`` ``url`` (redis-py's URL forms)."""
        return cls(url, namespace=namespace, node=node, on_orphaned=on_orphaned, **options)

    def _script(self, text: str) -> AsyncScript:
        return self._redis.register_script(text)

    # -- connections --------------------------------------------------------------------------------------

    async def add(self, info: ConnectionInfo) -> None:
        """Register a connection of this node. When Redis cannot take it (StoreUnavailable), the connection
        still counts as this node's and is written once Redis is back: call :meth:`remove` to drop it."""
        self._check_add(info)
        connection_id = info.connection_id
        self._mine[connection_id] = info
        self._unremoved.discard(connection_id)
        try:
            await self._write([info])
        except StoreError:
            self._unsynced.add(connection_id)
            raise

    async def touch(self, connection_id: str, now_ms: int) -> None:
        if connection_id in self._mine and now_ms > self._active.get(connection_id, 0):
            self._active[connection_id] = now_ms
        if now_ms > self._touched.get(connection_id, 0):
            self._touched[connection_id] = now_ms

    async def remove(self, connection_id: str) -> None:
        self._mine.pop(connection_id, None)
        self._active.pop(connection_id, None)
        self._touched.pop(connection_id, None)
        self._unsynced.discard(connection_id)
        try:
            await self._delete([connection_id])
        except StoreError:
            self._unremoved.add(connection_id)

    async def get(self, connection_id: str) -> ConnectionInfo | None:
        if connection_id in self._mine:
            return self._current(connection_id)
        fields = ["n", "c", "i", "a", "u"]
        raw = await self._call(self._redis.hmget(self._conn_prefix + connection_id, fields))
        node, connected_at, source_ip, last_active_at, user_agent = raw
        if node is None:
            return None
        return ConnectionInfo(
            connection_id,
            node.decode(),
            int(connected_at),
            source_ip.decode(),
            user_agent.decode() if user_agent is not None else None,
            int(last_active_at),
        )

    def _forget(self, connection_ids: Iterable[str]) -> None:
        for connection_id in connection_ids:
            self._mine.pop(connection_id, None)
            self._active.pop(connection_id, None)
            self._unsynced.discard(connection_id)

    def _current(self, connection_id: str) -> ConnectionInfo:
        info = self._mine[connection_id]
        active = self._active.get(connection_id, 0)
        return info if active <= info.last_active_at_ms else _with_last_active(info, active)

    async def _write(self, infos: list[ConnectionInfo]) -> None:
        keys = [self._node_key]
        args: list[str | int] = []
        for info in infos:
            keys.append(self._conn_prefix + info.connection_id)
            agent = info.user_agent
            args += (
                info.connection_id,
                info.node,
                info.connected_at_ms,
                info.source_ip,
                info.last_active_at_ms,
                "0" if agent is None else "1",
                agent or "",
            )
        await self._call(self._add_script(keys=keys, args=args))

    async def _delete(self, connection_ids: list[str]) -> None:
        keys = [self._conn_prefix + connection_id for connection_id in connection_ids]
        await self._call(self._remove_script(keys=keys, args=[self._prefix, *connection_ids]))

    # -- reaching other nodes' connections ------------------------------------------------------------

    async def _remote(self, connection_id: str, op: int, data: bytes) -> Delivery:
        if self._closed:
            raise StoreUnavailable(ERR_STOPPED.format(node=self.node))
        loop = asyncio.get_running_loop()
        correlation = next(self._ids)
        target = connection_id.encode()
        header = _REQUEST.pack(b"Q", op, correlation, len(self._node_bytes), len(target))
        routed: asyncio.Future[tuple[int, str]] = loop.create_future()
        reply: asyncio.Future[int] = loop.create_future()
        self._waiting[correlation] = reply
        item = _Outgoing(
            self._conn_prefix + connection_id, b"".join((header, self._node_bytes, target, data)), routed
        )
        self._outbox.append(item)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_requests())
        try:
            try:
                async with asyncio.timeout(self._deadline_s + self.reply_timeout_s):
                    code, owner = await routed
            except TimeoutError:  # still queued behind a full window (sent ones are answered by the deadline)
                raise StoreUnavailable(
                    ERR_BACKLOG.format(node=self.node, seconds=self._deadline_s + self.reply_timeout_s)
                ) from None
            if code == NO_CONNECTION:
                if self._had_outage and not self._may_reap():  # Redis may have lost it: not GONE yet
                    raise NodeUnreachable(ERR_SETTLING.format(connection_id=connection_id))
                return Delivery.GONE
            if code == OWNER_DEAD:
                return await self._owner_dead(owner)
            if code == 0:
                raise NodeUnreachable(ERR_NODE_NOT_LISTENING.format(owner=owner))
            try:
                async with asyncio.timeout(self.reply_timeout_s):
                    outcome = await reply
            except TimeoutError:
                if not await self._call(self._redis.exists(self._prefix + "alive:" + owner)):
                    return await self._owner_dead(owner)
                raise NodeUnreachable(
                    ERR_NODE_SILENT.format(owner=owner, seconds=self.reply_timeout_s)
                ) from None
        finally:
            self._waiting.pop(correlation, None)
            if item.sent:
                self._in_flight -= len(item.message)
                if self._in_flight < self.max_in_flight_bytes:
                    self._window.set()
        if outcome == OUT_DELIVERED:
            return Delivery.DELIVERED
        if outcome == OUT_GONE:
            return Delivery.GONE
        raise StoreError(ERR_REMOTE_FAILED.format(owner=owner))

    async def _owner_dead(self, owner: str) -> Delivery:
        """The connection's node is dead: reap it (its connections go to ``on_orphaned``), answer GONE."""
        if not self._may_reap():
            raise NodeUnreachable(ERR_NODE_SUSPECT.format(owner=owner))
        self._orphaned(await self._reap([owner]))
        return Delivery.GONE

    async def _send_requests(self) -> None:
        """Send the queue in order, one script call at a time (what queues meanwhile goes in the next),
        keeping at most ``max_in_flight_bytes`` sent and unanswered: Redis disconnects a subscriber whose
        output buffer grows past its ``client-output-buffer-limit pubsub`` (32 MB by default), so a flood
        of sends waits here instead of costing the owner its subscription."""
        outbox = self._outbox
        try:
            while outbox:
                if self._in_flight >= self.max_in_flight_bytes:
                    self._window.clear()
                    await self._window.wait()
                    continue
                batch: list[_Outgoing] = []
                size = 0
                while outbox and len(batch) < self.max_batch:
                    item = outbox[0]
                    if item.routed.done():  # its caller gave up waiting
                        outbox.popleft()
                        continue
                    length = len(item.message)
                    if batch and (
                        size + length > MAX_BATCH_BYTES
                        or self._in_flight + size + length > self.max_in_flight_bytes
                    ):
                        break
                    outbox.popleft()
                    item.sent = True
                    batch.append(item)
                    size += length
                if batch:
                    self._in_flight += size
                    await self._route(batch)
        finally:
            self._sender = None

    async def _route(self, batch: list[_Outgoing]) -> None:
        keys = [item.key for item in batch]
        args = [self._prefix.encode(), *(item.message for item in batch)]
        try:
            self.script_calls += 1
            reply = await self._call(self._send_script(keys=keys, args=args))
        except StoreError as exc:  # every caller of the batch gets the failure
            for item in batch:
                if not item.routed.done():
                    item.routed.set_exception(exc)
            return
        except BaseException:  # cancelled: the registry is stopping
            for item in batch:
                if not item.routed.done():
                    item.routed.set_exception(StoreUnavailable(ERR_STOPPED.format(node=self.node)))
            raise
        for index, item in enumerate(batch):
            if not item.routed.done():
                item.routed.set_result((int(reply[2 * index]), reply[2 * index + 1].decode()))

    # -- serving requests from other nodes ------------------------------------------------------------

    def _dispatch(self, data: bytes) -> None:
        """One message from this node's channel: a reply to one of our requests, or a request."""
        kind = data[:1]
        try:
            if kind == b"R":
                _, correlation, outcome = _REPLY.unpack_from(data)
                waiting = self._waiting.pop(correlation, None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(outcome)
            elif kind == b"Q" and self._lanes is not None:
                _, op, correlation, node_length, id_length = _REQUEST.unpack_from(data)
                at = _REQUEST.size
                reply_to = data[at : at + node_length]
                at += node_length
                connection_id = data[at : at + id_length].decode()
                payload = b"" if op == OP_CLOSE else data[at + id_length :]
                future = self._lanes.submit(connection_id, op, payload)
                future.add_done_callback(functools.partial(self._answer, reply_to, correlation))
            else:
                raise ValueError(f"unknown message kind {kind!r}")
        except (struct.error, UnicodeDecodeError, ValueError) as exc:
            log.warning("node %s: a malformed message on its channel was dropped (%s)", self.node, exc)

    def _answer(self, reply_to: bytes, correlation: int, done: asyncio.Future[Delivery]) -> None:
        if done.cancelled():
            return
        failure = done.exception()
        if failure is not None:
            outcome = OUT_FAILED
            if not isinstance(failure, StoreUnavailable):
                log.error("node %s: sending to a connection failed", self.node, exc_info=failure)
        else:
            outcome = OUT_DELIVERED if done.result() is Delivery.DELIVERED else OUT_GONE
        self._replies.append((self._inbox_prefix + reply_to, _REPLY.pack(b"R", correlation, outcome)))
        if self._replier is None and not self._closed:
            self._replier = asyncio.create_task(self._send_replies())

    async def _send_replies(self) -> None:
        try:
            while self._replies:
                batch = self._replies[: self.max_batch]
                del self._replies[: self.max_batch]
                command: Awaitable[object]
                if len(batch) == 1:
                    command = self._redis.publish(*batch[0])
                else:
                    pipe = self._redis.pipeline(transaction=False)
                    for channel, body in batch:
                        pipe.publish(channel, body)
                    command = pipe.execute()
                with contextlib.suppress(StoreError):  # reported; the callers time out
                    await self._call(command)
        finally:
            self._replier = None

    async def _join(self) -> None:
        ready = asyncio.Event()
        self._loops.append(asyncio.create_task(self._listen(ready)))
        await ready.wait()  # subscribed, or failed once (the listener goes on trying)
        with contextlib.suppress(StoreError):
            await self._maintain()

    async def _listen(self, ready: asyncio.Event) -> None:
        """Keep this node subscribed to its channel: reconnect and resubscribe (with back-off) whenever the
        subscription fails or goes silent."""
        pause = RECONNECT_FIRST_S
        while not self._stopped:
            pubsub = self._redis.pubsub()
            try:
                await self._subscribe(pubsub)
                ready.set()
                pause = RECONNECT_FIRST_S
                if self._listened:  # back after an outage: beat now, rewriting what Redis lost
                    self._spawn(_quietly(self._maintain()))
                self._listened = True
                await self._read(pubsub)
            except StoreUnavailable:
                pass  # reported once by the outage
            except Exception:  # never give up listening: a node that does not listen is unreachable
                log.exception("node %s: its subscription failed", self.node)
            finally:
                ready.set()
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._timeout_s):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(pause)
            pause = min(pause * 2, RECONNECT_MAX_S)

    async def _subscribe(self, pubsub: PubSub) -> None:
        await self._call(pubsub.subscribe(self._inbox))
        try:
            async with asyncio.timeout(self._deadline_s):  # PUBLISH counts us once Redis confirmed
                while True:
                    message = await self._call(pubsub.get_message(timeout=self._timeout_s))
                    if message is not None and message["type"] == "subscribe":
                        return
        except TimeoutError:
            failure = StoreUnavailable(ERR_UNAVAILABLE.format(where=self._where, error="no SUBSCRIBE answer"))
            self._down(failure)
            raise failure from None

    async def _read(self, pubsub: PubSub) -> None:
        """Hand every message to :meth:`_dispatch`; when the channel is quiet for a heart-beat interval,
        PING through it, and give up on it when even the PONG does not come."""
        loop = asyncio.get_running_loop()
        interval = self.heartbeat_interval_s
        heard = loop.time()
        pinged = False
        try:
            while not self._stopped:
                quiet = loop.time() - heard
                if quiet >= interval + self._timeout_s:
                    raise StoreUnavailable(
                        ERR_UNAVAILABLE.format(where=self._where, error=ERR_SILENT_SUBSCRIPTION)
                    )
                if quiet >= interval and not pinged:
                    await pubsub.ping()
                    pinged = True
                wait = (interval + self._timeout_s if pinged else interval) - quiet
                message = await pubsub.get_message(timeout=max(wait, 0.001))
                if message is None:
                    continue
                heard = loop.time()
                pinged = False
                if message["type"] == "message":
                    self._dispatch(message["data"])
        except StoreUnavailable as exc:
            self._down(exc)
            raise
        except (redis_errors.RedisError, OSError) as exc:
            failure = _translate(exc, self._where)
            if isinstance(failure, StoreUnavailable):
                self._down(failure)
                raise failure from exc
            raise

    # -- heart-beat, janitor, upkeep ------------------------------------------------------------------

    async def _beat(self) -> None:
        state = await self._call(
            self._beat_script(
                keys=[self._alive_key, self._nodes_key, self._tombstone_key],
                args=[self.node, round(self.heartbeat_ttl_s * 1000)],
            )
        )
        if state == 2:
            self._close_reaped()
        elif state == 1 and self._mine:
            log.warning(
                "node %s: Redis had lost this node (a restart, a failover); writing its %d connection(s)",
                self.node,
                len(self._mine),
            )
            self._unsynced.update(self._mine)
        if self._unsynced:
            await self._sync()

    async def _maintain(self) -> None:
        await self._beat()
        if self._unremoved:
            doomed = list(self._unremoved)
            for start in range(0, len(doomed), CHUNK):
                chunk = doomed[start : start + CHUNK]
                await self._delete(chunk)
                self._unremoved.difference_update(chunk)
        if self._touched:
            await self._flush_touches()

    async def _sync(self) -> None:
        """Write this node's connections that Redis may not hold (after an outage, or a data loss)."""
        while self._unsynced:
            chunk = [connection_id for connection_id in self._unsynced if connection_id in self._mine][:CHUNK]
            if not chunk:
                self._unsynced.clear()
                return
            await self._write([self._current(connection_id) for connection_id in chunk])
            self._unsynced.difference_update(chunk)
            # Removed while being written: the write may have come after the removal.
            self._unremoved.update(
                connection_id for connection_id in chunk if connection_id not in self._mine
            )

    async def _flush_touches(self) -> None:
        pending, self._touched = self._touched, {}
        items = list(pending.items())
        try:
            for start in range(0, len(items), CHUNK):
                chunk = items[start : start + CHUNK]
                keys = [self._conn_prefix + connection_id for connection_id, _ in chunk]
                await self._call(self._touch_script(keys=keys, args=[at for _, at in chunk]))
                for connection_id, _ in chunk:
                    del pending[connection_id]
        finally:
            for connection_id, at in pending.items():  # not written: kept for the next round
                if at > self._touched.get(connection_id, 0):
                    self._touched[connection_id] = at

    async def _reap(self, nodes: list[str] | None) -> list[ConnectionInfo]:
        orphans: list[ConnectionInfo] = []
        while True:
            args = [self._prefix, CHUNK, TOMBSTONE_TTL_MS, self.node, *(nodes or ())]
            reply = await self._call(self._reap_script(keys=[self._nodes_key], args=args))
            for at in range(1, len(reply), 7):
                connection_id, node, connected_at, source_ip, last_active_at, has_agent, agent = reply[
                    at : at + 7
                ]
                orphans.append(
                    ConnectionInfo(
                        connection_id.decode(),
                        node.decode(),
                        int(connected_at),
                        source_ip.decode(),
                        agent.decode() if int(has_agent) else None,
                        int(last_active_at),
                    )
                )
            if not int(reply[0]):
                return orphans

    # -- leaving ----------------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Leave: stop serving, remove this node's records (when Redis can be reached: otherwise the other
        nodes' janitors reap them once the heart-beat expires), close every connection to Redis."""
        if self._stopped:
            return
        started = self._lanes is not None
        await self._halt_all()
        try:
            while started and await self._call(
                self._leave_script(
                    keys=[self._nodes_key, self._alive_key, self._node_key],
                    args=[self._prefix, CHUNK, self.node],
                )
            ):
                pass
        except StoreError as exc:
            log.warning("node %s left without removing its records (%s); the janitors will", self.node, exc)
        self._mine.clear()
        await self._close_clients()

    async def abandon(self) -> None:
        if self._stopped:
            return
        await self._halt_all()
        await self._close_clients()

    async def _halt_all(self) -> None:
        await self._halt()
        await cancel_and_wait(task for task in (self._sender, self._replier) if task is not None)
        stopped = StoreUnavailable(ERR_STOPPED.format(node=self.node))
        for item in self._outbox:
            if not item.routed.done():
                item.routed.set_exception(stopped)
        self._outbox.clear()
        self._replies.clear()
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(stopped)

    async def _close_clients(self) -> None:
        self._closed = True
        await self._redis.aclose()
        await self._pool.aclose()

    # -- plumbing ---------------------------------------------------------------------------------------

    async def _call(self, command: Awaitable[Any]) -> Any:
        """Await one Redis command within the deadline, translating failures to :class:`StoreError` and
        keeping the outage report and the janitor's grace up to date."""
        if self._closed:
            if isinstance(command, Coroutine):
                command.close()  # never awaited, on purpose
            raise StoreUnavailable(ERR_STOPPED.format(node=self.node))
        try:
            async with asyncio.timeout(self._deadline_s):
                result = await command
        except (StoreError, TimeoutError, redis_errors.RedisError, OSError) as exc:
            failure = _translate(exc, self._where)
            if isinstance(failure, StoreUnavailable):
                self._down(failure)
            raise failure from exc
        if self.outage.down_since is not None or self._watching_since is None:
            self.outage.recovered()
            self._healthy()
        return result

    def _down(self, failure: StoreUnavailable) -> None:
        self.outage.failed(failure)
        self._troubled()
        self._had_outage = True


def _translate(exc: BaseException, where: str) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, TimeoutError):  # our deadline (asyncio's TimeoutError is the builtin)
        return StoreUnavailable(ERR_UNAVAILABLE.format(where=where, error="timed out"))
    if isinstance(exc, redis_errors.AuthenticationError | redis_errors.AuthorizationError):
        return StoreError(ERR_FAILED.format(where=where, error=exc))
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError | OSError):
        return StoreUnavailable(ERR_UNAVAILABLE.format(where=where, error=exc))
    if isinstance(exc, redis_errors.RedisError) and (
        str(exc).startswith(_UNAVAILABLE_REPLIES)
        or isinstance(
            exc, redis_errors.ReadOnlyError | redis_errors.ClusterDownError | redis_errors.TryAgainError
        )
    ):
        return StoreUnavailable(ERR_UNAVAILABLE.format(where=where, error=exc))
    return StoreError(ERR_FAILED.format(where=where, error=exc))


def _with_last_active(info: ConnectionInfo, at_ms: int) -> ConnectionInfo:
    return ConnectionInfo(
        info.connection_id, info.node, info.connected_at_ms, info.source_ip, info.user_agent, at_ms
    )


async def _quietly(work: Coroutine[Any, Any, None]) -> None:
    with contextlib.suppress(StoreError):
        await work
