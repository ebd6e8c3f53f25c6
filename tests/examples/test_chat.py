"""The example chat room (examples/chat/) end to end: real `websockets` clients, a real gateway serving the
example's own files (its native chat.yaml and its SAM template.yaml, the same handlers behind both).

Each test serves a copy of the example folder in its own tmp_path, as the Product API's test does: the files
run exactly as shipped, and the SQLite file the handlers share (``CHAT_DB: chat.db`` in functions.yaml and
template.yaml, resolved next to chat.py) lands in that copy. So every test starts with an empty room, and the
test can read and write the same table the handlers use.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import GatewayFactory, RunningGateway

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chat"
TIMEOUT = 10.0  # seconds: every wait for the gateway is bounded by it
STALE_ID = "R2hvc3RDb25uSWQ="  # shaped like a connection id, of a connection that is not open


def _help_text() -> str:
    spec = importlib.util.spec_from_file_location("portway_example_chat", EXAMPLE / "chat.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.HELP)


HELP = _help_text()


@dataclass
class Chat:
    gateway: RunningGateway
    db: Path  # the SQLite file the handlers keep connections in

    def url(self, name: str | None) -> str:
        return f"ws://127.0.0.1:{self.gateway.port}/dev" + (f"?name={name}" if name else "")

    def names(self) -> list[str]:
        """Who is in the room, by the handlers' table."""
        with sqlite3.connect(self.db, timeout=TIMEOUT) as db:
            return sorted(name for (name,) in db.execute("SELECT name FROM connections"))

    def ids(self) -> set[str]:
        with sqlite3.connect(self.db, timeout=TIMEOUT) as db:
            return {connection_id for (connection_id,) in db.execute("SELECT connection_id FROM connections")}


@pytest.fixture(params=["chat.yaml", "template.yaml"])
def chat(request: pytest.FixtureRequest, tmp_path: Path, gateway_factory: GatewayFactory) -> Chat:
    folder = tmp_path / "chat"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("*.db", "*.db-*", "__pycache__"))
    # stage=None: the definition's own stage ("dev" in both), as `portway serve` picks it.
    gateway = gateway_factory(folder / str(request.param), stage=None)
    return Chat(gateway, folder / "chat.db")


@asynccontextmanager
async def room(chat: Chat, *names: str) -> AsyncIterator[list[ClientConnection]]:
    """Clients joined one after another, each one's "joined" seen by those already in; closed after."""
    async with AsyncExitStack() as stack:
        clients: list[ClientConnection] = []
        for name in names:
            ws = await stack.enter_async_context(connect(chat.url(name), open_timeout=TIMEOUT))
            for earlier in clients:
                assert await receive(earlier) == f"* {name} joined"
            clients.append(ws)
        yield clients


async def receive(ws: ClientConnection) -> str:
    message = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(message, str)
    return message


async def say(ws: ClientConnection, data: str) -> None:
    await ws.send(json.dumps({"action": "sendmessage", "data": data}))


async def wait_for(condition: str, check: Callable[[], bool]) -> None:
    """Poll ``check()`` until it is true, at most TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {condition}"
        await asyncio.sleep(0.02)


async def test_three_join_and_all_hear_a_message_with_its_senders_name(chat: Chat) -> None:
    async with room(chat, "ann", "bob", "cat") as (ann, bob, cat):
        assert chat.names() == ["ann", "bob", "cat"]
        await say(bob, "hello, everyone")
        for ws in (ann, bob, cat):  # the sender gets its own copy too, as in AWS's sample
            assert await receive(ws) == "bob: hello, everyone"


async def test_one_leaves_and_the_others_keep_chatting(chat: Chat) -> None:
    async with room(chat, "ann", "bob", "cat") as (ann, bob, cat):
        await bob.close()
        assert await receive(ann) == "* bob left"
        assert await receive(cat) == "* bob left"
        assert chat.names() == ["ann", "cat"]  # $disconnect deleted bob's row before it told the others
        await say(cat, "just us now")
        assert await receive(ann) == "cat: just us now"
        assert await receive(cat) == "cat: just us now"
        with pytest.raises(ConnectionClosed):
            await say(bob, "am I still here?")


async def test_a_stale_connection_is_removed_on_the_next_broadcast(chat: Chat) -> None:
    async with room(chat, "ann", "bob") as (ann, bob):
        live = chat.ids()
        with sqlite3.connect(chat.db, timeout=TIMEOUT) as db:  # a row whose client left unnoticed
            db.execute("INSERT INTO connections VALUES (?, ?, ?)", (STALE_ID, "ghost", 0))
        assert chat.names() == ["ann", "bob", "ghost"]
        await say(ann, "anyone there?")
        assert await receive(ann) == "ann: anyone there?"
        assert await receive(bob) == "ann: anyone there?"
        # The post to the ghost answered 410 (GoneException): the handler deleted its row, only its row.
        await wait_for("the stale row to go", lambda: STALE_ID not in chat.ids())
        assert chat.ids() == live
        await say(bob, "still works")
        assert await receive(ann) == "bob: still works"


async def test_anything_but_sendmessage_gets_the_help_text(chat: Chat) -> None:
    async with room(chat, "ann", "bob") as (ann, bob):
        await ann.send("hello?")  # not JSON: $default, a two-way route
        assert await receive(ann) == HELP
        await ann.send(json.dumps({"action": "dance"}))  # no such route: $default
        assert await receive(ann) == HELP
        await ann.send(json.dumps({"action": "sendmessage"}))  # no data: the sender is told, no one else
        assert await receive(ann) == HELP
        await say(ann, "sorry")
        # bob heard none of it: his next message is ann's real one.
        assert await receive(bob) == "ann: sorry"
        assert await receive(ann) == "ann: sorry"


async def test_a_client_without_a_name_is_a_guest(chat: Chat) -> None:
    async with room(chat, "ann") as (ann,), connect(chat.url(None), open_timeout=TIMEOUT) as anonymous:
        joined = await receive(ann)
        assert re.fullmatch(r"\* guest-\S{4} joined", joined)
        guest = joined[2 : -len(" joined")]
        assert chat.names() == ["ann", guest]
        await say(anonymous, "hi")
        assert await receive(ann) == f"{guest}: hi"
        assert await receive(anonymous) == f"{guest}: hi"
