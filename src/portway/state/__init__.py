"""Shared state behind one small interface: memory (one process), Redis (many nodes), SQLite (restarts)."""

from portway.state.factory import open_store
from portway.state.store import Admission, Bucket, CountResult, Store, StoreError, StoreUnavailable

__all__ = ["Admission", "Bucket", "CountResult", "Store", "StoreError", "StoreUnavailable", "open_store"]
