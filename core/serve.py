"""Running the server: start-up, signal handling, and a graceful stop.

On SIGTERM or SIGINT the server

1. stops accepting connections,
2. lets requests in progress finish, for up to ``SHUTDOWN_TIMEOUT``
   (requests that arrive on already-open connections meanwhile get 503 with
   ``Connection: close``), then closes every connection,
3. closes the store, which waits for writes in progress and flushes it,
4. stops the worker threads and the log writers, and returns, so the
   process exits 0.

A second signal during the drain stops waiting for requests at once; the
store is still closed properly.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Callable

from tornado.httpserver import HTTPServer

from .app import create_app
from .config import Settings, load_settings
from .lifecycle import TurnstileApplication
from .logs import LogSetup, setup_logging

log = logging.getLogger("turnstile.server")
AFTER_CLOSE_GRACE = 1.0


def make_server(app: TurnstileApplication, settings: Settings) -> HTTPServer:
    """The HTTP server with the limits from settings.

    ``IDLE_TIMEOUT`` bounds both a keep-alive connection's idle time and the
    time a client may take to send its headers; ``BODY_TIMEOUT`` bounds the
    time to send the body. Declared bodies over ``MAX_BODY_SIZE`` get 413 from
    the application; a chunked body over it is cut off by Tornado (400).
    """
    return HTTPServer(
        app,
        idle_connection_timeout=settings.idle_timeout,
        body_timeout=settings.body_timeout,
        max_body_size=settings.max_body_size,
    )


async def shutdown(server: HTTPServer, app: TurnstileApplication, timeout: float, hurry: asyncio.Event | None = None) -> bool:
    """Drain and stop; True when every request in progress finished in time."""
    tracker = app.requests
    server.stop()
    tracker.start_draining()
    drained = await tracker.wait_idle(timeout, hurry)
    if not drained:
        log.warning("shutdown: %d request(s) still running after %ss; closing their connections", tracker.active, timeout)
    await server.close_all_connections()
    if not drained:
        # Their handlers may still be finishing a write; give them a moment.
        await tracker.wait_idle(AFTER_CLOSE_GRACE)
    await app.services.close()
    return drained


async def serve(
    settings: Settings | None = None,
    sockets: list[socket.socket] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Start on PORT/HOST and run until SIGTERM or SIGINT, then stop gracefully.

    As a worker under ``WORKERS`` > 1 (core/workers.py), ``sockets`` are the
    supervisor's listening sockets, ``on_ready`` tells it the worker serves,
    the log files are the worker's own, and only SIGTERM (sent by the
    supervisor) stops it: a terminal's Ctrl-C reaches the supervisor, which
    forwards it once.
    """
    settings = settings or load_settings()
    worker = sockets is not None
    logs: LogSetup = setup_logging(
        settings.log_dir, settings.log_level, settings.log_format, settings.log_max_bytes, settings.log_backups,
        worker=settings.worker_index if worker else None,
    )
    try:
        app = await create_app(settings)
        server = make_server(app, settings)
        if sockets is not None:
            server.add_sockets(sockets)
        else:
            server.listen(settings.port, address=settings.host)
            print(f"Server running on port {settings.port}", flush=True)
        stop, hurry = asyncio.Event(), asyncio.Event()

        def on_signal() -> None:
            (hurry if stop.is_set() else stop).set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM,) if worker else (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        if on_ready:
            on_ready()
        await stop.wait()
        if not worker:
            print("Shutting down: finishing requests in progress", flush=True)
        drained = await shutdown(server, app, settings.shutdown_timeout, hurry)
        if not worker:
            print("Stopped" + ("" if drained else " (some requests were cut off)"), flush=True)
        elif not drained:
            print(f"Worker {settings.worker_index}: some requests were cut off", flush=True)
    finally:
        logs.close()
