"""The embedded JSON store (``backend = "json"``); see `core.jsondb.store`."""

from __future__ import annotations

from ..store import KeyExists, StoreCorrupt, StoreError
from .collection import Collection
from .store import JsonStore
from .transaction import SyncTransaction, SyncTxCollection, Transaction, TxCollection

__all__ = [
    "Collection",
    "JsonStore",
    "KeyExists",
    "StoreCorrupt",
    "StoreError",
    "SyncTransaction",
    "SyncTxCollection",
    "Transaction",
    "TxCollection",
]
