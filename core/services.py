"""What every handler, plugin and command shares: built once per application, never a global.

The application holds them as ``application.services`` (handlers read
``self.services``, plugins ``plugin.services``). The store is typed as the
interface in `core.store`, so nothing here depends on which backend runs.

Lifetimes ride on one `contextlib.AsyncExitStack`: each part is pushed as it
opens, so whatever opened is closed, in reverse order, whether start-up
fails half-way or the application stops.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from .accounts import Accounts
from .backends import open_store
from .config import Settings
from .metrics import Metrics
from .keyring import Keyring
from .security import PasswordHasher
from .signin import SignInStep
from .signing import SecretKey, TokenSigner
from .store import Store


@dataclass
class Services:
    """The shared parts of one application; ``async with`` closes them, as does `close`."""

    settings: Settings
    store: Store
    accounts: Accounts
    passwords: PasswordHasher
    tokens: TokenSigner
    #: The access-token keys: asymmetric ones in the store, or HS256 with ``ACCESS_TOKEN_SECRET`` (`core.keyring`).
    keyring: Keyring
    #: This app's Prometheus metrics (``GET /metrics``, the ``metrics`` plugin).
    metrics: Metrics = field(default_factory=Metrics)
    #: What runs between "password checked" and "tokens issued", in plugin order (`core.signin`).
    sign_in_steps: list[SignInStep] = field(default_factory=list)
    #: What `close` undoes, newest first; `make_services` fills it.
    exits: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack, repr=False)
    _closed: bool = field(default=False, repr=False)

    @property
    def closed(self) -> bool:
        return self._closed

    def on_close(self, stop: Callable[[], Any]) -> None:
        """Have `close` call ``stop`` (sync or async) before what opened earlier: for a plugin's background work."""

        async def call() -> None:
            result = stop()
            if inspect.isawaitable(result):
                await result

        self.exits.push_async_callback(call)

    async def close(self) -> None:
        """Stop background work, wait for the store's writes, then stop the hashing threads. Idempotent."""
        self._closed = True
        await self.exits.aclose()

    async def __aenter__(self) -> "Services":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def make_services(settings: Settings) -> Services:
    """Open the store the settings select and build everything around it; on failure, close what opened.

    The caller owns the result: ``async with await make_services(settings) as services:``,
    or `Services.close` when it is done.
    """
    async with contextlib.AsyncExitStack() as exits:
        metrics = Metrics()
        passwords = PasswordHasher(settings.bcrypt_rounds, workers=settings.hash_pool_size, queue=settings.hash_queue_size)
        exits.callback(passwords.close)  # closed last: after the store has written everything
        passwords.depth = metrics.hash_queue_depth
        passwords.on_rejected = metrics.hash_rejected.inc
        store = await open_store(settings)
        exits.push_async_callback(store.close)
        accounts = await Accounts.open(store)
        keyring = Keyring(store, settings)
        await keyring.ensure()
        keyring.start()
        exits.push_async_callback(keyring.stop)
        if hasattr(store, "on_write"):
            store.on_write = metrics.store_write_seconds.observe
        services = Services(
            settings=settings,
            store=store,
            accounts=accounts,
            passwords=passwords,
            tokens=TokenSigner(
                keyring,
                SecretKey(settings.refresh_secret),
                settings.access_ttl,
                settings.refresh_ttl,
                settings.token_leeway,
                issuer=settings.token_issuer,
                audience=settings.token_audience,
            ),
            keyring=keyring,
            metrics=metrics,
            exits=exits.pop_all(),
        )
    return services
