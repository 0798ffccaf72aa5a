"""The PostgreSQL backend of the store (`core.store`), selected by a ``postgresql://`` ``DATABASE_URL``.

`PgStore` (`store`) supplies the primitives `core.store_base` builds the
store interface on; `connections` holds its pool and merges identical reads,
`transaction` is a transaction and its locks, `tables` the SQL of each
collection, `migrate` and ``migrations/`` the schema, `startup` and `errors`
what failures mean, `testing` fresh databases for tests.
`core.backends` opens it through `open_url`.
"""

from __future__ import annotations

from ..store import Store
from .startup import BadDatabaseUrl, DatabaseUnreachable, LoginRefused, PermissionDenied, SchemaTooNew, parse_url
from .store import PgStore


async def open_url(url: str, pool_size: int) -> Store:
    """The store at ``url`` (`core.backends`): schema migrated, pool open."""
    return await PgStore.connect(url, pool_size=pool_size)


def describe_url(url: str) -> str:
    """Where ``url`` points and as whom, without its password: ``PostgreSQL app@db.internal:5432/app``."""
    target = parse_url(url)
    return f"PostgreSQL {target.user}@{target.host}:{target.port}/{target.database}"


__all__ = [
    "BadDatabaseUrl", "DatabaseUnreachable", "LoginRefused", "PermissionDenied", "PgStore", "SchemaTooNew",
    "describe_url", "open_url",
]
