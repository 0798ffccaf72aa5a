"""The keyring: asymmetric signing keys in the store, shared by every worker and instance.

Each key is one document in ``core.signing_keys`` under its ``kid`` (the RFC
7638 thumbprint of its public key): the algorithm, the public JWK, the private
key sealed by `core.secretbox` under ``ACCESS_TOKEN_SECRET`` (a copy of the
database alone cannot sign), when it was made and ``active_from``, the time it
starts to sign. Nothing else is stored: a key's state follows from the times,
so no process has to flip it and every process agrees on it.

* **current**: the key with the latest ``active_from`` not in the future; it
  signs every new access token.
* **next**: a key whose ``active_from`` is still ahead. It is published at
  once, so a verifier that caches the key set (``Cache-Control: max-age``)
  has it before it signs anything: ``keys rotate`` stages a key one cache
  period ahead (``JWKS_MAX_AGE``), plus the time each running server takes to
  load it (`RELOAD_EVERY`); ``--now`` only waits for the latter.
* **retired**: replaced at the ``active_from`` of its successor. It is still
  published until every access token it may have signed has expired
  (``ACCESS_TOKEN_TTL`` plus ``TOKEN_LEEWAY``, plus `switch_delay` for a
  process that had not reloaded yet), then dropped.

An HS256 entry has no key material (its secret is ``ACCESS_TOKEN_SECRET``) and
is never published: it is how tokens signed before a change of
``ACCESS_TOKEN_ALGORITHM`` keep working until they expire. With HS256 and no
keyring written (the default), the store is never written and tokens are
signed with the secret exactly as before.

Every process keeps a snapshot of the keyring and reloads it every
`RELOAD_EVERY` seconds, and soon after a token names an unknown ``kid``: a
``keys rotate`` from the command line reaches a running server without a
restart. Changes are made in store transactions that read the whole
collection first, so two processes never stage two keys at once; with
``KEY_ROTATION`` the process that finds rotation due stages the next key.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.hazmat.primitives import serialization

from .config import Settings
from .secretbox import SealBroken, SecretBox
from .signing import ASYMMETRIC, HS256, Key, SecretKey, generate_private_key, key_from_jwk, public_jwk
from .store import Doc, Store, Transaction

log = logging.getLogger("turnstile.keys")

COLLECTION = "core.signing_keys"
#: Seconds between two loads of the keyring by a running process.
RELOAD_EVERY = 2.0
#: At most one extra load per this many seconds when tokens name an unknown ``kid``.
UNKNOWN_KID_RELOAD = 1.0
SEAL_PURPOSE = "signing-keys"


class KeyringError(Exception):
    """A keyring command that cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class Entry:
    """One stored key, with its state at the time a `State` was computed."""

    kid: str
    alg: str
    created: float
    active_from: float
    jwk: dict[str, Any] | None
    sealed: str | None
    state: str = ""
    retired_at: float | None = None
    published_until: float | None = None

    @classmethod
    def from_doc(cls, doc: Doc) -> "Entry":
        return cls(doc["kid"], doc["alg"], doc["created"], doc["active_from"], doc.get("jwk"), doc.get("private"))


def states(entries: list[Entry], now: float, lifetime: int) -> list[Entry]:
    """``entries`` with their state at ``now``, newest first; those past their ``lifetime`` as retired are left out.

    ``lifetime`` is how long a retired key's tokens may still be valid.
    """
    ordered = sorted(entries, key=lambda e: (e.active_from, e.created, e.kid))
    out: list[Entry] = []
    current_seen = False
    for index in range(len(ordered) - 1, -1, -1):
        entry = ordered[index]
        if entry.active_from > now:
            out.append(_with(entry, "next"))
        elif not current_seen:
            current_seen = True
            out.append(_with(entry, "current"))
        else:
            retired_at = ordered[index + 1].active_from
            if retired_at + lifetime >= now:
                out.append(_with(entry, "retired", retired_at, retired_at + lifetime))
    return out


def _with(entry: Entry, state: str, retired_at: float | None = None, until: float | None = None) -> Entry:
    return Entry(entry.kid, entry.alg, entry.created, entry.active_from, entry.jwk, entry.sealed, state, retired_at, until)


@dataclass(frozen=True)
class _View:
    """The keyring's states from ``start`` until ``end`` (the next time one changes)."""

    entries: list[Entry]
    keys: dict[str, Key]
    signer: Key
    start: float
    end: float


class Keyring:
    """The access-token `KeySource` of one process (see the module docstring)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.alg = settings.access_algorithm
        self.secret = SecretKey(settings.access_secret)
        self._box = SecretBox(settings.access_secret, SEAL_PURPOSE)
        self._collection = store.collection(COLLECTION)
        self._entries: list[Entry] = []
        self._keys: dict[str, Key] = {}  # kid -> verifying key (and signing key, when this process can open it)
        self._unopenable: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._reloading: asyncio.Task[None] | None = None
        self._last_load = 0.0
        self._cached: _View | None = None
        #: Wall-clock seconds; the tests move it to see a staged key take over, or a retired one drop.
        self.clock: Callable[[], float] = time.time

    # -- timing -------------------------------------------------------------------------------------

    @property
    def lifetime(self) -> int:
        """How long after retiring a key its tokens may still be valid: what it stays published for.

        Plus `switch_delay`: a process that has not reloaded yet may sign with the
        old key for that long after another made a new one current at once (a start
        with a changed algorithm).
        """
        return self.settings.access_ttl + self.settings.token_leeway + self.switch_delay

    @property
    def switch_delay(self) -> int:
        """How far ahead ``--now`` puts a key: every running server has loaded it before it signs."""
        return int(RELOAD_EVERY) + 1

    @property
    def stage_delay(self) -> int:
        """How far ahead a staged key starts to sign: one JWKS cache period, plus `switch_delay`."""
        return self.settings.jwks_max_age + self.switch_delay

    # -- the KeySource ------------------------------------------------------------------------------

    def signing_key(self) -> Key:
        """The current key; HS256 with the secret while the keyring is empty or its current entry is HS256."""
        return self._view().signer

    def find(self, kid: str | None) -> Key | None:
        """The key ``kid`` names while it is published (an HS256 entry: while it may have signed a live token)."""
        if not self._entries:
            return self.secret.find(kid)
        if kid is None:
            kid = self.secret.key.kid  # a token from before ``kid`` headers was signed with the secret
        key = self._view().keys.get(kid)
        if key is None:
            self.reload_soon()
        return key

    def _signing(self, entry: Entry) -> Key | None:
        if entry.alg == HS256:
            return self.secret.key if entry.kid == self.secret.key.kid else None
        key = self._keys.get(entry.kid)
        return key if key is not None and key.sign_with is not None else None

    # -- state --------------------------------------------------------------------------------------

    def entries(self, now: float | None = None) -> list[Entry]:
        """The loaded keys with their states now (or at ``now``), newest first."""
        if now is not None:
            return states(self._entries, now, self.lifetime)
        return self._view().entries

    def _view(self) -> "_View":
        """The states now, computed again only when the time passes a boundary (a key takes over or drops)."""
        t = self.clock()
        view = self._cached
        if view is None or not view.start <= t < view.end:
            view = self._cached = self._compute(t)
        return view

    def _compute(self, t: float) -> "_View":
        entries = states(self._entries, t, self.lifetime)
        keys: dict[str, Key] = {}
        for entry in entries:
            if entry.alg == HS256:
                if entry.kid == self.secret.key.kid:
                    keys[entry.kid] = self.secret.key
            elif entry.kid in self._keys:
                keys[entry.kid] = self._keys[entry.kid]
        signer = next((k for e in entries if e.state == "current" and (k := self._signing(e)) is not None), None)
        if signer is None:  # none, or sealed under another secret: the newest key this process can sign with
            signer = next((k for e in entries if e.state == "retired" and (k := self._signing(e)) is not None), self.secret.key)
        ends = [e.active_from for e in entries if e.state == "next"]
        # a retired key is dropped at the first instant after its published_until
        ends += [math.nextafter(e.published_until, math.inf) for e in entries if e.published_until is not None]
        return _View(entries, keys, signer, t, min(ends, default=float("inf")))

    def jwks(self) -> dict[str, Any]:
        """The public key set: next, current and retired asymmetric keys, public members only."""
        return {"keys": [dict(e.jwk) for e in self.entries() if e.jwk is not None]}

    async def load(self) -> None:
        """Read the keyring from the store into this process's snapshot."""
        docs = await self._collection.all()
        await self._install([Entry.from_doc(doc) for doc in docs])

    async def _install(self, entries: list[Entry]) -> None:
        keys: dict[str, Key] = {}
        new: list[Entry] = []
        for entry in entries:
            if entry.jwk is None:
                continue
            known = self._keys.get(entry.kid)
            if known is not None:
                keys[entry.kid] = known
            else:
                new.append(entry)
        if new:  # on a thread: loading an RSA private key checks it, for tens of milliseconds
            keys.update(await asyncio.to_thread(lambda: {e.kid: key_from_jwk(e.jwk, self._open(e)) for e in new}))
        self._entries = entries
        self._keys = keys
        self._cached = None
        self._last_load = time.monotonic()

    def _open(self, entry: Entry) -> Any:
        """The private key of ``entry``, or None if it was sealed under another ``ACCESS_TOKEN_SECRET``."""
        if entry.sealed is None:
            return None
        try:
            pem = self._box.open(entry.sealed)
        except SealBroken:
            if entry.kid not in self._unopenable:
                self._unopenable.add(entry.kid)
                log.warning("signing key %s was sealed under another ACCESS_TOKEN_SECRET: it verifies but cannot sign here", entry.kid)
            return None
        return serialization.load_pem_private_key(pem, password=None)

    # -- changes ------------------------------------------------------------------------------------

    async def _new_key(self) -> Doc:
        """A new key of the configured algorithm, sealed, made on a thread: an RSA key takes a tenth of a second."""
        return await asyncio.to_thread(self._make_key, self.alg)

    def _make_key(self, alg: str) -> Doc:
        private = generate_private_key(alg)
        jwk = public_jwk(alg, private.public_key())
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {"kid": jwk["kid"], "alg": alg, "jwk": jwk, "private": self._box.seal(pem)}

    def _current_is_good(self, entries: list[Entry], now: float) -> bool:
        current = next((e for e in states(entries, now, self.lifetime) if e.state == "current"), None)
        return current is not None and current.alg == self.alg and self._can_sign(current)

    async def _read(self, tx: Transaction, now: float) -> list[Entry]:
        """All entries, read in ``tx`` (which locks the collection), after deleting those past their time."""
        coll = tx.collection(COLLECTION)
        entries = [Entry.from_doc(doc) for doc in await coll.all()]
        live = {e.kid for e in states(entries, now, self.lifetime)}
        for entry in entries:
            if entry.kid not in live:
                await coll.delete(entry.kid)
                log.info("signing key %s dropped: every token it signed has expired", entry.kid)
        return [e for e in entries if e.kid in live]

    def _can_sign(self, entry: Entry) -> bool:
        if entry.alg == HS256:
            return entry.kid == self.secret.key.kid
        if entry.sealed is None:
            return False
        try:
            self._box.open(entry.sealed)
        except SealBroken:
            return False
        return True

    async def ensure(self) -> None:
        """At start-up: make sure the current key has the configured algorithm and can sign here.

        With an asymmetric algorithm and no such key (the first start, a
        changed ``ACCESS_TOKEN_ALGORITHM``), a new key becomes current at once;
        the key it replaces keeps verifying its tokens until they expire. A
        first keyring also records the HS256 secret as retired now, so access
        tokens signed with it before the change stay good too.
        """
        now = round(self.clock(), 3)
        await self.load()
        if self.alg == HS256 and not self._entries:  # the default: nothing to write, signed with the secret as ever
            return
        fresh = None
        if self.alg in ASYMMETRIC and not self._current_is_good(self._entries, now):
            fresh = await self._new_key()  # before the transaction, which holds the keyring's lock
        async with self.store.transaction() as tx:
            coll = tx.collection(COLLECTION)
            entries = await self._read(tx, now)
            if self._current_is_good(entries, now):
                pass  # another process made it meanwhile
            elif self.alg in ASYMMETRIC:
                if not entries:
                    await coll.put(self.secret.key.kid, self._hs_doc(active_from=0, now=now))
                doc = {**(fresh or self._make_key(self.alg)), "created": now, "active_from": now}
                await coll.put(doc["kid"], doc)
                log.warning("signing key %s (%s) generated; it signs access tokens from now on", doc["kid"], self.alg)
            elif entries:  # HS256 again after a keyring: the secret signs, the keys keep verifying their tokens
                await coll.put(self.secret.key.kid, self._hs_doc(active_from=now, now=now))
                log.warning("access tokens are signed with ACCESS_TOKEN_SECRET (HS256) again from now on")
            docs = await coll.all()
        await self._install([Entry.from_doc(doc) for doc in docs])

    def _hs_doc(self, active_from: float, now: float) -> Doc:
        return {"kid": self.secret.key.kid, "alg": HS256, "created": now, "active_from": active_from}

    async def rotate(self, now_: bool = False) -> Entry:
        """Stage a new key (``keys rotate``); with ``now_`` it becomes current within `switch_delay` seconds.

        A key already staged is not doubled: it is returned (and, with
        ``now_``, brought forward).
        """
        if self.alg not in ASYMMETRIC:
            raise KeyringError(
                f"keys rotate needs an asymmetric ACCESS_TOKEN_ALGORITHM ({', '.join(ASYMMETRIC)}); "
                "with HS256 the key is ACCESS_TOKEN_SECRET"
            )
        fresh = await self._new_key()  # unused if a key is staged already
        now = round(self.clock(), 3)
        active_from = now + (self.switch_delay if now_ else self.stage_delay)
        async with self.store.transaction() as tx:
            coll = tx.collection(COLLECTION)
            entries = await self._read(tx, now)
            staged = sorted((e for e in entries if e.active_from > now), key=lambda e: e.active_from)
            if staged:
                doc = (await coll.get(staged[0].kid)) or {}
                if now_ and doc.get("active_from", 0) > active_from:
                    doc["active_from"] = active_from
                    await coll.put(doc["kid"], doc)
            else:
                if not entries:  # the store's servers sign with the secret until then: keep its tokens good
                    await coll.put(self.secret.key.kid, self._hs_doc(active_from=0, now=now))
                doc = {**fresh, "created": now, "active_from": active_from}
                await coll.put(doc["kid"], doc)
            docs = await coll.all()
        await self._install([Entry.from_doc(d) for d in docs])
        return next(e for e in self.entries() if e.kid == doc["kid"])

    async def maintain(self) -> None:
        """Reload; stage the next key when ``KEY_ROTATION`` says it is due; drop keys past their time."""
        await self.load()
        now = round(self.clock(), 3)
        all_entries = self._entries
        live = self.entries(now)
        rotation = self.settings.key_rotation
        current = next((e for e in live if e.state == "current"), None)
        due = (
            rotation > 0
            and self.alg in ASYMMETRIC
            and current is not None
            and not any(e.state == "next" for e in live)
            and current.active_from + rotation - self.stage_delay <= now
        )
        if due:
            fresh = await self._new_key()
            async with self.store.transaction() as tx:  # re-checked under the lock: one process stages it
                entries = await self._read(tx, now)
                latest = max((e.active_from for e in entries), default=0)
                if latest <= now and latest + rotation - self.stage_delay <= now:
                    doc = {**fresh, "created": now, "active_from": now + self.stage_delay}
                    await tx.collection(COLLECTION).put(doc["kid"], doc)
                    log.warning("signing key %s (%s) staged by KEY_ROTATION; it signs from %d", doc["kid"], self.alg, doc["active_from"])
            await self.load()
        elif len(live) < len(all_entries):
            async with self.store.transaction() as tx:
                await self._read(tx, now)
            await self.load()

    # -- the background task ------------------------------------------------------------------------

    def start(self) -> None:
        """Keep the snapshot fresh (and rotate when due) until `stop`."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        for task in (self._task, self._reloading):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        self._task = self._reloading = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_EVERY)
            try:
                await self.maintain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is briefly away: keep the snapshot, try again
                log.warning("keyring reload failed: %s", exc)

    def reload_soon(self) -> None:
        """Load again shortly (a token named an unknown ``kid``): at most once per `UNKNOWN_KID_RELOAD` seconds."""
        if self._task is None or (self._reloading is not None and not self._reloading.done()):
            return
        if time.monotonic() - self._last_load < UNKNOWN_KID_RELOAD:
            return
        self._reloading = asyncio.ensure_future(self._quiet_load())

    async def _quiet_load(self) -> None:
        try:
            await self.load()
        except Exception as exc:
            log.warning("keyring reload failed: %s", exc)
