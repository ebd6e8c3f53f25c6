"""Choose a store by name, as the configuration and the CLI write it.

>>> import asyncio
>>> store = open_store("memory")
>>> store.name
'memory'
>>> open_store("mongodb://db")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: unknown state store 'mongodb://db'; use one of: memory, redis://host:port/db, ...
"""

from __future__ import annotations

from pathlib import Path

from portway.state.memory import DEFAULT_CACHE_BYTES, MemoryStore
from portway.state.store import Store

__all__ = ["STORE_FORMS", "open_store"]

STORE_FORMS = (
    "memory",
    "redis://host:port/db",
    "rediss://host:port/db",
    "unix:///path/to/redis.sock",
    "sqlite:///absolute/path.db",
    "sqlite:relative/path.db",
    "or a file path ending .db, .sqlite or .sqlite3",
)
ERR_UNKNOWN_STORE = "unknown state store {url!r}; use one of: " + ", ".join(STORE_FORMS)
ERR_NO_PATH = "state store {url!r} names no database file; use one of: " + ", ".join(STORE_FORMS)

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def open_store(url: str, *, namespace: str = "portway", cache_bytes: int = DEFAULT_CACHE_BYTES) -> Store:
    """The store that ``url`` names. Nothing connects yet: Redis and SQLite connect on first use.

    ``namespace`` separates stores sharing one Redis (it is the hash tag of every key); ``cache_bytes``
    bounds the response cache. ``sqlite:///abs/path.db`` is an absolute path, ``sqlite:rel.db`` (or
    ``sqlite://rel.db``) a relative one.
    """
    text = url.strip()
    lowered = text.lower()
    if lowered in ("memory", "memory://", "mem"):
        return MemoryStore(cache_bytes=cache_bytes)
    if lowered.startswith(_REDIS_SCHEMES):
        from portway.state.redis import RedisStore

        return RedisStore.from_url(text, namespace=namespace, cache_bytes=cache_bytes)
    if lowered.startswith("sqlite:"):
        rest = text[len("sqlite:") :]
        if rest.startswith("//"):
            rest = rest[2:]
            if rest.startswith("//"):  # SQLAlchemy's sqlite:////abs/path.db
                rest = rest[1:]
        if not rest:
            raise ValueError(ERR_NO_PATH.format(url=url))
        return _sqlite(rest, cache_bytes)
    if "://" not in text and lowered.endswith(_SQLITE_SUFFIXES):
        return _sqlite(text, cache_bytes)
    raise ValueError(ERR_UNKNOWN_STORE.format(url=url))


def _sqlite(path: str, cache_bytes: int) -> Store:
    from portway.state.sqlite import SQLiteStore

    return SQLiteStore(Path(path).expanduser(), cache_bytes=cache_bytes)
