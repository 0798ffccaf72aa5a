"""What every handler, plugin and command shares: built once per application, never a global.

The application holds them as ``application.services`` (handlers read
``self.services``, plugins ``plugin.services``). The store is typed as the
interface in `core.store`, so nothing here depends on which backend runs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from .accounts import Accounts
from .backends import open_store
from .config import Settings
from .metrics import Metrics
from .security import PasswordHasher, TokenSigner
from .store import Store


@dataclass
class Services:
    """The shared parts of one application."""

    settings: Settings
    store: Store
    accounts: Accounts
    passwords: PasswordHasher
    tokens: TokenSigner
    #: This app's Prometheus metrics (``GET /metrics``, the ``metrics`` plugin).
    metrics: Metrics = field(default_factory=Metrics)
    _closers: list[Callable[[], Any]] = field(default_factory=list, repr=False)
    _closed: bool = field(default=False, repr=False)

    @property
    def closed(self) -> bool:
        return self._closed

    def on_close(self, stop: Callable[[], Any]) -> None:
        """Have `close` call ``stop`` (sync or async) first: for background work a plugin started."""
        self._closers.append(stop)

    async def close(self) -> None:
        """Stop background work, wait for the store's writes, then stop the hashing threads. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            for stop in reversed(self._closers):
                result = stop()
                if inspect.isawaitable(result):
                    await result
            await self.store.close()
        finally:
            self.passwords.close()


async def make_services(settings: Settings) -> Services:
    """Open the store the settings select and build everything around it."""
    store = await open_store(settings)
    try:
        accounts = await Accounts.open(store)
    except BaseException:
        await store.close()
        raise
    metrics = Metrics()
    if hasattr(store, "on_write"):
        store.on_write = metrics.store_write_seconds.observe
    passwords = PasswordHasher(settings.bcrypt_rounds, workers=settings.hash_pool_size, queue=settings.hash_queue_size)
    passwords.depth = metrics.hash_queue_depth
    passwords.on_rejected = metrics.hash_rejected.inc
    return Services(
        settings=settings,
        store=store,
        accounts=accounts,
        passwords=passwords,
        tokens=TokenSigner(
            settings.access_secret, settings.refresh_secret, settings.access_ttl, settings.refresh_ttl, settings.token_leeway
        ),
        metrics=metrics,
    )
