"""One contract for every connection registry: the same tests run against memory and Redis.

Each test builds a small cluster of nodes (registries sharing one :class:`MemoryHub`, or one Redis
namespace). Each node's sockets are a :class:`Sockets`: the gateway side's contract
(:class:`~portway.websocket.registry.LocalConnections`), written here, which records what it was asked to do.
Heart-beats are fast (50 ms, TTL 250 ms) so that node death takes a fraction of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from portway.state.outage import StoreOutage
from portway.state.store import StoreError, StoreUnavailable
from portway.websocket.registry import (
    MAX_PAYLOAD_BYTES,
    ConnectionInfo,
    ConnectionRegistry,
    Delivery,
    MemoryHub,
    MemoryRegistry,
    NodeUnreachable,
    open_registry,
)
from portway.websocket.registry_redis import RedisRegistry
from tests.clock import ManualClock
from tests.redis_fixtures import PrivateRedis, ensure_redis, private_redis

BACKENDS = ["memory", "redis"]
T0_MS = int(time.time()) * 1000
FAST: dict[str, float] = {
    "heartbeat_interval_s": 0.05,
    "heartbeat_ttl_s": 0.25,
    "janitor_interval_s": 0.05,
    "reply_timeout_s": 0.5,
}
BIG = bytes(range(256)) * (MAX_PAYLOAD_BYTES // 256)  # every byte value, at the size limit


class Sockets:
    """One node's WebSocket connections, as the gateway keeps them: a set of open ids, and what each got."""

    def __init__(self) -> None:
        self.open: set[str] = set()
        self.received: dict[str, list[tuple[bytes, bool]]] = {}
        self.closed: list[str] = []
        self.stalled = False  # True: sends hang (a socket whose peer stopped reading)
        self.failing = False  # True: sends raise

    def accept(self, connection_id: str) -> None:
        self.open.add(connection_id)
        self.received[connection_id] = []

    def drop(self, connection_id: str) -> None:
        """The socket went away (the gateway has not told the registry yet)."""
        self.open.discard(connection_id)

    async def send(self, connection_id: str, data: bytes, binary: bool) -> bool:
        if connection_id not in self.open:
            return False
        if self.failing:
            raise RuntimeError("the socket's writer broke")
        if self.stalled:
            await asyncio.Event().wait()
        await asyncio.sleep(0)  # a real socket write yields: order must survive it
        self.received[connection_id].append((data, binary))
        return True

    async def close(self, connection_id: str) -> bool:
        if connection_id not in self.open:
            return False
        self.open.discard(connection_id)
        self.closed.append(connection_id)
        return True


class Node:
    """A started registry with its sockets, and what its ``on_orphaned`` was given."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.sockets = Sockets()
        self.orphans: list[ConnectionInfo] = []
        self.orphaned = asyncio.Event()
        self.registry: ConnectionRegistry

    async def on_orphaned(self, infos: list[ConnectionInfo]) -> None:
        self.orphans += infos
        self.orphaned.set()

    async def connect(self, connection_id: str, user_agent: str | None = "test-agent") -> ConnectionInfo:
        """Accept a connection on this node and register it, as the gateway does after ``$connect``."""
        info = ConnectionInfo(connection_id, self.registry.node, T0_MS, "203.0.113.7", user_agent, T0_MS)
        self.sockets.accept(connection_id)
        await self.registry.add(info)
        return info


class Cluster:
    """Nodes of one backend sharing one hub (memory) or one namespace (Redis)."""

    def __init__(self, backend: str, url: str = "") -> None:
        self.backend = backend
        self.url = url
        self.namespace = f"test-{uuid.uuid4().hex}"
        self.hub = MemoryHub()
        self.nodes: list[Node] = []

    async def node(self, name: str, **options: Any) -> Node:
        node = Node(self, name)
        settings: dict[str, Any] = {**FAST, **options}
        registry: MemoryRegistry | RedisRegistry
        if self.backend == "memory":
            registry = MemoryRegistry(node=name, hub=self.hub, on_orphaned=node.on_orphaned, **settings)
        else:
            registry = RedisRegistry.from_url(
                self.url, namespace=self.namespace, node=name, on_orphaned=node.on_orphaned, **settings
            )
        node.registry = registry
        self.nodes.append(node)
        await registry.start(node.sockets)
        return node

    async def close(self) -> None:
        for node in self.nodes:
            await node.registry.stop()
        if self.backend == "redis":
            with contextlib.suppress(Exception):
                await self.clear()

    async def keys(self) -> list[bytes]:
        async with Redis.from_url(self.url) as raw:
            return sorted([key async for key in raw.scan_iter(match="{" + self.namespace + "}:*")])

    async def clear(self) -> None:
        async with Redis.from_url(self.url) as raw:
            names = [key async for key in raw.scan_iter(match="{" + self.namespace + "}:*")]
            if names:
                await raw.unlink(*names)


@pytest.fixture(params=BACKENDS)
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    backend: str = request.param
    built = Cluster(backend, ensure_redis() if backend == "redis" else "")
    yield built
    await built.close()


@pytest.fixture
def private() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.01)


async def orphaned(node: Node, within_s: float = 3.0) -> list[ConnectionInfo]:
    async with asyncio.timeout(within_s):
        await node.orphaned.wait()
    return sorted(node.orphans, key=lambda info: info.connection_id)


# -- metadata --------------------------------------------------------------------------------------------


async def test_add_get_touch_remove(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    one = await a.connect("c1")
    anonymous = await a.connect("c2", user_agent=None)
    assert await a.registry.get("c1") == one
    assert await b.registry.get("c1") == one
    assert await b.registry.get("c2") == anonymous
    assert sorted(await a.registry.local_ids()) == ["c1", "c2"]
    assert await b.registry.local_ids() == []
    assert await b.registry.get("nobody") is None

    await a.registry.touch("c1", T0_MS + 500)
    await a.registry.touch("c1", T0_MS + 100)  # never backwards
    touched = await a.registry.get("c1")
    assert touched is not None
    assert touched.last_active_at_ms == T0_MS + 500  # exact on the connection's node

    async def seen_on_b() -> bool:  # within one heart-beat interval elsewhere
        info = await b.registry.get("c1")
        return info is not None and info.last_active_at_ms == T0_MS + 500

    await eventually(seen_on_b, within_s=1.0)

    await a.registry.remove("c1")
    await a.registry.remove("c1")  # twice is harmless
    assert await a.registry.get("c1") is None
    assert await b.registry.get("c1") is None
    assert await a.registry.local_ids() == ["c2"]
    await a.registry.touch("c1", T0_MS + 900)  # a late touch does not bring it back
    await asyncio.sleep(0.15)
    assert await b.registry.get("c1") is None


async def test_add_refuses_another_nodes_connection(cluster: Cluster) -> None:
    a = await cluster.node("a")
    with pytest.raises(ValueError, match="belongs to node 'b'"):
        await a.registry.add(ConnectionInfo("c1", "b", T0_MS, "203.0.113.7", None, T0_MS))


# -- sending ---------------------------------------------------------------------------------------------


async def test_send_to_a_local_connection(cluster: Cluster) -> None:
    a = await cluster.node("a")
    await a.connect("c1")
    assert await a.registry.send("c1", b"hello") is Delivery.DELIVERED
    assert await a.registry.send("c1", BIG, binary=True) is Delivery.DELIVERED
    assert a.sockets.received["c1"] == [(b"hello", False), (BIG, True)]
    with pytest.raises(ValueError, match="over the 131072 bytes"):
        await a.registry.send("c1", BIG + b"!")


async def test_send_across_nodes(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    await b.connect("c1")
    assert await a.registry.send("c1", "héllo".encode()) is Delivery.DELIVERED
    assert await a.registry.send("c1", BIG, binary=True) is Delivery.DELIVERED
    assert await a.registry.send("c1", b"", binary=True) is Delivery.DELIVERED
    assert b.sockets.received["c1"] == [("héllo".encode(), False), (BIG, True), (b"", True)]
    with pytest.raises(ValueError, match="over the"):
        await a.registry.send("c1", BIG + b"!", binary=True)


async def test_gone_for_unknown_and_removed_connections(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    assert await a.registry.send("nobody", b"x") is Delivery.GONE
    assert await a.registry.close("nobody") is Delivery.GONE
    await b.connect("c1")
    await b.registry.remove("c1")
    assert await a.registry.send("c1", b"x") is Delivery.GONE
    assert await b.registry.send("c1", b"x") is Delivery.GONE
    await b.connect("c2")
    b.sockets.drop("c2")  # the socket is gone, the registry not told yet: its node answers
    assert await a.registry.send("c2", b"x") is Delivery.GONE
    assert await b.registry.send("c2", b"x") is Delivery.GONE
    assert b.sockets.received["c2"] == []


async def test_close_from_another_node(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    await b.connect("c1")
    await b.connect("c2")
    assert await a.registry.close("c1") is Delivery.DELIVERED
    assert b.sockets.closed == ["c1"]
    assert await a.registry.close("c1") is Delivery.GONE  # closed already
    assert await b.registry.close("c2") is Delivery.DELIVERED  # the local way
    assert b.sockets.closed == ["c1", "c2"]


async def test_concurrent_sends_are_delivered_in_order_per_connection(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    await b.connect("c1")
    await b.connect("c2")
    messages = [(f"c{1 + n % 2}", f"message {n}".encode()) for n in range(100)]
    answers = await asyncio.gather(*(a.registry.send(target, body) for target, body in messages))
    assert answers == [Delivery.DELIVERED] * 100
    for target in ("c1", "c2"):
        expected = [(body, False) for name, body in messages if name == target]
        assert b.sockets.received[target] == expected


async def test_a_failing_socket_is_an_error_not_gone(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    await b.connect("c1")
    b.sockets.failing = True
    with caplog.at_level(logging.CRITICAL, logger="portway.websocket"), pytest.raises(StoreError) as failed:
        await a.registry.send("c1", b"x")
    assert not isinstance(failed.value, StoreUnavailable)


async def test_a_node_that_does_not_answer_is_unreachable(cluster: Cluster) -> None:
    a, b = await cluster.node("a", reply_timeout_s=0.2), await cluster.node("b")
    await b.connect("c1")
    b.sockets.stalled = True
    started = time.monotonic()
    with pytest.raises(NodeUnreachable, match=r"did not answer within 0\.2 s"):
        await a.registry.send("c1", b"x")
    assert time.monotonic() - started < 1.0


# -- nodes leaving and dying -----------------------------------------------------------------------------


async def test_a_stopped_nodes_connections_vanish(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    await b.connect("c1")
    await b.connect("c2")
    await b.registry.stop()
    await b.registry.stop()  # idempotent
    assert await a.registry.get("c1") is None
    assert await a.registry.send("c2", b"x") is Delivery.GONE
    assert await a.registry.close("c1") is Delivery.GONE
    with pytest.raises(StoreUnavailable, match="stopped"):
        await b.registry.send("c1", b"x")
    await asyncio.sleep(0.4)  # past the heart-beat TTL: a clean leave orphans nothing
    assert a.orphans == []
    if cluster.backend == "redis":  # nothing of b is left
        tag = "{" + cluster.namespace + "}:ws:"
        assert await cluster.keys() == [f"{tag}alive:a".encode(), f"{tag}nodes".encode()]


async def test_a_dead_nodes_connections_are_reaped_once(cluster: Cluster) -> None:
    a, b, c = await cluster.node("a"), await cluster.node("b"), await cluster.node("c")
    one = await b.connect("c1")
    two = await b.connect("c2", user_agent=None)
    await a.connect("a1")
    await b.registry.abandon()  # a crash: tasks gone, nothing removed
    # The first janitor to notice takes them all; the other gets none of them.
    async with asyncio.timeout(3.0):
        await asyncio.wait(
            [asyncio.create_task(a.orphaned.wait()), asyncio.create_task(c.orphaned.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
    await asyncio.sleep(0.2)
    assert sorted(a.orphans + c.orphans, key=lambda info: info.connection_id) == [one, two]
    assert not (a.orphans and c.orphans)
    assert await a.registry.get("c1") is None
    assert await c.registry.send("c2", b"x") is Delivery.GONE
    assert await c.registry.send("a1", b"x") is Delivery.DELIVERED  # the living are left alone


async def test_a_send_to_a_dead_node_reaps_it(cluster: Cluster) -> None:
    a = await cluster.node("a", janitor_interval_s=60.0)  # no janitor: the send finds out
    b = await cluster.node("b")
    one = await b.connect("c1")
    two = await b.connect("c2")
    await b.registry.abandon()
    with pytest.raises(NodeUnreachable):  # its heart-beat has not expired yet
        await a.registry.send("c1", b"x")
    await asyncio.sleep(0.35)
    assert await a.registry.send("c1", b"x") is Delivery.GONE
    assert await orphaned(a) == [one, two]
    assert await a.registry.get("c2") is None


async def test_the_janitor_waits_a_whole_ttl_before_reaping(cluster: Cluster) -> None:
    b = await cluster.node("b")
    await b.connect("c1")
    await b.registry.abandon()
    await asyncio.sleep(0.3)  # b is dead by now
    a = await cluster.node("a", janitor_interval_s=60.0)
    assert await a.registry.sweep() == []  # a has not watched for a TTL yet: it could be the one cut off
    with pytest.raises(NodeUnreachable, match="not yet declared dead"):
        await a.registry.send("c1", b"x")
    await asyncio.sleep(0.3)
    assert [info.connection_id for info in await a.registry.sweep()] == ["c1"]
    assert [info.connection_id for info in await orphaned(a)] == ["c1"]


# -- memory only -----------------------------------------------------------------------------------------


async def test_memory_liveness_follows_the_hubs_clock() -> None:
    clock = ManualClock(1000.0)
    hub = MemoryHub(clock=clock)
    orphans: list[ConnectionInfo] = []

    async def collect(infos: list[ConnectionInfo]) -> None:
        orphans.extend(infos)

    # Default intervals (seconds of real time): only the manual clock and sweep() move anything here.
    a = MemoryRegistry(node="a", hub=hub, on_orphaned=collect)
    b = MemoryRegistry(node="b", hub=hub)
    c = MemoryRegistry(node="c", hub=hub)
    sockets_b, sockets_c = Sockets(), Sockets()
    for registry, sockets in ((a, Sockets()), (b, sockets_b), (c, sockets_c)):
        await registry.start(sockets)
    info = ConnectionInfo("b1", "b", T0_MS, "203.0.113.7", None, T0_MS)
    sockets_b.accept("b1")
    await b.add(info)
    sockets_c.accept("c1")
    await c.add(ConnectionInfo("c1", "c", T0_MS, "203.0.113.7", None, T0_MS))
    await b.abandon()
    clock.advance(5.0)
    assert await a.sweep() == []  # within the 6 s TTL
    assert await c.sweep() == []  # c beats
    clock.advance(2.0)
    assert await a.sweep() == [info]
    await asyncio.sleep(0)
    assert orphans == [info]
    clock.advance(7.0)  # c has not beaten for longer than the TTL: a declares it dead …
    assert [found.connection_id for found in await a.sweep()] == ["c1"]
    assert await c.sweep() == []  # … and c, back, learns it and closes its sockets
    await asyncio.sleep(0)
    assert sockets_c.closed == ["c1"]
    assert await c.local_ids() == []
    for registry in (a, b, c):
        await registry.stop()


async def test_open_registry_by_name() -> None:
    memory = open_registry("memory", node="n1")
    assert isinstance(memory, MemoryRegistry)
    assert memory.node == "n1"
    redis = open_registry("redis://127.0.0.1:1/0", namespace="shop", node="n2")
    assert isinstance(redis, RedisRegistry)
    assert (redis.namespace, redis.node) == ("shop", "n2")
    assert len(open_registry("memory").node) > 8  # host-pid-random by default
    with pytest.raises(ValueError, match="memory, redis://"):
        open_registry("mongodb://db")
    with pytest.raises(ValueError, match="namespace"):
        RedisRegistry(namespace="a}b")
    with pytest.raises(ValueError, match="heartbeat_ttl_s"):
        MemoryRegistry(heartbeat_interval_s=2.0, heartbeat_ttl_s=2.0)
    await redis.stop()


# -- Redis only ------------------------------------------------------------------------------------------


async def test_every_redis_key_and_channel_carries_the_hash_tag(redis_url: str) -> None:
    cluster = Cluster("redis", redis_url)
    try:
        a, b = await cluster.node("a"), await cluster.node("b")
        await a.connect("c1")
        await b.connect("c2")
        await a.registry.touch("c1", T0_MS + 1)
        assert await b.registry.send("c1", b"x") is Delivery.DELIVERED
        tag = ("{" + cluster.namespace + "}:ws:").encode()
        keys = await cluster.keys()
        assert keys
        assert all(key.startswith(tag) for key in keys)
        async with Redis.from_url(redis_url) as raw:
            channels = await raw.pubsub_channels(tag + b"*")
        assert sorted(channels) == [tag + b"inbox:a", tag + b"inbox:b"]
    finally:
        await cluster.close()


async def test_redis_node_declared_dead_closes_its_sockets(redis_url: str) -> None:
    cluster = Cluster("redis", redis_url)
    try:
        a = await cluster.node("a", janitor_interval_s=60.0)
        b = await cluster.node("b", heartbeat_interval_s=0.2, heartbeat_ttl_s=0.3, janitor_interval_s=60.0)
        await b.connect("c1")
        await asyncio.sleep(0.3)  # a has watched for a TTL
        async with Redis.from_url(redis_url) as raw:  # b stalled past its TTL, as a frozen process would
            await raw.delete("{" + cluster.namespace + "}:ws:alive:b")
        assert [info.connection_id for info in await a.registry.sweep()] == ["c1"]
        await b.registry.sweep()  # b beats again, and learns it was declared dead

        async def closed() -> bool:
            return b.sockets.closed == ["c1"]

        await eventually(closed)
        assert await b.registry.local_ids() == []
    finally:
        await cluster.close()


async def test_redis_restart_is_survived(private: PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    cluster = Cluster("redis", private.url)
    try:
        outages = {name: StoreOutage(f"connections of {name}", "remote sends fail") for name in "ab"}
        a = await cluster.node("a", outage=outages["a"])
        b = await cluster.node("b", outage=outages["b"])
        await b.connect("c1")
        await a.connect("a1")
        assert await a.registry.send("c1", b"before") is Delivery.DELIVERED
        with caplog.at_level(logging.WARNING, logger="portway.state"):
            private.kill()
            with pytest.raises(StoreUnavailable):
                await a.registry.send("c1", b"lost")
            assert await b.registry.send("c1", b"local") is Delivery.DELIVERED  # local sends still work
            info = await b.registry.get("c1")  # and so does a connection's own info
            assert info is not None
            assert info.node == "b"
            await b.registry.touch("c1", T0_MS + 10)
            with pytest.raises(StoreUnavailable):
                await b.connect("c2")  # kept by b all the same: written once Redis is back
            await asyncio.sleep(0.2)
            private.start()  # empty: everything Redis held is lost

            async def delivered() -> bool:
                with contextlib.suppress(StoreUnavailable):
                    delivery = await a.registry.send("c1", b"after")
                    assert delivery is not Delivery.GONE  # never, while b writes it again
                    return True
                return False

            await eventually(delivered, within_s=5.0)
            assert await b.registry.send("c1", b"again") is Delivery.DELIVERED
            assert await a.registry.send("c2", b"new") is Delivery.DELIVERED
            assert await b.registry.send("a1", b"back") is Delivery.DELIVERED

            async def touched() -> bool:
                seen = await a.registry.get("c1")
                return seen is not None and seen.last_active_at_ms == T0_MS + 10

            await eventually(touched)
        bodies = [body for body, _ in b.sockets.received["c1"]]
        assert bodies[:2] == [b"before", b"local"]
        assert bodies[-2:] == [b"after", b"again"]
        for name in "ab":
            lines = [record for record in caplog.records if f"connections of {name}:" in record.getMessage()]
            assert [record.levelno for record in lines] == [logging.ERROR, logging.WARNING]  # down, back
        await asyncio.sleep(0.4)
        assert a.orphans == b.orphans == []  # nobody was declared dead
    finally:
        await cluster.close()


async def test_redis_add_during_an_outage_is_written_later(private: PrivateRedis) -> None:
    cluster = Cluster("redis", private.url)
    try:
        a, b = await cluster.node("a"), await cluster.node("b")
        private.kill()
        b.sockets.accept("c1")
        info = ConnectionInfo("c1", "b", T0_MS, "203.0.113.7", None, T0_MS)
        with pytest.raises(StoreUnavailable):
            await b.registry.add(info)
        assert await b.registry.send("c1", b"local") is Delivery.DELIVERED
        b.sockets.accept("c2")
        with pytest.raises(StoreUnavailable):
            await b.registry.add(ConnectionInfo("c2", "b", T0_MS, "203.0.113.7", None, T0_MS))
        await b.registry.remove("c2")  # refused after all: never written
        private.start()

        async def known() -> bool:
            with contextlib.suppress(StoreUnavailable):
                return await a.registry.get("c1") == info
            return False

        await eventually(known)
        assert await a.registry.get("c2") is None
    finally:
        await cluster.close()


async def test_redis_frozen_fails_fast_then_catches_up(private: PrivateRedis) -> None:
    cluster = Cluster("redis", private.url)
    try:
        a = await cluster.node("a", connect_timeout_s=0.1, timeout_s=0.1)
        b = await cluster.node("b", connect_timeout_s=0.1, timeout_s=0.1)
        await b.connect("c1")
        await b.connect("c2")
        private.pause()  # nothing answers; nothing is lost
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await a.registry.send("c1", b"x")
        assert time.monotonic() - started < 1.5
        await b.registry.remove("c2")  # never raises: retried
        await b.registry.touch("c1", T0_MS + 7)  # buffered
        with pytest.raises(StoreUnavailable):
            await b.connect("c3")  # b's all the same: written later
        private.resume()

        async def caught_up() -> bool:
            with contextlib.suppress(StoreUnavailable):
                one, two, three = [await a.registry.get(name) for name in ("c1", "c2", "c3")]
                return (
                    one is not None
                    and one.last_active_at_ms == T0_MS + 7
                    and two is None
                    and three is not None
                )
            return False

        await eventually(caught_up)

        async def delivered() -> bool:  # once b's subscription is back (NodeUnreachable until then)
            with contextlib.suppress(StoreUnavailable):
                return await a.registry.send("c3", b"y") is Delivery.DELIVERED
            return False

        await eventually(delivered)
    finally:
        await cluster.close()


async def test_redis_flood_keeps_the_owner_subscribed(private: PrivateRedis) -> None:
    """Redis drops a subscriber that falls too far behind: the sender's window keeps the owner under it.
    (Without the window, max_in_flight_bytes=1 GB, this flood costs b its subscription.)"""
    async with Redis.from_url(private.url) as raw:
        await raw.config_set("client-output-buffer-limit", "pubsub 256kb 128kb 60")
    cluster = Cluster("redis", private.url)
    try:
        a = await cluster.node("a", max_in_flight_bytes=192 * 1024)
        b = await cluster.node("b")
        await b.connect("c1")
        bodies = [bytes([n]) * MAX_PAYLOAD_BYTES for n in range(64)]  # 8 MB at once
        answers = await asyncio.gather(*(a.registry.send("c1", body, binary=True) for body in bodies))
        assert answers == [Delivery.DELIVERED] * 64
        assert [body for body, _ in b.sockets.received["c1"]] == bodies
    finally:
        await cluster.close()
