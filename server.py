"""Turnstile entry point: ``python server.py`` runs the API (on PostgreSQL with ``DATABASE_URL``, else the embedded JSON store); ``python server.py user ...`` manages users, ``python server.py store copy ...`` moves data between stores."""

from __future__ import annotations

import logging
import os
import sys

from core.config import ConfigError, Settings, load_settings
from core.preflight import check_dirs


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if argv:  # operator commands; no arguments runs the server
        from core.cli import main as cli

        return cli(argv)
    environ = dict(os.environ)  # before .env: workers and rolling restarts read .env as it is then
    try:
        settings = load_settings()  # before any worker starts: it writes generated secrets to .env for all of them
        check_dirs(settings)  # before the supervisor or a worker writes there: one line, not a traceback per worker
    except ConfigError as exc:
        print(f"turnstile: {exc}", file=sys.stderr)
        return 1
    if settings.workers > 1:
        # The supervisor runs no application code: each worker is a fresh interpreter (core/worker.py).
        from core.supervisor import supervise

        return supervise(settings, environ)
    return serve_here(settings)


def serve_here(settings: Settings) -> int:
    """``WORKERS=1``: this process serves, as it always has."""
    import asyncio

    from core.plugin import PluginError
    from core.serve import serve
    from core.store import StoreError

    try:
        asyncio.run(serve(settings))
    except (ConfigError, PluginError, StoreError) as exc:
        print(f"turnstile: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
