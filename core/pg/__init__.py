"""The PostgreSQL backend of the store (`core.store`), selected by ``DATABASE_URL``."""

from .startup import BadDatabaseUrl, DatabaseUnreachable, LoginRefused, SchemaTooNew
from .store import PgStore

__all__ = ["BadDatabaseUrl", "DatabaseUnreachable", "LoginRefused", "PgStore", "SchemaTooNew"]
