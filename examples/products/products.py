"""Product API: one Lambda proxy handler serving every route of ``openapi.yaml``.

Routes (API Gateway REST API, Lambda proxy integration, payload format 1.0):

* ``GET    /products``       list, filtered by ``category`` (exact) and ``limit`` (1-100, default 20)
* ``POST   /products``       create -> 201 + ``Location: /products/{id}``
* ``GET    /products/{id}``  fetch one -> 200 / 404
* ``PUT    /products/{id}``  replace -> 200 / 404
* ``DELETE /products/{id}``  delete -> 204 / 404

Products live in a SQLite file whose path comes from the ``PRODUCTS_DB`` environment
variable (default ``products.db`` next to this module; a relative path is resolved against
this module's folder). The table is created, and seeded with a few sample products, the
first time the database is used. Pure standard library.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

__all__ = ["close_connection", "get_connection", "handler"]

MODULE_DIR = Path(__file__).resolve().parent
DEFAULT_DB = "products.db"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100

JSON_HEADERS = {"Content-Type": "application/json"}

_LIMIT_RE = re.compile(r"[0-9]{1,4}")

_SCHEMA = (
    """
    CREATE TABLE products (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        category    TEXT NOT NULL,
        price       REAL NOT NULL,
        description TEXT,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    )
    """,
    "CREATE INDEX products_category_name ON products (category, name)",
)

_SEED: tuple[tuple[str, str, float, str | None], ...] = (
    ("Espresso Machine", "kitchen", 249.0, "15-bar pump espresso machine with milk frother."),
    ("Chef's Knife", "kitchen", 89.5, "20 cm forged stainless steel chef's knife."),
    ("Trail Running Shoes", "outdoor", 129.99, None),
    ("Wireless Headphones", "electronics", 199.0, "Over-ear, noise cancelling, 30 h battery."),
)

_COLUMNS = "id, name, category, price, description, created_at, updated_at"


class Product(TypedDict):
    id: str
    name: str
    category: str
    price: float
    description: str | None
    createdAt: str
    updatedAt: str


class ProductFields(TypedDict):
    name: str
    category: str
    price: float
    description: str | None


class BadRequest(Exception):
    """The request is invalid; the message is returned to the client with a 400."""


# One connection per warm worker process, reused across invocations (Lambda best practice).
_conn: sqlite3.Connection | None = None
_conn_path: Path | None = None


# --------------------------------------------------------------------------- database


def _db_path() -> Path:
    path = Path(os.environ.get("PRODUCTS_DB") or DEFAULT_DB).expanduser()
    if not path.is_absolute():
        path = MODULE_DIR / path
    return path


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _initialise(conn: sqlite3.Connection) -> None:
    """Create the table and seed it, once, even with several worker processes racing."""
    conn.execute("BEGIN IMMEDIATE")  # takes the write lock: only one process creates and seeds
    try:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'products'"
        ).fetchone()
        if exists is None:
            for statement in _SCHEMA:
                conn.execute(statement)
            now = _now()
            conn.executemany(
                f"INSERT INTO products ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (str(uuid.uuid4()), name, category, price, description, now, now)
                    for name, category, price, description in _SEED
                ],
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def get_connection() -> sqlite3.Connection:
    """The process-wide connection, opened (and the database initialised) on first use."""
    global _conn, _conn_path
    path = _db_path()
    if _conn is not None and _conn_path == path:
        return _conn
    close_connection()
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: autocommit; each statement is its own transaction unless BEGIN is issued.
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")  # readers don't block the writer across workers
        _initialise(conn)
    except BaseException:
        conn.close()
        raise
    _conn, _conn_path = conn, path
    return conn


def close_connection() -> None:
    """Close the cached connection (tests use this; the next invocation reopens it)."""
    global _conn, _conn_path
    if _conn is not None:
        _conn.close()
    _conn, _conn_path = None, None


def _row_to_product(row: sqlite3.Row) -> Product:
    return {
        "id": row["id"],
        "name": row["name"],
        "category": row["category"],
        "price": row["price"],
        "description": row["description"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }


def _fetch(conn: sqlite3.Connection, product_id: str) -> Product | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM products WHERE id = ?", (product_id,)).fetchone()
    return None if row is None else _row_to_product(row)


# --------------------------------------------------------------------------- responses


def _response(status: int, payload: object = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A Lambda proxy integration result."""
    if status == 204:
        return {"statusCode": 204, "headers": dict(headers or {}), "body": "", "isBase64Encoded": False}
    return {
        "statusCode": status,
        "headers": {**JSON_HEADERS, **(headers or {})},
        "body": json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return _response(status, {"message": message}, headers)


def _not_found() -> dict[str, Any]:
    return _error(404, "Product not found")


# --------------------------------------------------------------------------- request parsing


def _query_params(event: dict[str, Any]) -> dict[str, str]:
    params = event.get("queryStringParameters")
    return params if isinstance(params, dict) else {}


def _parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if _LIMIT_RE.fullmatch(raw) is None or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer between 1 and {MAX_LIMIT}")
    return int(raw)


def _reject_constant(name: str) -> float:
    raise BadRequest(f"Request body is not valid JSON: {name} is not allowed")


def _json_body(event: dict[str, Any]) -> object:
    body = event.get("body")
    if body is None or body == "":
        raise BadRequest("Request body is required")
    if not isinstance(body, str):
        raise BadRequest("Request body must be a JSON object")
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest("Request body is not valid base64-encoded UTF-8") from None
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc.msg}") from None


def _product_fields(event: dict[str, Any]) -> ProductFields:
    """Validate a NewProduct body: name, category (non-empty strings), price (number >= 0)."""
    data = _json_body(event)
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("name is required and must be a non-empty string")
    category = data.get("category")
    if not isinstance(category, str) or not category.strip():
        raise BadRequest("category is required and must be a non-empty string")
    price = data.get("price")
    # bool is an int subclass: true/false are not prices.
    if isinstance(price, bool) or not isinstance(price, int | float) or not math.isfinite(price):
        raise BadRequest("price is required and must be a number")
    if price < 0:
        raise BadRequest("price must be greater than or equal to 0")
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise BadRequest("description must be a string")
    return {
        "name": name.strip(),
        "category": category.strip(),
        "price": float(price),
        "description": description,
    }


def _product_id(event: dict[str, Any]) -> str | None:
    params = event.get("pathParameters")
    if isinstance(params, dict):
        value = params.get("id")
        if isinstance(value, str) and value:
            return value
    return None


# --------------------------------------------------------------------------- operations


def list_products(event: dict[str, Any]) -> dict[str, Any]:
    params = _query_params(event)
    limit = _parse_limit(params.get("limit"))
    category = params.get("category")
    sql = f"SELECT {_COLUMNS} FROM products"
    args: list[object] = []
    if category:
        sql += " WHERE category = ?"
        args.append(category)
    sql += " ORDER BY name COLLATE NOCASE, name, id LIMIT ?"
    args.append(limit)
    items = [_row_to_product(row) for row in get_connection().execute(sql, args)]
    return _response(200, {"items": items, "count": len(items)})


def create_product(event: dict[str, Any]) -> dict[str, Any]:
    fields = _product_fields(event)
    now = _now()
    product: Product = {"id": str(uuid.uuid4()), **fields, "createdAt": now, "updatedAt": now}
    get_connection().execute(
        f"INSERT INTO products ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            product["id"],
            product["name"],
            product["category"],
            product["price"],
            product["description"],
            product["createdAt"],
            product["updatedAt"],
        ),
    )
    return _response(201, product, {"Location": f"/products/{product['id']}"})


def get_product(event: dict[str, Any]) -> dict[str, Any]:
    product_id = _product_id(event)
    product = None if product_id is None else _fetch(get_connection(), product_id)
    return _not_found() if product is None else _response(200, product)


def replace_product(event: dict[str, Any]) -> dict[str, Any]:
    product_id = _product_id(event)
    if product_id is None:
        return _not_found()
    fields = _product_fields(event)
    conn = get_connection()
    cursor = conn.execute(
        "UPDATE products SET name = ?, category = ?, price = ?, description = ?, updated_at = ? WHERE id = ?",
        (fields["name"], fields["category"], fields["price"], fields["description"], _now(), product_id),
    )
    if cursor.rowcount == 0:
        return _not_found()
    product = _fetch(conn, product_id)
    return _not_found() if product is None else _response(200, product)


def delete_product(event: dict[str, Any]) -> dict[str, Any]:
    product_id = _product_id(event)
    if product_id is None:
        return _not_found()
    cursor = get_connection().execute("DELETE FROM products WHERE id = ?", (product_id,))
    return _not_found() if cursor.rowcount == 0 else _response(204)


# --------------------------------------------------------------------------- routing

Operation = Callable[[dict[str, Any]], dict[str, Any]]

ROUTES: dict[str, dict[str, Operation]] = {
    "/products": {"GET": list_products, "POST": create_product},
    "/products/{id}": {"GET": get_product, "PUT": replace_product, "DELETE": delete_product},
}


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Lambda entry point (API Gateway REST API, Lambda proxy integration, payload 1.0)."""
    resource = event.get("resource")
    method = str(event.get("httpMethod") or "").upper()
    operations = ROUTES.get(resource) if isinstance(resource, str) else None
    if operations is None:
        return _error(404, "Not Found")
    operation = operations.get(method)
    if operation is None:
        allow = ", ".join(operations)
        return _error(405, f"Method {method or '(none)'} not allowed on {resource}", {"Allow": allow})
    try:
        return operation(event)
    except BadRequest as exc:
        return _error(400, str(exc))
