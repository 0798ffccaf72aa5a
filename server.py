"""Turnstile entry point: ``python server.py`` runs the API (on PostgreSQL with ``DATABASE_URL``, else the embedded JSON store); ``python server.py user ...`` manages users, ``python server.py store copy ...`` moves data between stores."""

from __future__ import annotations

import asyncio
import logging
import sys

from core.config import ConfigError
from core.store import StoreError
from core.plugin import PluginError
from core.serve import serve


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if argv:  # operator commands; no arguments runs the server
        from core.cli import main as cli

        return cli(argv)
    try:
        asyncio.run(serve())
    except (ConfigError, PluginError, StoreError) as exc:
        print(f"turnstile: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
