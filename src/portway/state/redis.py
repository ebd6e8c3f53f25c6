"""The Redis store: state shared by many gateway nodes, every read-modify-write one atomic Lua script.

Every key of one store carries one hash tag, ``{NAMESPACE}``, so that on Redis Cluster all of them live in
one slot and every script's keys (declared or reached through the tag) share it::

    {portway}:bucket:KEY      hash  t (tokens), at (last refill time)       expires once refilled, + margin
    {portway}:count:KEY       hash  v (value), e (window end)               PEXPIREAT the window end, + grace
    {portway}:cache:KEY       hash  v (bytes), x (expires at, caller time)  PEXPIRE the TTL, + margin
    {portway}:cache-order     zset  cache key -> write sequence              oldest write evicted first
    {portway}:cache-lex       zset  cache key, score 0                       drop by prefix (ZRANGEBYLEX)
    {portway}:cache-sizes     hash  cache key -> bytes
    {portway}:cache-meta      hash  bytes (total), seq (last write sequence)
    {portway}:record:KIND     hash  id -> JSON document

Times are the callers' ``now``, so every node computes with the same arithmetic as :mod:`memory`; floats
travel as their shortest exact text (``repr``, ``%.17g``), never rounded. Redis' own expiry only keeps
memory bounded: it never removes what a caller could still see, within the margins above, as long as the
callers' clocks are roughly real time. (Counters and cache entries given times long past by Redis' clock
live only for the grace/margin.)

The hot path is :meth:`RedisStore.take`: concurrent calls on one event loop are queued while a script call
is in flight, and the queue goes out as one script invocation that answers every request in order, each
exactly (one round trip for many requests, as a pipeline would, but one EVALSHA to parse and run).
Measured on the development machine (2 cores, local Redis 7, asyncio loop, 64 concurrent callers, 20,000
calls; ``tests/state/test_redis.py::test_take_throughput``): about 100,000 take() calls/s, against about
6,000/s with one script call per take (``max_batch=1``) and about 500,000/s for :class:`MemoryStore`.

A connection problem (refused, reset, a timeout, Redis loading or read-only) raises
:class:`~portway.state.store.StoreUnavailable` within the configured timeouts; the next call reconnects,
and a script Redis forgot (a restart, SCRIPT FLUSH) is loaded again on the NOSCRIPT answer. Nothing is
retried: a call that timed out may still have been applied (Redis ran it, the answer was lost), and running
a script twice would take twice.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Coroutine, Mapping, Sequence
from typing import Any, cast

import orjson
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from portway.state.memory import DEFAULT_CACHE_BYTES, _retry_after
from portway.state.store import Admission, Bucket, CountResult, StoreError, StoreUnavailable

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REDIS_URL",
    "DEFAULT_TIMEOUT_S",
    "RedisStore",
]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_CONNECT_TIMEOUT_S = 0.25
DEFAULT_TIMEOUT_S = 0.5
DEFAULT_MAX_CONNECTIONS = 32
DEFAULT_MAX_BATCH = 256
BUCKET_TTL_MARGIN_MS = 5_000  # a bucket's key outlives the time it takes to refill by this much
COUNTER_GRACE_MS = 1_000  # a counter's key outlives its window (by Redis' clock) by this much
CACHE_TTL_MARGIN_MS = 1_000  # a cache entry's key outlives its TTL by this much
CACHE_GC_PER_PUT = 3  # index entries of values Redis already expired, collected per put
CACHE_DROP_CHUNK = 1_000  # cache keys removed per script call by cache_drop

ERR_UNAVAILABLE = "Redis at {where} cannot be reached: {error}"
ERR_FAILED = "Redis at {where} failed: {error}"
ERR_CLOSED = "the Redis store is closed"
ERR_NAMESPACE = "a Redis store namespace is not empty and holds no '{{' or '}}': {namespace!r}"

# Answers that mean "not now" rather than "wrong": Redis is starting, failing over, or in a cluster change.
_UNAVAILABLE_REPLIES = ("LOADING", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "BUSY ")

# KEYS: the batch's distinct bucket keys. ARGV[1]: TTL margin (ms); ARGV[2]: a JSON array of numbers, for
# each request: now, cost, number of buckets, and for each bucket (index into KEYS, rate, burst). JSON numbers
# are the shortest text that reads back as the same double (orjson writes them so; cjson reads with strtod).
# Answer: one string, for each request the index of the refusing bucket (-1: allowed) then each bucket's
# tokens ('%.17g', exact), all separated by spaces.
# The arithmetic is MemoryStore.take_now's, line for line, with the batch's states shared across requests.
_TAKE_LUA = """
local fmt = '%.17g'
local states, specs, out = {}, {}, {}
local margin = tonumber(ARGV[1])
local a = cjson.decode(ARGV[2])
local i, last = 1, #a
while i <= last do
  local now, cost, nb = a[i], a[i + 1], a[i + 2]
  i = i + 3
  local refused = -1
  local order = {}
  for b = 1, nb do
    local k, rate, burst = a[i], a[i + 1], a[i + 2]
    i = i + 3
    local st = states[k]
    if st == nil then
      local raw = redis.call('HMGET', KEYS[k], 't', 'at')
      if raw[1] then
        st = {tonumber(raw[1]), tonumber(raw[2])}
        if now > st[2] then
          st[1] = math.min(burst, st[1] + (now - st[2]) * rate)
          st[2] = now
        end
      else
        st = {burst, now}
      end
      states[k] = st
    elseif now > st[2] then
      st[1] = math.min(burst, st[1] + (now - st[2]) * rate)
      st[2] = now
    end
    specs[k] = {rate, burst}
    order[b] = st
    if refused < 0 and st[1] < cost then
      refused = b - 1
    end
  end
  if refused < 0 then
    for b = 1, nb do
      order[b][1] = order[b][1] - cost
    end
  end
  out[#out + 1] = refused
  for b = 1, nb do
    out[#out + 1] = string.format(fmt, order[b][1])
  end
end
for k, st in pairs(states) do
  redis.call('HSET', KEYS[k], 't', string.format(fmt, st[1]), 'at', string.format(fmt, st[2]))
  local rate, burst = specs[k][1], specs[k][2]
  if rate > 0 then
    local ms = math.ceil((burst - st[1]) / rate * 1000)
    if ms < 0 then ms = 0 end
    if ms > 315360000000 then ms = 315360000000 end
    redis.call('PEXPIRE', KEYS[k], string.format('%d', ms + margin))
  else
    redis.call('PERSIST', KEYS[k])
  end
end
return table.concat(out, ' ')
"""

# KEYS[1]: the counter. ARGV: amount, limit ('' for none), window end, now, grace (ms).
# Answer: {1 added / 0 refused, value after}.
_COUNT_LUA = """
local raw = redis.call('HMGET', KEYS[1], 'v', 'e')
local amount, now = tonumber(ARGV[1]), tonumber(ARGV[4])
local value, e, fresh = 0, tonumber(ARGV[3]), true
if raw[1] then
  value, e = tonumber(raw[1]), tonumber(raw[2])
  fresh = e <= now
end
if fresh then
  value, e = 0, tonumber(ARGV[3])
end
if ARGV[2] ~= '' and value + amount > tonumber(ARGV[2]) then
  return {0, value}
end
if fresh then
  redis.call('HSET', KEYS[1], 'v', ARGV[1], 'e', ARGV[3])
  value = amount
else
  value = redis.call('HINCRBY', KEYS[1], 'v', ARGV[1])
end
local t = redis.call('TIME')
local at = math.max(math.ceil(e * 1000), tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('PEXPIREAT', KEYS[1], string.format('%d', at + tonumber(ARGV[5])))
return {1, value}
"""

# Shared by the cache scripts. KEYS: [1] the entry (or unused), [2] order, [3] lex, [4] sizes, [5] meta.
_CACHE_PRELUDE = """
local ORDER, LEX, SIZES, META = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local function forget(name, entry)
  redis.call('DEL', entry)
  local size = redis.call('HGET', SIZES, name)
  if size then
    redis.call('HDEL', SIZES, name)
    redis.call('HINCRBY', META, 'bytes', -tonumber(size))
  end
  redis.call('ZREM', ORDER, name)
  redis.call('ZREM', LEX, name)
end
"""

# ARGV: name, value, expires at, PEXPIRE ms, keep (1/0), bound, entry key prefix, GC count.
_CACHE_PUT_LUA = (
    _CACHE_PRELUDE
    + """
local name, value, prefix = ARGV[1], ARGV[2], ARGV[7]
forget(name, KEYS[1])
if ARGV[5] ~= '1' then
  return 0
end
local bound = tonumber(ARGV[6])
local seq = redis.call('HINCRBY', META, 'seq', 1)
redis.call('HSET', KEYS[1], 'v', value, 'x', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', ORDER, seq, name)
redis.call('ZADD', LEX, 0, name)
redis.call('HSET', SIZES, name, #value)
local total = redis.call('HINCRBY', META, 'bytes', #value)
while total > bound do
  local oldest = redis.call('ZRANGE', ORDER, 0, 0)
  if #oldest == 0 then
    break
  end
  forget(oldest[1], prefix .. oldest[1])
  total = tonumber(redis.call('HGET', META, 'bytes'))
end
for _, other in ipairs(redis.call('ZRANGE', ORDER, 0, tonumber(ARGV[8]) - 1)) do
  if redis.call('EXISTS', prefix .. other) == 0 then
    forget(other, prefix .. other)
  end
end
return 1
"""
)

# ARGV: name, now. Removes the entry if it expired by the caller's clock (re-checked: a writer may have
# replaced it since it was read).
_CACHE_EXPIRE_LUA = (
    _CACHE_PRELUDE
    + """
local x = redis.call('HGET', KEYS[1], 'x')
if x and tonumber(x) <= tonumber(ARGV[2]) then
  forget(ARGV[1], KEYS[1])
  return 1
end
return 0
"""
)

# ARGV: lex min, lex max, limit, entry key prefix. Answer: {entries removed, index names seen}.
_CACHE_DROP_LUA = (
    _CACHE_PRELUDE
    + """
local names = redis.call('ZRANGEBYLEX', LEX, ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
local removed = 0
for _, name in ipairs(names) do
  local entry = ARGV[4] .. name
  removed = removed + redis.call('EXISTS', entry)
  forget(name, entry)
end
return {removed, #names}
"""
)

_Pending = tuple[Sequence[Bucket], float, int, "asyncio.Future[Admission]"]


class RedisStore:
    """A :class:`~portway.state.store.Store` on Redis (or a Redis Cluster slot), shared by many nodes.

    >>> store = RedisStore.from_url("redis://127.0.0.1:6379/0", namespace="shop")
    >>> store.namespace
    'shop'

    Nothing connects until the first call. ``connect_timeout_s`` and ``timeout_s`` bound every call, so a
    Redis that is gone costs a request at most about their sum, never a hang.
    """

    name = "redis"

    def __init__(
        self,
        url: str = DEFAULT_REDIS_URL,
        *,
        namespace: str = "portway",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        if not namespace or "{" in namespace or "}" in namespace:
            raise ValueError(ERR_NAMESPACE.format(namespace=namespace))
        self.namespace = namespace
        self.cache_bytes = cache_bytes
        self.max_batch = max_batch
        self._where = _redact(url)
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=connect_timeout_s + timeout_s,  # waiting for a free connection
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # a retried script could apply twice; the caller decides
            decode_responses=False,
        )
        self._redis = Redis(connection_pool=self._pool)
        # A whole call: a connection (connect + handshake), the command, maybe a NOSCRIPT reload.
        self._deadline_s = 2 * connect_timeout_s + 3 * timeout_s
        tag = "{" + namespace + "}"
        self._bucket_prefix = f"{tag}:bucket:"
        self._count_prefix = f"{tag}:count:"
        self._cache_prefix = f"{tag}:cache:"
        self._cache_meta_keys = [
            f"{tag}:cache-order",
            f"{tag}:cache-lex",
            f"{tag}:cache-sizes",
            f"{tag}:cache-meta",
        ]
        self._record_prefix = f"{tag}:record:"
        self._match_all = _glob_escape(tag) + ":*"
        self._take_script = self._script(_TAKE_LUA)
        self._count_script = self._script(_COUNT_LUA)
        self._cache_put_script = self._script(_CACHE_PUT_LUA)
        self._cache_expire_script = self._script(_CACHE_EXPIRE_LUA)
        self._cache_drop_script = self._script(_CACHE_DROP_LUA)
        self._queue: list[_Pending] = []
        self._sender: asyncio.Task[None] | None = None
        self._closed = False
        self.script_calls = 0  # take() script invocations so far: how well the batching works

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "portway",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> RedisStore:
        """A store on ``redis://``, ``rediss://`` or ``unix://`` ``url`` (redis-py's URL forms)."""
        return cls(
            url,
            namespace=namespace,
            cache_bytes=cache_bytes,
            connect_timeout_s=connect_timeout_s,
            timeout_s=timeout_s,
            max_connections=max_connections,
        )

    def _script(self, text: str) -> AsyncScript:
        return self._redis.register_script(text)

    # -- token buckets ----------------------------------------------------------------------------------

    async def take(self, buckets: Sequence[Bucket], now: float, cost: int = 1) -> Admission:
        if self._closed:
            raise StoreUnavailable(ERR_CLOSED)
        if not buckets:
            return Admission(True, ())
        future: asyncio.Future[Admission] = asyncio.get_running_loop().create_future()
        self._queue.append((buckets, now, cost, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_takes())
        return await future

    async def _send_takes(self) -> None:
        """Send the queue, one script call at a time; what queues meanwhile goes in the next call."""
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                await self._take_batch(batch)
        finally:
            self._sender = None

    async def _take_batch(self, batch: list[_Pending]) -> None:
        index: dict[str, int] = {}
        keys: list[str] = []
        numbers: list[float | int] = []
        for buckets, now, cost, _ in batch:
            numbers += (now, cost, len(buckets))
            for bucket in buckets:
                position = index.get(bucket.key)
                if position is None:
                    keys.append(self._bucket_prefix + bucket.key)
                    position = index[bucket.key] = len(keys)
                numbers += (position, bucket.rate, bucket.burst)
        args = (BUCKET_TTL_MARGIN_MS, orjson.dumps(numbers))
        try:
            self.script_calls += 1
            reply = await self._call(self._take_script(keys=keys, args=args))
        except Exception as exc:  # every caller of the batch gets the failure
            failure = (
                exc
                if isinstance(exc, StoreError)
                else StoreError(ERR_FAILED.format(where=self._where, error=exc))
            )
            for *_, future in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        except BaseException:  # cancelled: the store is closing
            for *_, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(ERR_CLOSED))
            raise
        words = reply.split()
        at = 0
        for buckets, _, cost, future in batch:
            refused = int(words[at])
            tokens = [float(word) for word in words[at + 1 : at + 1 + len(buckets)]]
            at += 1 + len(buckets)
            remaining = tuple(map(math.floor, tokens))
            if refused < 0:
                answer = Admission(True, remaining)
            else:
                answer = Admission(
                    False, remaining, refused, _retry_after(tokens[refused], cost, buckets[refused])
                )
            if not future.done():
                future.set_result(answer)

    # -- counters ---------------------------------------------------------------------------------------

    async def count(
        self, key: str, amount: int, limit: int | None, window_end: float, now: float
    ) -> CountResult:
        if amount < 0:
            raise ValueError("a counter only grows")
        args = (amount, "" if limit is None else limit, window_end, now, COUNTER_GRACE_MS)
        allowed, value = await self._call(self._count_script(keys=[self._count_prefix + key], args=args))
        return CountResult(bool(allowed), int(value))

    async def counter(self, key: str, now: float) -> int:
        value, end = await self._call(self._redis.hmget(self._count_prefix + key, ["v", "e"]))
        return int(value) if value is not None and float(end) > now else 0

    # -- cache ------------------------------------------------------------------------------------------

    async def cache_get(self, key: str, now: float) -> bytes | None:
        entry = self._cache_prefix + key
        value, expires_at = await self._call(self._redis.hmget(entry, ["v", "x"]))
        if value is None:
            return None
        if float(expires_at) > now:
            return cast(bytes, value)
        await self._call(self._cache_expire_script(keys=[entry, *self._cache_meta_keys], args=[key, now]))
        return None

    async def cache_put(self, key: str, value: bytes, ttl_s: float, now: float) -> None:
        keep = len(value) <= self.cache_bytes and ttl_s > 0
        px = math.ceil(ttl_s * 1000) + CACHE_TTL_MARGIN_MS if keep else 0
        args = (
            key,
            value,
            now + ttl_s,
            px,
            1 if keep else 0,
            self.cache_bytes,
            self._cache_prefix,
            CACHE_GC_PER_PUT,
        )
        entry = self._cache_prefix + key
        await self._call(self._cache_put_script(keys=[entry, *self._cache_meta_keys], args=args))

    async def cache_drop(self, prefix: str = "") -> int:
        if prefix:
            low, high = b"[" + prefix.encode(), b"(" + prefix.encode() + b"\xff"  # no UTF-8 byte is 0xff
        else:
            low, high = b"-", b"+"
        keys = [self._cache_meta_keys[1], *self._cache_meta_keys]
        removed = 0
        while True:
            args = (low, high, CACHE_DROP_CHUNK, self._cache_prefix)
            gone, seen = await self._call(self._cache_drop_script(keys=keys, args=args))
            removed += int(gone)
            if int(seen) < CACHE_DROP_CHUNK:
                return removed

    # -- records ----------------------------------------------------------------------------------------

    async def put_record(self, kind: str, record_id: str, record: Mapping[str, Any]) -> None:
        body = orjson.dumps(dict(record))
        await self._call(self._redis.hset(self._record_prefix + kind, record_id, body))

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        body = await self._call(self._redis.hget(self._record_prefix + kind, record_id))
        return _load(body) if body is not None else None

    async def list_records(self, kind: str) -> list[dict[str, Any]]:
        bodies: dict[bytes, bytes] = await self._call(self._redis.hgetall(self._record_prefix + kind))
        # UTF-8 bytes sort as their code points do, so this is the order of the ids as strings.
        return [_load(bodies[record_id]) for record_id in sorted(bodies)]

    async def delete_record(self, kind: str, record_id: str) -> bool:
        removed = await self._call(self._redis.hdel(self._record_prefix + kind, record_id))
        return bool(removed)

    # -- administration ---------------------------------------------------------------------------------

    async def clear(self) -> int:
        """Delete every key of this store's namespace (and no other); the number of keys deleted."""
        deleted = 0
        cursor: int = 0
        while True:
            cursor, names = await self._call(self._redis.scan(cursor, match=self._match_all, count=1000))
            if names:
                deleted += int(await self._call(self._redis.unlink(*names)))
            if not cursor:
                return deleted

    async def close(self) -> None:
        """Fail what is still queued, and close every connection of the pool."""
        self._closed = True
        queued, self._queue = self._queue, []
        for *_, future in queued:
            if not future.done():
                future.set_exception(StoreUnavailable(ERR_CLOSED))
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.wait([self._sender])  # its callers were failed above; it raises nothing here
        await self._redis.aclose()
        await self._pool.aclose()

    # -- plumbing ---------------------------------------------------------------------------------------

    async def _call(self, command: Awaitable[Any]) -> Any:
        """Await one Redis command within the deadline, translating failures to :class:`StoreError`."""
        if self._closed:
            if isinstance(command, Coroutine):
                command.close()  # never awaited, on purpose
            raise StoreUnavailable(ERR_CLOSED)
        try:
            async with asyncio.timeout(self._deadline_s):
                return await command
        except TimeoutError as exc:  # our deadline (asyncio's TimeoutError is the builtin)
            raise StoreUnavailable(ERR_UNAVAILABLE.format(where=self._where, error="timed out")) from exc
        except (redis_errors.AuthenticationError, redis_errors.AuthorizationError) as exc:
            raise StoreError(ERR_FAILED.format(where=self._where, error=exc)) from exc
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise StoreUnavailable(ERR_UNAVAILABLE.format(where=self._where, error=exc)) from exc
        except redis_errors.RedisError as exc:
            if str(exc).startswith(_UNAVAILABLE_REPLIES) or isinstance(
                exc, redis_errors.ReadOnlyError | redis_errors.ClusterDownError | redis_errors.TryAgainError
            ):
                raise StoreUnavailable(ERR_UNAVAILABLE.format(where=self._where, error=exc)) from exc
            raise StoreError(ERR_FAILED.format(where=self._where, error=exc)) from exc


def _load(body: bytes) -> dict[str, Any]:
    record: dict[str, Any] = orjson.loads(body)
    return record


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    credentials, _, host = rest.partition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if user else '***'}@{host}"


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern (SCAN MATCH)."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
