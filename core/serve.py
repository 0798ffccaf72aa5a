"""Running the server: start-up, signal handling, and a clean stop."""

from __future__ import annotations

import asyncio
import logging
import signal

from .app import create_app
from .config import load_settings
from .logs import setup_logging

log = logging.getLogger("turnstile.server")


async def serve() -> None:
    """Start on PORT/HOST and run until SIGTERM or SIGINT."""
    settings = load_settings()
    setup_logging(settings.log_dir)
    app = await create_app(settings)
    server = app.listen(settings.port, address=settings.host)
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
