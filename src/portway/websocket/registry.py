"""The WebSocket connection registry: which gateway node holds each connection, and the way to it.

A WebSocket connection lives on the one node whose socket it is; the ``@connections`` API (POST a message,
GET its info, DELETE it) may be called on any node. The registry makes that work:

- it keeps every connection's :class:`ConnectionInfo` where every node can read it;
- :meth:`ConnectionRegistry.send` and :meth:`~ConnectionRegistry.close` reach a connection directly when it
  is on this node, else through the node that holds it, and tell the caller what happened
  (:class:`Delivery`), or raise :class:`~portway.state.store.StoreUnavailable` (the gateway answers 5xx);
- it watches the nodes: each node heart-beats; a node that stops (a crash, a partition) has its connections
  removed by the others, which hand their infos to ``on_orphaned`` so that the gateway runs ``$disconnect``
  for them — exactly once over the cluster.

Two implementations behind :class:`ConnectionRegistry`, chosen by name (:func:`open_registry`):
:class:`MemoryRegistry` (one process; several registries sharing one :class:`MemoryHub` behave as the nodes of
a cluster, heart-beats and all) and :class:`~portway.websocket.registry_redis.RedisRegistry` (processes and
hosts sharing one Redis).

Guarantees common to both (``tests/websocket/test_registry.py`` holds them to it):

- sends (and closes) to one connection from one node, whose calls start in order, reach the connection in
  that order, and each answers DELIVERED, GONE, or raises within a bounded time (``reply_timeout_s`` for the
  owner's answer, plus the store's own bounds);
- GONE is definite: the connection is not registered, its node said it is not there, or its node is dead
  (then the dead node's connections are removed and reported as orphaned);
- :class:`NodeUnreachable` (a :class:`~portway.state.store.StoreUnavailable`) means "not known now": the
  connection's node is alive by its heart-beat but did not answer;
- a janitor reaps dead nodes only after its own node has watched the cluster for a whole heart-beat TTL
  without trouble, so that a registry that was cut off (or a Redis that restarted from a snapshot) gives every
  live node the chance to beat again before anyone is declared dead;
- a node declared dead that was only stalled (longer than the TTL) closes its sockets when it finds out at
  its next heart-beat: ``$disconnect`` already ran for them elsewhere.

Node names must be unique in the cluster: :func:`default_node_name` is, per process start.

>>> import asyncio
>>> async def demo() -> Delivery:
...     registry = MemoryRegistry(node="a")
...     await registry.start(NoConnections())
...     delivery = await registry.send("nobody", b"hi")
...     await registry.stop()
...     return delivery
>>> asyncio.run(demo())
<Delivery.GONE: 'gone'>
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from portway.state.store import StoreError, StoreUnavailable

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL_S",
    "DEFAULT_HEARTBEAT_TTL_S",
    "DEFAULT_JANITOR_INTERVAL_S",
    "DEFAULT_REPLY_TIMEOUT_S",
    "MAX_PAYLOAD_BYTES",
    "REGISTRY_FORMS",
    "ConnectionInfo",
    "ConnectionRegistry",
    "Delivery",
    "LocalConnections",
    "MemoryHub",
    "MemoryRegistry",
    "NoConnections",
    "NodeUnreachable",
    "OnOrphaned",
    "default_node_name",
    "open_registry",
]

DEFAULT_HEARTBEAT_INTERVAL_S = 2.0
DEFAULT_HEARTBEAT_TTL_S = 6.0
DEFAULT_JANITOR_INTERVAL_S = 3.0
DEFAULT_REPLY_TIMEOUT_S = 1.0
MAX_PAYLOAD_BYTES = 128 * 1024  # API Gateway's WebSocket message limit

REGISTRY_FORMS = ("memory", "redis://host:port/db", "rediss://host:port/db", "unix:///path/to/redis.sock")
ERR_UNKNOWN_REGISTRY = "unknown connection registry {url!r}; use one of: " + ", ".join(REGISTRY_FORMS)
ERR_PAYLOAD = "a message of {size} bytes is over the {limit} bytes a WebSocket message may carry"
ERR_NOT_STARTED = "the connection registry of node {node!r} is not started"
ERR_STOPPED = "the connection registry of node {node!r} is stopped"
ERR_FOREIGN = "connection {connection_id!r} belongs to node {owner!r}, not to this registry's node {node!r}"
ERR_NODE_SILENT = "gateway node {owner!r} did not answer within {seconds:g} s"
ERR_NODE_NOT_LISTENING = "gateway node {owner!r} is alive but not listening (reconnecting?)"
ERR_REMOTE_FAILED = "gateway node {owner!r} failed to reach the connection"
ERR_NODE_STOPPING = "the connection's gateway node is stopping"
ERR_NODE_SUSPECT = "gateway node {owner!r} stopped heart-beating; it is not yet declared dead"
ERR_INTERVALS = "heartbeat_ttl_s ({ttl:g}) must be more than heartbeat_interval_s ({interval:g})"

log = logging.getLogger("portway.websocket")


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What the registry knows of one connection: ``GET @connections/{id}`` answers from it.

    Times are milliseconds since the epoch, as API Gateway reports ``connectedAt`` and ``lastActiveAt``.
    """

    connection_id: str
    node: str
    connected_at_ms: int
    source_ip: str
    user_agent: str | None
    last_active_at_ms: int


class Delivery(enum.Enum):
    """What happened to a send or close aimed at a connection."""

    DELIVERED = "delivered"  # handed to the connection's socket (send) or closed (close)
    GONE = "gone"  # no such connection (any more): API Gateway's 410 GoneException


class NodeUnreachable(StoreUnavailable):
    """The connection's node is alive by its heart-beat but did not answer: try again later (a 5xx)."""


OnOrphaned = Callable[[list[ConnectionInfo]], Awaitable[None]]


class LocalConnections(Protocol):
    """The gateway's sockets on one node; the registry calls it to reach the connections it holds.

    Both methods answer False, quickly, for a connection that is not (or no longer) on this node.
    """

    async def send(self, connection_id: str, data: bytes, binary: bool) -> bool:
        """Send one message (a binary or a text frame); False: not here, or gone."""
        ...

    async def close(self, connection_id: str) -> bool:
        """Close the connection (code 1000), as ``DELETE @connections/{id}`` does; False: not here."""
        ...


class NoConnections:
    """A node that holds no sockets (an admin process that only calls the ``@connections`` API)."""

    async def send(self, connection_id: str, data: bytes, binary: bool) -> bool:
        return False

    async def close(self, connection_id: str) -> bool:
        return False


class ConnectionRegistry(Protocol):
    """Where the connections of every node are, and the way to each.

    ``start`` before anything else; ``add`` when a connection is accepted (after ``$connect`` allowed it),
    ``touch`` on each message it sends, ``remove`` when it closes; ``stop`` when the node leaves.
    """

    node: str  # this node's name, unique in the cluster (default: host-pid-random)
    name: str  # the implementation's name: "memory" or "redis"

    async def start(self, local: LocalConnections) -> None:
        """Begin serving this node: take requests from other nodes, heart-beat, run the janitor."""
        ...

    async def add(self, info: ConnectionInfo) -> None:
        """Register a connection of this node (``info.node`` is this node)."""
        ...

    async def touch(self, connection_id: str, now_ms: int) -> None:
        """The connection was active at ``now_ms`` (``lastActiveAt``). Never raises; may be batched: other
        nodes see it within one heart-beat interval (see each implementation)."""
        ...

    async def remove(self, connection_id: str) -> None:
        """The connection closed. Never raises: a removal the store cannot take now is retried."""
        ...

    async def get(self, connection_id: str) -> ConnectionInfo | None: ...

    async def send(self, connection_id: str, data: bytes, binary: bool = False) -> Delivery:
        """Send one message to a connection of any node (at most :data:`MAX_PAYLOAD_BYTES`)."""
        ...

    async def close(self, connection_id: str) -> Delivery:
        """Close a connection of any node, as ``DELETE @connections/{id}`` does."""
        ...

    async def local_ids(self) -> list[str]:
        """The connections registered on this node."""
        ...

    async def sweep(self) -> list[ConnectionInfo]:
        """Run the janitor now: remove dead nodes' connections, hand them to ``on_orphaned`` and return
        them (the janitor runs by itself every ``janitor_interval_s``)."""
        ...

    async def stop(self) -> None:
        """This node leaves: its records are removed, requests to it answer GONE. Idempotent."""
        ...

    async def abandon(self) -> None:
        """Stop serving without removing anything, as a crash would: the other nodes' janitors reap this
        node's connections once its heart-beat expires (and report them as orphaned)."""
        ...


def default_node_name() -> str:
    """``host-pid-random``: unique per process start, so a restarted process is never taken for the node it
    replaced (which the other nodes may be reaping)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def check_payload(data: bytes) -> None:
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ValueError(ERR_PAYLOAD.format(size=len(data), limit=MAX_PAYLOAD_BYTES))


# Operations carried to a connection's node, as their wire codes.
OP_TEXT = 0
OP_BINARY = 1
OP_CLOSE = 2

_Job = tuple[int, bytes, "asyncio.Future[Delivery]"]


class Lanes:
    """Work for the connections of this node, one FIFO lane per connection.

    Requests from other nodes arrive in order over one channel; a lane per connection keeps each
    connection's messages in that order while a slow socket holds up only its own lane.
    """

    def __init__(self, local: LocalConnections) -> None:
        self.local = local
        self._lanes: dict[str, deque[_Job]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, connection_id: str, op: int, data: bytes) -> asyncio.Future[Delivery]:
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        lane = self._lanes.get(connection_id)
        if lane is None:
            lane = self._lanes[connection_id] = deque()
            task = asyncio.create_task(self._drain(connection_id, lane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        lane.append((op, data, future))
        return future

    async def _drain(self, connection_id: str, lane: deque[_Job]) -> None:
        future: asyncio.Future[Delivery] | None = None
        try:
            while lane:
                op, data, future = lane.popleft()
                if future.done():  # its caller gave up before it started
                    continue
                try:
                    if op == OP_CLOSE:
                        done = await self.local.close(connection_id)
                    else:
                        done = await self.local.send(connection_id, data, op == OP_BINARY)
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                else:
                    if not future.done():
                        future.set_result(Delivery.DELIVERED if done else Delivery.GONE)
        finally:
            # No await between the last ``while lane`` and here: nothing was queued meanwhile.
            del self._lanes[connection_id]
            unanswered = [job[2] for job in lane] if future is None else [future, *(job[2] for job in lane)]
            for waiting in unanswered:  # only when cancelled: this node stops
                if not waiting.done():
                    waiting.set_exception(NodeUnreachable(ERR_NODE_STOPPING))

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)


class NodeCore:
    """What both implementations do the same way on one node: the local fast path, the lanes, the
    heart-beat and janitor loops, the grace before reaping, and the ``on_orphaned`` callbacks."""

    name = "base"

    def __init__(
        self,
        node: str | None,
        on_orphaned: OnOrphaned | None,
        heartbeat_interval_s: float,
        heartbeat_ttl_s: float,
        janitor_interval_s: float,
        reply_timeout_s: float,
        clock: Callable[[], float],
    ) -> None:
        if heartbeat_ttl_s <= heartbeat_interval_s:
            raise ValueError(ERR_INTERVALS.format(ttl=heartbeat_ttl_s, interval=heartbeat_interval_s))
        self.node = node or default_node_name()
        self.on_orphaned = on_orphaned
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.janitor_interval_s = janitor_interval_s
        self.reply_timeout_s = reply_timeout_s
        self.clock = clock
        self._mine: dict[str, ConnectionInfo] = {}  # this node's connections, as added
        self._lanes: Lanes | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._callbacks: set[asyncio.Task[None]] = set()
        self._watching_since: float | None = None  # by ``clock``: healthy since; None while in trouble
        self._stopped = False

    # -- to be provided -------------------------------------------------------------------------------

    async def _join(self) -> None:
        """Begin serving (subscribe, first heart-beat); called by :meth:`start` once ``_lanes`` is set."""
        raise NotImplementedError

    async def _beat(self) -> None:
        """One heart-beat; on learning this node was reaped, call :meth:`_close_reaped`."""
        raise NotImplementedError

    async def _maintain(self) -> None:
        """What the heart-beat loop does each interval (at least :meth:`_beat`)."""
        raise NotImplementedError

    async def _reap(self, nodes: list[str] | None) -> list[ConnectionInfo]:
        """Remove the connections of the given nodes (None: every node) that are dead, atomically, so that
        only one janitor in the cluster gets each connection."""
        raise NotImplementedError

    async def _remote(self, connection_id: str, op: int, data: bytes) -> Delivery:
        """Reach a connection that is not on this node."""
        raise NotImplementedError

    # -- the common part ------------------------------------------------------------------------------

    async def start(self, local: LocalConnections) -> None:
        if self._stopped:
            raise RuntimeError(ERR_STOPPED.format(node=self.node))
        if self._lanes is not None:
            return
        self._lanes = Lanes(local)
        await self._join()
        self._loops += [
            asyncio.create_task(self._every(self.heartbeat_interval_s, self._maintain)),
            asyncio.create_task(self._every(self.janitor_interval_s, self.sweep)),
        ]

    def _local(self) -> LocalConnections:
        if self._stopped:
            raise StoreUnavailable(ERR_STOPPED.format(node=self.node))
        if self._lanes is None:
            raise RuntimeError(ERR_NOT_STARTED.format(node=self.node))
        return self._lanes.local

    def _check_add(self, info: ConnectionInfo) -> None:
        self._local()
        if info.node != self.node:
            raise ValueError(
                ERR_FOREIGN.format(connection_id=info.connection_id, owner=info.node, node=self.node)
            )

    async def send(self, connection_id: str, data: bytes, binary: bool = False) -> Delivery:
        check_payload(data)
        local = self._local()
        if connection_id in self._mine:
            done = await local.send(connection_id, data, binary)
            return Delivery.DELIVERED if done else Delivery.GONE
        return await self._remote(connection_id, OP_BINARY if binary else OP_TEXT, data)

    async def close(self, connection_id: str) -> Delivery:
        local = self._local()
        if connection_id in self._mine:
            return Delivery.DELIVERED if await local.close(connection_id) else Delivery.GONE
        return await self._remote(connection_id, OP_CLOSE, b"")

    async def local_ids(self) -> list[str]:
        return list(self._mine)

    async def sweep(self) -> list[ConnectionInfo]:
        await self._beat()
        if not self._may_reap():
            return []
        orphans = await self._reap(None)
        self._orphaned(orphans)
        return orphans

    def _may_reap(self) -> bool:
        """Whether this node has watched long enough, untroubled, to declare others dead."""
        since = self._watching_since
        return since is not None and self.clock() - since >= self.heartbeat_ttl_s

    def _healthy(self) -> None:
        if self._watching_since is None:
            self._watching_since = self.clock()

    def _troubled(self) -> None:
        self._watching_since = None

    def _orphaned(self, orphans: list[ConnectionInfo]) -> None:
        if not orphans:
            return
        log.warning(
            "node %s: %d connection(s) of dead node(s) %s removed",
            self.node,
            len(orphans),
            ", ".join(sorted({info.node for info in orphans})),
        )
        if self.on_orphaned is not None:
            self._spawn(self.on_orphaned(orphans))

    def _close_reaped(self) -> None:
        """Another node declared this one dead and ran ``$disconnect`` for its connections: close them, so
        that no client stays on a connection the application believes gone."""
        doomed = list(self._mine)
        self._forget(doomed)
        log.error(
            "node %s was declared dead by the cluster (no heart-beat for %g s); closing its %d connection(s)",
            self.node,
            self.heartbeat_ttl_s,
            len(doomed),
        )
        if doomed and self._lanes is not None:
            self._spawn(_close_all(self._lanes.local, doomed))

    def _forget(self, connection_ids: Iterable[str]) -> None:
        for connection_id in connection_ids:
            self._mine.pop(connection_id, None)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.create_task(_logged(work))
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    async def _every(self, interval_s: float, work: Callable[[], Awaitable[object]]) -> None:
        while not self._stopped:
            await asyncio.sleep(interval_s)
            try:
                await work()
            except StoreUnavailable:
                pass  # reported once by the outage; the next round tries again
            except Exception:
                log.exception("node %s: connection registry upkeep failed", self.node)

    async def _halt(self) -> None:
        """Cancel the loops, the lanes and the callbacks."""
        self._stopped = True
        await cancel_and_wait([*self._loops, *self._callbacks])
        self._loops = []
        if self._lanes is not None:
            await self._lanes.close()


async def cancel_and_wait(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait until they are done, cancelling again what goes on: on Python 3.11 a
    cancellation that arrives as an ``asyncio.wait_for`` inside completes is lost (redis-py uses it)."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)


async def _close_all(local: LocalConnections, connection_ids: list[str]) -> None:
    for connection_id in connection_ids:
        await local.close(connection_id)


async def _logged(work: Awaitable[None]) -> None:
    try:
        await work
    except Exception:
        log.exception("connection registry callback failed")


# -- memory ----------------------------------------------------------------------------------------------


class MemoryHub:
    """What the nodes of one process share: every connection, every node's heart-beat, and the nodes
    themselves (so that one can hand a request to another). The ``clock`` is the hub's notion of time
    for heart-beats, like Redis' clock for :class:`~portway.websocket.registry_redis.RedisRegistry`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.connections: dict[str, ConnectionInfo] = {}
        self.by_node: dict[str, set[str]] = {}
        self.alive_until: dict[str, float] = {}  # node -> heart-beat expiry, by ``clock``
        self.serving: dict[str, MemoryRegistry] = {}  # nodes taking requests
        self.reaped: set[str] = set()  # nodes declared dead that have not heard it yet

    def alive(self, node: str) -> bool:
        return self.alive_until.get(node, -float("inf")) > self.clock()

    def put(self, info: ConnectionInfo) -> None:
        self.connections[info.connection_id] = info
        self.by_node.setdefault(info.node, set()).add(info.connection_id)

    def drop(self, connection_id: str) -> ConnectionInfo | None:
        info = self.connections.pop(connection_id, None)
        if info is not None:
            ids = self.by_node.get(info.node)
            if ids is not None:
                ids.discard(connection_id)
                if not ids:
                    del self.by_node[info.node]
        return info

    def reap(self, nodes: Iterable[str], spare: str) -> list[ConnectionInfo]:
        """Remove the connections of those ``nodes`` that are dead (never ``spare``, the caller)."""
        orphans: list[ConnectionInfo] = []
        for node in list(nodes):
            if node == spare or self.alive(node):
                continue
            if node in self.alive_until:  # it had started: tell it, should it come back
                self.reaped.add(node)
                del self.alive_until[node]
            for connection_id in sorted(self.by_node.pop(node, ())):
                info = self.connections.pop(connection_id, None)
                if info is not None:
                    orphans.append(info)
        return orphans

    def leave(self, node: str) -> None:
        for connection_id in self.by_node.pop(node, ()):
            self.connections.pop(connection_id, None)
        self.alive_until.pop(node, None)
        self.serving.pop(node, None)
        self.reaped.discard(node)


class MemoryRegistry(NodeCore):
    """The registry of one process. Nodes sharing a :class:`MemoryHub` make a cluster in one process: a
    send to another node's connection goes through that node's lanes, node death and reaping work as on
    Redis. Nothing can fail to be reached, so nothing raises :class:`StoreUnavailable` except
    :class:`NodeUnreachable` (a node that crashed, see :meth:`abandon`, before its heart-beat expired).

    ``touch`` is immediate: ``lastActiveAt`` is never stale.
    """

    name = "memory"

    def __init__(
        self,
        *,
        node: str | None = None,
        hub: MemoryHub | None = None,
        on_orphaned: OnOrphaned | None = None,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        heartbeat_ttl_s: float = DEFAULT_HEARTBEAT_TTL_S,
        janitor_interval_s: float = DEFAULT_JANITOR_INTERVAL_S,
        reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S,
    ) -> None:
        self.hub = hub or MemoryHub()
        super().__init__(
            node,
            on_orphaned,
            heartbeat_interval_s,
            heartbeat_ttl_s,
            janitor_interval_s,
            reply_timeout_s,
            self.hub.clock,
        )

    async def _join(self) -> None:
        self.hub.serving[self.node] = self
        await self._beat()
        self._healthy()

    async def _beat(self) -> None:
        hub = self.hub
        if self.node in hub.reaped:
            hub.reaped.discard(self.node)
            self._close_reaped()
        hub.alive_until[self.node] = hub.clock() + self.heartbeat_ttl_s

    async def _maintain(self) -> None:
        await self._beat()

    async def _reap(self, nodes: list[str] | None) -> list[ConnectionInfo]:
        hub = self.hub
        candidates = set(hub.by_node) | set(hub.alive_until) if nodes is None else nodes
        return hub.reap(sorted(candidates), spare=self.node)

    async def add(self, info: ConnectionInfo) -> None:
        self._check_add(info)
        self._mine[info.connection_id] = info
        self.hub.put(info)

    async def touch(self, connection_id: str, now_ms: int) -> None:
        info = self.hub.connections.get(connection_id)
        if info is not None and now_ms > info.last_active_at_ms:
            self.hub.connections[connection_id] = replace(info, last_active_at_ms=now_ms)

    async def remove(self, connection_id: str) -> None:
        self._mine.pop(connection_id, None)
        self.hub.drop(connection_id)

    async def get(self, connection_id: str) -> ConnectionInfo | None:
        return self.hub.connections.get(connection_id)

    async def _remote(self, connection_id: str, op: int, data: bytes) -> Delivery:
        hub = self.hub
        info = hub.connections.get(connection_id)
        if info is None:
            return Delivery.GONE
        owner = info.node
        if not hub.alive(owner):
            if not self._may_reap():
                raise NodeUnreachable(ERR_NODE_SUSPECT.format(owner=owner))
            self._orphaned(await self._reap([owner]))
            return Delivery.GONE
        serving = hub.serving.get(owner)
        if serving is None or serving._lanes is None:
            raise NodeUnreachable(ERR_NODE_NOT_LISTENING.format(owner=owner))
        future = serving._lanes.submit(connection_id, op, data)
        try:
            async with asyncio.timeout(self.reply_timeout_s):
                return await future
        except TimeoutError:
            raise NodeUnreachable(ERR_NODE_SILENT.format(owner=owner, seconds=self.reply_timeout_s)) from None
        except StoreError:
            raise
        except Exception as exc:  # the owner's sockets failed: what a caller on another host would see
            log.error("node %s: sending to a connection failed", owner, exc_info=exc)
            raise StoreError(ERR_REMOTE_FAILED.format(owner=owner)) from exc

    async def stop(self) -> None:
        if self._stopped:
            return
        self.hub.leave(self.node)
        self._mine.clear()
        await self._halt()

    async def abandon(self) -> None:
        if self._stopped:
            return
        self.hub.serving.pop(self.node, None)
        await self._halt()


# -- by name ---------------------------------------------------------------------------------------------


def open_registry(
    url: str,
    *,
    node: str | None = None,
    namespace: str = "portway",
    on_orphaned: OnOrphaned | None = None,
    hub: MemoryHub | None = None,
) -> ConnectionRegistry:
    """The registry ``url`` names: ``memory`` (one process; ``hub`` shares it between registries) or a
    Redis URL (``namespace`` is the hash tag of every key and channel). Nothing connects until ``start``.

    >>> open_registry("memory", node="a").name
    'memory'
    """
    text = url.strip()
    lowered = text.lower()
    if lowered in ("memory", "memory://", "mem"):
        return MemoryRegistry(node=node, hub=hub, on_orphaned=on_orphaned)
    if lowered.startswith(("redis://", "rediss://", "unix://")):
        from portway.websocket.registry_redis import RedisRegistry

        return RedisRegistry.from_url(text, namespace=namespace, node=node, on_orphaned=on_orphaned)
    raise ValueError(ERR_UNKNOWN_REGISTRY.format(url=url))
