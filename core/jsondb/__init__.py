"""The embedded JSON store (``backend = "json"``): all persisted data in one ``DATA_DIR``.

`JsonStore` implements the `core.store.Store` interface; callers reach it
through that interface only. Reads are served from memory (the ``async``
methods return at once) and writes return only once the change is durable on
disk (journal line fsynced). JSON-only extras:

* ``await store.compact()``: fold the journal into a new snapshot now (it also
  happens on its own once the journal outgrows a share of the snapshot).
* ``with store.transaction_sync() as tx:``: the same transaction for scripts and
  tests without an event loop (blocking; never call it on a running loop). Its
  collections have plain, blocking methods.
* ``python -m core.jsondb check|compact DATA_DIR``: verify the files, or
  compact them now (the store runs its compactions through this command, in a
  child process).

On disk (all human-readable JSON Lines, described in README "Data files"),
one module each:

* `snapshot`: ``snapshot.jsonl`` (and ``snapshot.prev.jsonl``), every record
  as of one journal generation;
* `journal`: ``journal.<generation>.jsonl``, one fsynced line per committed
  transaction;
* `compaction`: folding the journals into a new snapshot, in a child process;
* `shared`: ``.lock``, ``.compact.lock`` and the memory-mapped ``.changes``
  counter, through which several processes share one directory;
* `load`: reading it all back at start-up (and `legacy`: the first store's
  ``<collection>.json`` files, imported once).

In memory: `tables` (documents, id counters, indexes, and the read primitives
over them), `transaction` and `collection` (the views callers use), and
`store` (`JsonStore`, which ties them together: transactions, the writer,
following other processes). Everything the backends share (the collection
methods, names, filters, private copies, ids, a write outside a transaction
being one) comes from `core.store_base`; JSON encoding from `core.jsoncodec`.

A torn last journal line (a write that was never acknowledged) is ignored and
trimmed; anything else unreadable raises `StoreCorrupt` naming the file, line
and problem, and nothing is ever overwritten to "repair" it.
"""

from __future__ import annotations

from ..store import KeyExists, StoreCorrupt, StoreError
from .collection import Collection
from .store import JsonStore
from .transaction import BlockingCollection, SyncTransaction, Transaction, TxCollection

__all__ = [
    "BlockingCollection",
    "Collection",
    "JsonStore",
    "KeyExists",
    "StoreCorrupt",
    "StoreError",
    "SyncTransaction",
    "Transaction",
    "TxCollection",
]
