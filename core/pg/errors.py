"""What PostgreSQL failures mean to callers of the store.

A lost connection, a server shutting down, a deadlock or a serialization
failure is `StoreUnavailable` (the request may be retried, HTTP 503); a value
PostgreSQL cannot hold is a ``ValueError``; anything else a `StoreError`.
No raw asyncpg or OS exception leaves the backend, and no message carries
a password or a URL.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import asyncpg

from ..store import KeyExists, StoreError, StoreUnavailable

# SQLSTATE classes: 08 connection exception, 53 insufficient resources,
# 57 operator intervention (admin shutdown, pg_terminate_backend, cannot connect now),
# 40 transaction rollback (serialization failure, deadlock), 25006 read-only transaction
# (a standby after a fail-over).
_UNAVAILABLE_CLASSES = ("08", "53", "57", "40")
_UNAVAILABLE_STATES = ("25006", "55P03")  # read-only transaction, lock not available


def unavailable(exc: BaseException) -> StoreUnavailable:
    """The `StoreUnavailable` that stands for ``exc``."""
    if isinstance(exc, asyncpg.PostgresError):
        return StoreUnavailable(f"PostgreSQL is unavailable: {_first_line(exc)} ({exc.sqlstate})")
    if isinstance(exc, TimeoutError):
        return StoreUnavailable("PostgreSQL did not answer in time")
    return StoreUnavailable(f"PostgreSQL is unreachable: {type(exc).__name__}: {_first_line(exc)}")


def connection_broken(exc: BaseException) -> bool:
    """Whether the connection that raised ``exc`` must not be used again (lost, terminated, confused)."""
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "")[:2] in ("08", "57")
    return isinstance(exc, (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, ConnectionError, TimeoutError))


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached or asked us to retry."""
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        return state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_STATES
    return connection_broken(exc)


def translate(exc: BaseException) -> BaseException:
    """The store exception that stands for a driver or OS exception."""
    if isinstance(exc, (StoreError, ValueError, TypeError)) and not isinstance(exc, asyncpg.InterfaceError):
        return exc
    if is_unavailable(exc):
        return unavailable(exc)
    if isinstance(exc, asyncpg.UniqueViolationError):
        return KeyExists(_first_line(exc))
    if isinstance(exc, asyncpg.PostgresError) and (exc.sqlstate or "").startswith("22"):
        return ValueError(f"PostgreSQL cannot store this value: {_first_line(exc)}")
    if isinstance(exc, asyncpg.PostgresError):
        return StoreError(f"PostgreSQL error {exc.sqlstate}: {_first_line(exc)}")
    return exc


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Re-raise driver and OS exceptions as store exceptions (the original stays as the cause)."""
    try:
        yield
    except Exception as exc:
        new = translate(exc)
        if new is exc:
            raise
        raise new from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
