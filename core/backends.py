"""Which backend opens a store: the one place that names them.

A store is either a data directory (the JSON store, `core.jsondb`) or a URL
whose scheme names its backend in `URL_SCHEMES`. A backend opened by URL is a
package with two functions:

* ``async def open_url(url: str, pool_size: int) -> Store``: reach it and
  open it, or raise `StoreError` with one line (never a password);
* ``def describe_url(url: str) -> str``: where it is, for messages, without a
  password.

Adding a backend is a new package and one line in `URL_SCHEMES`
(docs/backends.md). The server (`open_store`, from ``DATABASE_URL`` or
``DATA_DIR``) and ``store copy`` (`open_at`) both choose here.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, AsyncIterator

from .store import Store, StoreError

if TYPE_CHECKING:
    from .config import Settings

URL_SCHEMES: dict[str, str] = {
    "postgresql": "core.pg",
    "postgres": "core.pg",
}
"""URL scheme -> the package of the backend that opens such URLs (imported only when used)."""


# One slash is enough: ``mysql:/db`` is a mistyped URL, not a data directory to create as "mysql:".
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/")


def is_url(where: str) -> bool:
    """Whether ``where`` is a URL (``scheme://...``, or ``scheme:/...`` mistyped) rather than a data directory."""
    return bool(_URL.match(where.strip()))


def backend_for(url: str, what: str = "") -> ModuleType:
    """The backend package for ``url``; a `StoreError` naming the known schemes (never the URL) if none opens it."""
    scheme = _URL.match(url.strip())
    package = URL_SCHEMES.get(scheme.group(1).lower()) if scheme else None
    if package is None:
        shown = f"{scheme.group(1)}:// URLs" if scheme else "a URL without a scheme"
        known = " or ".join(f"{s}://" for s in URL_SCHEMES)
        raise StoreError(f"{what + ': ' if what else ''}no store backend opens {shown}; use {known}")
    return importlib.import_module(package)


async def open_url(url: str, pool_size: int, what: str = "") -> Store:
    """The store at ``url``, opened by the backend its scheme names."""
    return await backend_for(url, what).open_url(url, pool_size)  # type: ignore[no-any-return]


def open_dir(data_dir: Path | str) -> Store:
    """The JSON store in ``data_dir`` (created if missing)."""
    from .jsondb import JsonStore

    return JsonStore(data_dir).open()


async def open_store(settings: "Settings") -> Store:
    """The store the settings select: the backend of ``DATABASE_URL`` if set, else the JSON store in ``DATA_DIR``.

    Raises `StoreError` with a one-line message (never a password) when it cannot start.
    """
    if settings.database_url:
        return await open_url(settings.database_url, settings.database_pool_size, "DATABASE_URL")
    return open_dir(settings.data_dir)


def describe_store(settings: "Settings") -> str:
    """The store the settings select, for the start-up line (never a password).

    ``PostgreSQL app@db.internal:5432/app``, or ``JSON store in /srv/turnstile/data``
    (absolute: the operator sees which folder, whatever directory the server was started in).
    """
    if settings.database_url:
        backend = backend_for(settings.database_url, "DATABASE_URL")
        return backend.describe_url(settings.database_url)  # type: ignore[no-any-return]
    return f"JSON store in {settings.data_dir.absolute()}"


@contextlib.asynccontextmanager
async def opened(settings: "Settings") -> AsyncIterator[Store]:
    """``async with opened(settings) as store:`` for scripts: open, then always close."""
    store = await open_store(settings)
    try:
        yield store
    finally:
        await store.close()


async def open_at(where: str, pool_size: int = 2) -> Store:
    """The store at a data directory or a URL (``store copy``)."""
    if is_url(where):
        return await open_url(where, pool_size)
    return open_dir(where)


def describe(where: str) -> str:
    """Where a store is, for messages: a URL without its password, or the data directory."""
    if is_url(where):
        return backend_for(where).describe_url(where)  # type: ignore[no-any-return]
    return f"JSON store {where}"
