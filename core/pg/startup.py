"""Reaching the database at start-up, with one-line errors that name the problem.

Each failure is a `StoreError` subclass whose message names what is wrong
and where (user, host, port, database), never the password or the URL.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

from ..store import StoreError

CONNECT_TIMEOUT = 5.0
SCHEMES = ("postgresql", "postgres")


class BadDatabaseUrl(StoreError):
    """``DATABASE_URL`` cannot be parsed."""


class DatabaseUnreachable(StoreError):
    """Nothing answers at the address, or it does not speak PostgreSQL."""


class LoginRefused(StoreError):
    """The server refused the user, the password or the database."""


class PermissionDenied(StoreError):
    """The user may log in but lacks a privilege Turnstile needs; the message says which and how to grant it."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer Turnstile than this one."""


@dataclass(frozen=True)
class Target:
    """Where ``DATABASE_URL`` points, with the password kept out of `describe`."""

    dsn: str
    user: str
    host: str
    port: int
    database: str

    def describe(self) -> str:
        return f"user {self.user!r} at {self.host}:{self.port}/{self.database}"


def parse_url(url: str) -> Target:
    """Check ``DATABASE_URL`` enough to give a clear message before asyncpg sees it."""
    if not isinstance(url, str) or not url.strip():
        raise BadDatabaseUrl("DATABASE_URL is malformed: it is empty")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise BadDatabaseUrl(f"DATABASE_URL is malformed: {_no_secret(str(exc), url)}") from None
    if parts.scheme not in SCHEMES:
        shown = parts.scheme or "none"
        raise BadDatabaseUrl(f"DATABASE_URL is malformed: the scheme must be postgresql://, not {shown!r}")
    query = parse_qs(parts.query)
    host = parts.hostname or (query.get("host") or [""])[0]
    if not host:
        raise BadDatabaseUrl("DATABASE_URL is malformed: it names no host (postgresql://user:password@host:port/database)")
    database = unquote(parts.path.lstrip("/"))
    user = unquote(parts.username or "") or "postgres"
    if not database:
        raise BadDatabaseUrl("DATABASE_URL is malformed: it names no database (postgresql://user:password@host:port/database)")
    if "/" in database:
        raise BadDatabaseUrl(f"DATABASE_URL is malformed: {database!r} is not a database name")
    return Target(url.strip(), user, host, port or 5432, database)


async def first_connection(target: Target, timeout: float = CONNECT_TIMEOUT) -> asyncpg.Connection:
    """One connection, or the start-up error that says why there is none."""
    try:
        return await asyncpg.connect(target.dsn, timeout=timeout, server_settings={"application_name": "turnstile"})
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
        raise LoginRefused(f"PostgreSQL refused the login of {target.describe()}: {_server_says(exc)}") from None
    except asyncpg.InvalidCatalogNameError:
        raise LoginRefused(f"PostgreSQL has no database {target.database!r} ({target.describe()}); create it first") from None
    except asyncpg.ClientConfigurationError as exc:
        raise BadDatabaseUrl(f"DATABASE_URL is malformed: {_no_secret(str(exc), target.dsn)}") from None
    except (OSError, asyncio.TimeoutError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as exc:
        raise DatabaseUnreachable(f"cannot reach PostgreSQL ({target.describe()}): {_reason(exc)}") from None
    except asyncpg.InsufficientPrivilegeError as exc:  # no CONNECT on the database
        raise permission_denied(target, exc) from None
    except asyncpg.PostgresError as exc:
        raise LoginRefused(f"PostgreSQL refused the connection of {target.describe()}: {_server_says(exc)}") from None
    except asyncpg.InterfaceError as exc:
        raise DatabaseUnreachable(f"cannot talk to PostgreSQL ({target.describe()}): {_no_secret(str(exc), target.dsn)}") from None


def privilege_error(exc: BaseException | None) -> asyncpg.PostgresError | None:
    """The "insufficient privilege" error (SQLSTATE 42501) behind ``exc``, if that is what it is."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate == "42501":
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def permission_denied(target: Target, exc: asyncpg.PostgresError, owner: str | None = None) -> PermissionDenied:
    """One line: what PostgreSQL denied to whom, on which database, and the statement that would allow it.

    ``owner``: the role that owns the table named in the error, when the caller could look it up.
    """
    said = _server_says(exc)
    user, database = _ident(target.user), _ident(target.database)
    what, name = denied_object(exc)
    if what == "database":
        hint = f"GRANT CONNECT ON DATABASE {database} TO {user}"
    elif what == "schema":
        hint = (
            f"Turnstile creates and migrates its own tables: make the user own the database "
            f"(ALTER DATABASE {database} OWNER TO {user}), or GRANT CREATE ON SCHEMA {_ident(name)} TO {user}"
        )
    elif what in ("table", "sequence") and owner:
        hint = (
            f"Turnstile's tables belong to role {_ident(owner)}: run Turnstile as that role, or hand them over "
            f"(as that role or a superuser: REASSIGN OWNED BY {_ident(owner)} TO {user})"
        )
    elif what in ("table", "sequence"):
        hint = (
            "Turnstile's tables belong to another role: run Turnstile as their owner, or hand them over "
            f"(as that role or a superuser: REASSIGN OWNED BY <their owner> TO {user})"
        )
    elif "create database" in said:
        hint = f"let the user create databases (as a superuser: ALTER ROLE {user} CREATEDB)"
    else:
        hint = "grant the user that privilege, or use the role that owns the database"
    return PermissionDenied(f"PostgreSQL denied {target.describe()}: {said}; {hint}")


def denied_object(exc: asyncpg.PostgresError) -> tuple[str, str]:
    """``("table", "schema_version")`` from "permission denied for table schema_version" or "must be owner of
    table ..."; ``("", "")`` when the message names no object."""
    named = re.search(r'(?:for|of) (database|schema|table|sequence) "?([^"\s]+)"?', _server_says(exc))
    return (named.group(1), named.group(2)) if named else ("", "")


def _ident(name: str) -> str:
    """``name`` as an SQL identifier, ready to paste into psql."""
    return '"' + name.replace('"', '""') + '"'


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer within the connect timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if not isinstance(exc.strerror, bytes) else "network error"
    return _server_says(exc)


def _server_says(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _no_secret(message: str, url: str) -> str:
    """``message`` with the URL and its password blanked, in case a library echoed them."""
    parts: Any = None
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        password = None
    message = message.replace(url, "DATABASE_URL")
    if password:
        message = message.replace(password, "***").replace(unquote(password), "***")
    return message.splitlines()[0] if message else "unreadable"
