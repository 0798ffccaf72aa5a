"""Header lookups for code that runs on every request."""

from __future__ import annotations

from tornado.httputil import HTTPHeaders


def header(headers: HTTPHeaders, name: str, default: str | None = None) -> str | None:
    """``headers.get(name, default)``, without the cost of a miss.

    ``HTTPHeaders.get`` is ``Mapping.get``, which raises and catches a
    ``KeyError`` for every absent header; most requests have no ``Origin`` or
    ``Content-Length``, so the per-request paths ask with ``in`` first.
    """
    return headers[name] if name in headers else default
