"""Passwords, and the digest of refresh tokens the store keeps.

bcrypt is deliberately slow, so hashing and checking run in an executor and
never on the event loop. Tokens are signed and verified in `core.signing`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import secrets
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Callable, Protocol, TypeVar

import bcrypt

from .errors import APIError

T = TypeVar("T")

BCRYPT_MAX_BYTES = 72
_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


class _Gauge(Protocol):
    def inc(self, amount: float = 1) -> None: ...
    def dec(self, amount: float = 1) -> None: ...


class HashingBusy(APIError):
    """Every bcrypt thread is busy and the wait queue is full: 503, try again shortly."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(
            503,
            "Too many logins at once; try again shortly.",
            log_message="password hashing queue full",
            headers={"Retry-After": str(retry_after)},
        )


HASH_NICENESS = 5  # CFS weight about a third of the event loop's: priority without starving logins on a busy host


def _lower_priority() -> None:
    """Run a hashing thread at a lower CPU priority than the event loop (Linux; elsewhere a no-op)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICENESS)
    except (AttributeError, OSError):
        pass


class PasswordHasher:
    """bcrypt in a bounded pool, with a dummy hash so unknown users cost the same as wrong passwords.

    Hashing runs on ``workers`` threads of its own (bcrypt releases the GIL, so
    they use all the cores) at a lower CPU priority than the event loop, so a
    login storm does not slow other requests down much. At most ``queue`` more
    calls may wait for a thread; beyond that `HashingBusy` (503 with
    ``Retry-After``) is raised at once instead of letting latency grow without
    bound. Passing ``executor`` instead uses that executor, unbounded.
    """

    def __init__(
        self, rounds: int = 12, executor: Executor | None = None, workers: int = 1, queue: int = 4
    ) -> None:
        self.rounds = rounds
        self._owned = executor is None
        self.executor = executor or ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="bcrypt", initializer=_lower_priority
        )
        self.capacity = workers + queue if self._owned else None
        self.pending = 0
        #: Optional metric hooks (set by `core.services`): a gauge of ``pending``, called on a refusal.
        self.depth: _Gauge | None = None
        self.on_rejected: Callable[[], Any] | None = None
        # A well-formed hash at the same cost that no password matches: checking
        # against it costs a full bcrypt round without hashing anything at start-up.
        self._dummy = bcrypt.gensalt(rounds).decode() + "".join(secrets.choice(_BCRYPT_ALPHABET) for _ in range(31))

    async def hash(self, password: str) -> str:
        return await self._run(self._hash_sync, password)

    async def check(self, password: str, hashed: str | None) -> bool:
        """True when ``password`` matches; with ``hashed=None`` burns the same time and returns False."""
        ok = await self._run(self._check_sync, password, hashed or self._dummy)
        return ok and hashed is not None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.capacity is not None and self.pending >= self.capacity:
            if self.on_rejected is not None:
                self.on_rejected()
            raise HashingBusy()
        self.pending += 1
        depth = self.depth
        if depth is not None:
            depth.inc()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            self.pending -= 1
            if depth is not None:
                depth.dec()

    def close(self) -> None:
        """Stop the hashing threads (only those this hasher started)."""
        if self._owned:
            self.executor.shutdown(wait=True, cancel_futures=True)

    def _hash_sync(self, password: str) -> str:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(self.rounds)).decode()

    @staticmethod
    def _check_sync(password: str, hashed: str) -> bool:
        try:
            return bcrypt.checkpw(password.encode(), hashed.encode())
        except ValueError:  # over 72 bytes, or a hash that is not bcrypt
            return False


def token_digest(token: str) -> str:
    """SHA-256 of a refresh token: what the store keeps instead of the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()
