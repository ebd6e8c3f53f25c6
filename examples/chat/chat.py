"""The chat room's Lambda handlers: AWS's simple-websockets-chat-app, in Python with boto3.

* ``on_connect`` (``$connect``): join. Stores the connection id and its name (``?name=ann`` in the URL, else
  ``guest-XXXX``) and tells the others ``* ann joined``.
* ``send_message`` (``sendmessage``, ``{"action": "sendmessage", "data": "hi"}``): sends ``ann: hi`` to every
  stored connection through the ``@connections`` API. A connection that answers 410 (GoneException) left
  without its ``$disconnect`` removing it; its row is deleted.
* ``on_disconnect`` (``$disconnect``): leave. Deletes the row and tells the others ``* ann left``.
* ``default`` (``$default``, a two-way route): answers :data:`HELP`, so a client that sends anything else
  learns the protocol.

AWS's sample keeps connections in DynamoDB. Here they are in a SQLite file, because each function runs in
its own warm worker processes and the file is what they share. Its path comes from ``CHAT_DB``, which
``functions.yaml`` and ``template.yaml`` set. A relative path is resolved next to this file. The table is
created on first use, in WAL mode so readers never wait for the writer. Only the standard library and boto3
are used.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

__all__ = ["HELP", "callback_url", "db_path", "default", "on_connect", "on_disconnect", "send_message"]

MODULE_DIR = Path(__file__).resolve().parent
DEFAULT_DB = "chat.db"
MAX_NAME = 32
HELP = 'This is a chat room. To talk to everyone here, send {"action": "sendmessage", "data": "your message"}'

_SCHEMA = """
CREATE TABLE IF NOT EXISTS connections (
    connection_id TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    connected_at  INTEGER NOT NULL
)
"""
_NOT_IN_A_NAME = re.compile(r"[\x00-\x1f\x7f]+")

Event = dict[str, Any]
Result = dict[str, Any]


# --- the connections table ----------------------------------------------------------------------------------


def db_path() -> Path:
    """The SQLite file: ``CHAT_DB``, relative to this file's folder unless absolute."""
    path = Path(os.environ.get("CHAT_DB") or DEFAULT_DB)
    return path if path.is_absolute() else MODULE_DIR / path


@functools.cache
def _database() -> sqlite3.Connection:
    """One connection per worker process, kept warm between invocations, as a DynamoDB client would be."""
    # Autocommit (each statement is its own transaction); wait up to 10 s when another worker is writing.
    db = sqlite3.connect(db_path(), timeout=10, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(_SCHEMA)
    return db


def _name_of(connection_id: str) -> str | None:
    row = (
        _database()
        .execute("SELECT name FROM connections WHERE connection_id = ?", (connection_id,))
        .fetchone()
    )
    return str(row[0]) if row else None


# --- the @connections API -----------------------------------------------------------------------------------


def _is_local(domain: str) -> bool:
    """Whether ``domainName`` is a local gateway's (``127.0.0.1:3001``, ``localhost:3001``, an IP): API
    Gateway's own are host names without a port."""
    host, colon, port = domain.rpartition(":")
    if not colon or not port.isdigit():
        host, port = domain, ""
    host = host.strip("[]")
    if port or host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def callback_url(event: Event) -> str:
    """The ``@connections`` endpoint of the stage the event came through."""
    context = event["requestContext"]
    domain, stage = context["domainName"], context["stage"]
    # The one line to adapt. On AWS the callback URL is https://{api-id}.execute-api.{region}.amazonaws.com/
    # {stage}; a local gateway (`portway serve`) serves it over plain http on its own address (domainName is
    # then 127.0.0.1:3001). Gateway somewhere else (behind TLS, say)? Set the scheme it needs here.
    scheme = "http" if _is_local(domain) else "https"
    return f"{scheme}://{domain}/{stage}"


@functools.cache
def _management(endpoint: str) -> Any:
    """An ``apigatewaymanagementapi`` client, one per endpoint, kept between invocations."""
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        config=Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 2}),
    )


def _post(event: Event, connection_id: str, text: str) -> bool:
    """Send ``text`` to one connection; False (and its row deleted) when it is gone."""
    client = _management(callback_url(event))
    try:
        client.post_to_connection(ConnectionId=connection_id, Data=text.encode("utf-8"))
    except client.exceptions.GoneException:
        # 410: the client left and its $disconnect did not remove it (a stale row). Forget it.
        _database().execute("DELETE FROM connections WHERE connection_id = ?", (connection_id,))
        print(f"removed stale connection {connection_id}")
        return False
    except (ClientError, BotoCoreError) as exc:  # one failure does not stop the others' messages
        print(f"could not post to {connection_id}: {exc}")
        return False
    return True


def _broadcast(event: Event, text: str, *, skip: str | None = None) -> int:
    """Send ``text`` to every stored connection but ``skip``; how many it reached."""
    rows = _database().execute("SELECT connection_id FROM connections ORDER BY connected_at").fetchall()
    return sum(_post(event, connection_id, text) for (connection_id,) in rows if connection_id != skip)


# --- the handlers -------------------------------------------------------------------------------------------


def on_connect(event: Event, context: Any) -> Result:
    connection_id = event["requestContext"]["connectionId"]
    query = event.get("queryStringParameters") or {}
    name = _NOT_IN_A_NAME.sub(" ", query.get("name") or "").strip()[:MAX_NAME]
    name = name or f"guest-{connection_id[:4]}"
    connected_at = event["requestContext"].get("connectedAt", 0)
    _database().execute(
        "INSERT OR REPLACE INTO connections (connection_id, name, connected_at) VALUES (?, ?, ?)",
        (connection_id, name, connected_at),
    )
    # Not to the new connection itself: it is not open until this handler has said yes.
    _broadcast(event, f"* {name} joined", skip=connection_id)
    return {"statusCode": 200, "body": "Connected."}


def on_disconnect(event: Event, context: Any) -> Result:
    connection_id = event["requestContext"]["connectionId"]
    name = _name_of(connection_id)
    _database().execute("DELETE FROM connections WHERE connection_id = ?", (connection_id,))
    if name is not None:
        _broadcast(event, f"* {name} left", skip=connection_id)
    return {"statusCode": 200, "body": "Disconnected."}


def send_message(event: Event, context: Any) -> Result:
    connection_id = event["requestContext"]["connectionId"]
    try:
        message = json.loads(event.get("body") or "")
    except ValueError:
        message = None
    data = message.get("data") if isinstance(message, dict) else None
    if not isinstance(data, str) or not data.strip():
        # A one-way route sends nothing back by itself: tell the sender through @connections.
        _post(event, connection_id, HELP)
        return {"statusCode": 400, "body": "No data to send."}
    name = _name_of(connection_id) or f"guest-{connection_id[:4]}"
    _broadcast(event, f"{name}: {data}")
    return {"statusCode": 200, "body": "Data sent."}


def default(event: Event, context: Any) -> Result:
    """A two-way route: the ``body`` goes back to the client that sent the message."""
    return {"statusCode": 200, "body": HELP}
