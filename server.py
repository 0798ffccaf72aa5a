"""Turnstile entry point: ``python server.py`` runs the API on the embedded JSON store."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from core.app import create_app
from core.config import ConfigError, load_settings
from core.jsondb import StoreError
from core.logs import setup_logging
from core.plugin import PluginError

log = logging.getLogger("turnstile.server")


async def serve() -> None:
    settings = load_settings()
    setup_logging(settings.log_dir)
    app = await create_app(settings)
    server = app.listen(settings.port, address=settings.host, xheaders=False)
    log.warning("Server running on %s:%d", settings.host or "*", settings.port)
    print(f"Server running on port {settings.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await server.close_all_connections()
    services = app.settings["services"]
    await services.store.close()
    services.executor.shutdown(wait=True)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve())
    except (ConfigError, PluginError, StoreError) as exc:
        print(f"turnstile: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
