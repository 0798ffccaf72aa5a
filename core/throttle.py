"""Throttling of guesses: lock out a key (a username, a client address...) after repeated failures.

A service for any plugin: ``plugin.throttle(window, lockout)`` gives one on the
plugin's own namespace, with the plugin's own keys and limits. The auth plugin
throttles logins with it; anything else that checks a secret (a recovery code,
a second factor) should too.

The counts live in the store (collection ``<plugin>.throttle`` by default, one
document per key such as ``user:alice`` or ``addr:1.2.3.4``), so every process and every
instance on the same data sees the same counts and the same locks: N of them
allow exactly the guesses one allows. The lock is checked before the password
is, so while it lasts the right password gets 429 as well, and a refused guess
costs no bcrypt time. Times are wall-clock seconds, shared between machines.

Only an answer that tells the client the verdict (401, or 200/204) is a guess,
and no key may give out more than ``limit`` of them before it locks, however
many attempts run at once and wherever. Two mechanisms ensure it:

* When the user's name has recorded state (failures, or attempts in flight),
  an attempt is counted when it *starts*: `begin` adds a mark for it, in a
  transaction, to every key with state, and refuses once ``limit`` attempts
  are failed or in flight on one of them. So a burst, even spread over
  instances, cannot get more attempts past the check than guesses are left,
  and the surplus costs no bcrypt time.
* A successful login of a name with no recorded state must write nothing, so
  then nothing is written when the attempt starts. Its verdict is checked
  instead, on every key without a mark: a wrong password is recorded in a
  transaction that also decides whether each key still had a guess left, and
  a right one re-reads the keys. If one locked or filled up meanwhile, the
  answer is 429 and the verdict is not told. A burst on a clean name (or a
  spray of clean names from one address) can thus cost bcrypt time, once per
  lock and at most what the hashing queue holds, but it gets no more guesses
  than one process would give.

Every attempt ends one way: ``failed`` (a wrong password: it stays counted),
``succeeded`` (the user's failures are forgotten, its marks taken back), or
``abandoned`` (anything raised before a verdict, such as a full bcrypt queue
or a store error: its marks are taken back, so only wrong passwords ever lock
anyone out). A mark whose process died before the verdict ages out of the
window like a failure.

Documents expire once nothing in them is live (``expires``); `prune` deletes
those. Nothing is ever evicted early, so flooding fresh names or addresses
cannot push out a live lock; the store holds at most what the failures of one
window and lockout add, and each failure costs the attacker a bcrypt check.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from typing import Any, Awaitable, Callable, Mapping

from .store import Collection, Doc, Namespace, StoreError, where

COLLECTION = "throttle"  # the default collection: auth.throttle for the auth plugin


class Attempt:
    """One attempt as `Throttle.begin` let it start: the keys it counts on, and the keys holding its mark."""

    __slots__ = ("limits", "name", "started", "token", "marked")

    def __init__(self, limits: Mapping[str, int], name: str, started: float) -> None:
        self.limits = {k: limit for k, limit in limits.items() if limit > 0}  # a limit of 0 never locks
        self.name = name  # the user's key: forgotten on success; while it is clean, nothing is written at the start
        self.started = started
        self.token = secrets.token_hex(8)
        self.marked: set[str] = set()  # keys where `begin` recorded this attempt as in flight

    @property
    def keys(self) -> list[str]:
        """The counted keys in one fixed order, so transactions lock them in that order (no deadlock)."""
        return sorted(self.limits)


class Throttle:
    """Per-key sliding window of ``window`` seconds; ``limit`` failures lock the key for ``lockout`` seconds.

    Keys map to their limit; a limit of 0 never locks. ``db`` is the owning
    plugin's namespace in the store, ``collection`` the collection in it that
    holds the counts (two throttles of one plugin need two collections).
    Stateless apart from the store, so any number may be built over the same data.
    """

    def __init__(
        self,
        db: Namespace,
        window: int,
        lockout: int,
        clock: Callable[[], float] = time.time,
        collection: str = COLLECTION,
    ) -> None:
        self.db = db
        self.window = window
        self.lockout = lockout
        self.clock = clock
        self.collection = collection

    # -- the attempt's life ---------------------------------------------------------------

    async def retry_after(self, limits: Mapping[str, int]) -> int:
        """Seconds to wait before another attempt on any of these keys; 0 if one may start now (read only)."""
        attempt = Attempt(limits, "", self.clock())
        return self._wait(attempt.limits, await self._read(attempt.keys), self.clock())

    async def begin(self, limits: Mapping[str, int], name: str) -> tuple[int, Attempt]:
        """``(0, attempt)`` if an attempt may start (settle it with `failed`, `succeeded` or `abandoned`),
        else ``(seconds to wait, attempt)``: refused, nothing to settle.

        ``name`` is the user's key (``user:alice``). One keyed read per key; a
        transaction (and a write) only when ``name`` has recorded state.
        """
        now = self.clock()
        attempt = Attempt(limits, name, now)
        keys = sorted({*attempt.keys, name})
        docs = await self._read(keys)
        wait = self._wait(attempt.limits, docs, now)
        dirty = [k for k in attempt.keys if docs[k] is not None]
        if wait or not dirty or docs[name] is None:
            return wait, attempt
        try:
            async with self.db.transaction() as tx:
                coll = self._in(tx)
                docs = {k: self._live(await coll.get(k), now) for k in dirty}
                wait = self._wait(attempt.limits, docs, now)
                if wait:
                    return wait, attempt
                for key, doc in docs.items():
                    if doc is None:
                        continue  # emptied meanwhile: checked at the verdict like any clean key
                    doc["pending"][attempt.token] = now
                    await coll.put(key, self._stamped(doc))
                    attempt.marked.add(key)
        except BaseException:
            if attempt.marked:  # a commit whose outcome is unknown: take the marks back if they were written
                with contextlib.suppress(StoreError):
                    await self.abandoned(attempt)
            raise
        return 0, attempt

    async def failed(self, attempt: Attempt) -> int:
        """A wrong password: count it, and lock each key that reached its limit.

        0 if the client may be told (401); else the seconds of a 429: a clean key
        locked or filled up during the check, so this answer would be a guess too many.
        """
        if not attempt.limits:
            return 0
        now = self.clock()
        async with self.db.transaction() as tx:
            coll = self._in(tx)
            docs = {k: self._live(await coll.get(k), now) for k in attempt.keys}
            unmarked = {k: limit for k, limit in attempt.limits.items() if k not in attempt.marked}
            wait = self._wait(unmarked, docs, now)
            for key in attempt.keys:
                doc = docs[key]
                if wait:  # refused after all: counts as nothing, like a refusal at the start
                    changed = doc is not None and doc["pending"].pop(attempt.token, None) is not None
                elif key in attempt.marked:
                    started = doc["pending"].pop(attempt.token, None) if doc is not None else None
                    changed = started is not None  # else cleared by a lock or a success meanwhile
                    if changed:
                        doc["failures"].append(started)
                else:
                    doc = doc or _empty()
                    doc["failures"].append(attempt.started)
                    changed = True
                if changed:
                    assert doc is not None
                    if not wait and self._count(doc) >= attempt.limits[key]:
                        doc.update(locked_until=now + self.lockout, failures=[], pending={})
                    await self._save(coll, key, doc)
        attempt.marked.clear()
        return wait

    async def succeeded(self, attempt: Attempt) -> int:
        """The right password: forget the name's failures (if any, and not locked), take this attempt's marks back.

        0 if the client may be told (200); else the seconds of a 429, as in `failed`.
        """
        now, reset = self.clock(), attempt.name
        unmarked = {k: limit for k, limit in attempt.limits.items() if k not in attempt.marked}
        if not attempt.marked:
            keys = sorted({*attempt.keys, reset})
            docs = await self._read(keys)
            wait = self._wait(unmarked, docs, now)
            if wait or docs.get(reset) is None or _locked(docs[reset], now):
                return wait  # nothing recorded for the user: nothing to write
        async with self.db.transaction() as tx:
            coll = self._in(tx)
            docs = {k: self._live(await coll.get(k), now) for k in sorted({*attempt.keys, reset})}
            wait = self._wait(unmarked, docs, now)
            for key in sorted(attempt.marked):
                doc = docs[key]
                if doc is not None and doc["pending"].pop(attempt.token, None) is not None and key != reset:
                    await self._save(coll, key, doc)
            doc = docs[reset]
            if doc is not None:
                if not wait and not _locked(doc, now):
                    await coll.delete(reset)
                elif reset in attempt.marked:
                    await self._save(coll, reset, doc)
        attempt.marked.clear()
        return wait

    async def abandoned(self, attempt: Attempt) -> None:
        """The attempt raised before a verdict on the password: take its marks back.

        It told the client nothing about the password, so it must not count as a
        guess. Only this attempt's own mark is removed, so the failures and
        in-flight attempts of other requests stay counted. An attempt that wrote
        no mark (its keys were clean) has nothing to take back.
        """
        if not attempt.marked:
            return
        now = self.clock()
        async with self.db.transaction() as tx:
            coll = self._in(tx)
            for key in sorted(attempt.marked):
                doc = self._live(await coll.get(key), now)
                if doc is not None and doc["pending"].pop(attempt.token, None) is not None:
                    await self._save(coll, key, doc)
        attempt.marked.clear()

    async def guess(self, limits: Mapping[str, int], name: str, check: Callable[[], Awaitable[bool]]) -> tuple[int, bool]:
        """One guess, the whole protocol: `begin`, ``await check()``, then `succeeded` or `failed`.

        ``(0, verdict)`` when the client may be told; ``(seconds, False)`` when the
        answer must be 429 with ``Retry-After`` and no verdict (a lock, or a
        limit filled during the check). A check that raises is no guess: it is
        taken back (`abandoned`) and the error propagates.
        """
        wait, attempt = await self.begin(limits, name)
        if wait:
            return wait, False
        try:
            right = await check()
            wait = await (self.succeeded(attempt) if right else self.failed(attempt))
        except BaseException:
            with contextlib.suppress(StoreError):  # the error that got here is the one to report
                await self.abandoned(attempt)
            raise
        return wait, (right and not wait)

    async def hit(self, limits: Mapping[str, int]) -> int:
        """Count one event (a mail sent, say) on every key: a rate limit rather than a limit on guesses.

        0 if it was counted; else the seconds to wait (answer 429 with
        ``Retry-After``), and nothing is counted. The event that brings a key
        to its limit locks it for ``lockout`` seconds, so at most ``limit``
        events per key pass in a ``window``, over every process and instance
        on the store: the check and the count are one transaction.
        """
        now = self.clock()
        attempt = Attempt(limits, "", now)
        if not attempt.limits:
            return 0
        async with self.db.transaction() as tx:
            coll = self._in(tx)
            docs = {k: self._live(await coll.get(k), now) for k in attempt.keys}
            wait = self._wait(attempt.limits, docs, now)
            if wait:
                return wait
            for key in attempt.keys:
                doc = docs[key] or _empty()
                doc["failures"].append(now)
                if self._count(doc) >= attempt.limits[key]:
                    doc.update(locked_until=now + self.lockout, failures=[], pending={})
                await self._save(coll, key, doc)
        return 0

    async def prune(self) -> int:
        """Delete the documents with nothing live left in them; how many."""
        return await self.db.collection(self.collection).delete_where(where("expires") < self.clock())

    # -- documents ------------------------------------------------------------------------

    def _in(self, tx: Any) -> Collection:
        return tx.collection(self.collection)

    async def _read(self, keys: list[str]) -> dict[str, Doc | None]:
        """Each key's live state: keyed reads outside a transaction, sent together."""
        coll = self.db.collection(self.collection)
        now = self.clock()
        docs = await asyncio.gather(*(coll.get(k) for k in keys))
        return {k: self._live(doc, now) for k, doc in zip(keys, docs)}

    def _live(self, doc: Doc | None, now: float) -> Doc | None:
        """``doc`` without what has left the window, or None when nothing in it is live."""
        if doc is None:
            return None
        cutoff = now - self.window
        live = {
            "failures": [t for t in doc.get("failures", []) if t > cutoff],
            "pending": {tok: t for tok, t in doc.get("pending", {}).items() if t > cutoff},
            "locked_until": doc.get("locked_until", 0),
        }
        if not _locked(live, now):
            live["locked_until"] = 0
            if not live["failures"] and not live["pending"]:
                return None
        return live

    def _wait(self, limits: Mapping[str, int], docs: Mapping[str, Doc | None], now: float) -> int:
        wait = 0.0
        for key, limit in limits.items():
            doc = docs.get(key)
            if doc is None:
                continue
            if _locked(doc, now):
                wait = max(wait, doc["locked_until"] - now)
            elif self._count(doc) >= limit:  # the quota is taken by attempts still in flight
                wait = max(wait, float(self.lockout))
        return math.ceil(wait)

    def _count(self, doc: Doc) -> int:
        return len(doc["failures"]) + len(doc["pending"])

    def _stamped(self, doc: Doc) -> Doc:
        """``doc`` with ``expires``: when nothing in it is live any more (what `prune` compares)."""
        marks = [*doc["failures"], *doc["pending"].values()]
        return {**doc, "expires": max(doc["locked_until"], max(marks, default=0) + self.window)}

    async def _save(self, coll: Collection, key: str, doc: Doc) -> None:
        """Write ``doc``, or delete it when nothing in it is live (a taken-back mark frees its key)."""
        if not doc["failures"] and not doc["pending"] and not doc["locked_until"]:
            await coll.delete(key)
        else:
            await coll.put(key, self._stamped(doc))


def _empty() -> Doc:
    return {"failures": [], "pending": {}, "locked_until": 0}


def _locked(doc: Doc, now: float) -> bool:
    return doc["locked_until"] > now
