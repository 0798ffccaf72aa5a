"""Running the server: start-up, signal handling, and a graceful stop.

On SIGTERM or SIGINT the server

1. stops taking connections (closes its port, or tells the supervisor),
2. lets requests in progress finish, for up to ``SHUTDOWN_TIMEOUT``. A
   request that arrives on an open keep-alive connection meanwhile is served
   as usual and answered with ``Connection: close``, so the client moves to a
   worker that is still taking connections instead of seeing an error. A
   connection nobody uses for ``KEEPALIVE_GRACE`` is closed,
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
import time
import weakref
from typing import Any, Protocol

from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream

from .app import create_app
from .backends import describe_store
from .config import Settings, load_settings
from .lifecycle import RequestTracker, TurnstileApplication
from .logs import LogSetup, setup_logging
from .preflight import bind
from .raw_errors import answer_malformed_requests

log = logging.getLogger("turnstile.server")
AFTER_CLOSE_GRACE = 1.0
KEEPALIVE_GRACE = 1.0  # draining: how long open connections with no request get to send one more


class SupervisorLink(Protocol):
    """What a worker's serve needs from its supervisor (core/worker.py has the real one)."""

    def start_heartbeat(self, worker_timeout: float) -> None: ...

    def serve_connections(self, server: HTTPServer) -> None: ...

    def ready(self) -> None: ...

    def stop_taking(self) -> None: ...


class Server(HTTPServer):
    """Tornado's HTTP server, counting its open connections so a drain can wait for them to close."""

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.streams: weakref.WeakSet[IOStream] = weakref.WeakSet()

    def handle_stream(self, stream: IOStream, address: tuple) -> None:
        self.streams.add(stream)
        answer_malformed_requests(stream)  # JSON, not Tornado's bare 400 or a silent close
        super().handle_stream(stream, address)

    def open_connections(self) -> int:
        return sum(1 for stream in list(self.streams) if not stream.closed())

    def close_keepalive(self) -> None:
        """Every request read from now on is answered with ``Connection: close`` and ends its connection."""
        self.conn_params.no_keep_alive = True


def make_server(app: TurnstileApplication, settings: Settings) -> Server:
    """The HTTP server with the limits from settings.

    ``IDLE_TIMEOUT`` bounds both a keep-alive connection's idle time and the
    time a client may take to send its headers; ``BODY_TIMEOUT`` bounds the
    time to send the body. Declared bodies over ``MAX_BODY_SIZE`` get 413 from
    the application; a chunked body over it is cut off by Tornado (400).
    """
    return Server(
        app,
        idle_connection_timeout=settings.idle_timeout,
        body_timeout=settings.body_timeout,
        max_body_size=settings.max_body_size,
    )


async def drain(server: Server, tracker: RequestTracker, timeout: float, hurry: asyncio.Event | None = None) -> bool:
    """Wait for requests in progress, and for open connections to close after one more request each.

    True when no request was still running at the end. Connections on which
    no request began or ended for ``KEEPALIVE_GRACE`` are idle: they are left
    for the caller to close. (A request that was running when the drain began
    was answered keep-alive: its client gets the grace to send one more.)
    """
    started = time.monotonic()
    deadline = started + timeout
    while True:
        now = time.monotonic()
        idle = tracker.active == 0
        if hurry is not None and hurry.is_set() or now >= deadline:
            return idle
        if idle and (now - max(started, tracker.last_seen) >= KEEPALIVE_GRACE or server.open_connections() == 0):
            return True
        await asyncio.sleep(0.01)


async def shutdown(server: Server, app: TurnstileApplication, timeout: float, hurry: asyncio.Event | None = None) -> bool:
    """Drain and stop; True when every request in progress finished in time."""
    tracker = app.requests
    server.stop()
    server.close_keepalive()
    drained = await drain(server, tracker, timeout, hurry)
    if not drained:
        log.warning("shutdown: %d request(s) still running after %ss; closing their connections", tracker.active, timeout)
    await server.close_all_connections()
    if not drained:
        # Their handlers may still be finishing a write; give them a moment.
        await tracker.wait_idle(AFTER_CLOSE_GRACE)
    await app.services.close()
    return drained


async def serve(settings: Settings | None = None, link: SupervisorLink | None = None) -> None:
    """Start on PORT/HOST and run until SIGTERM or SIGINT, then stop gracefully.

    As a worker under ``WORKERS`` > 1 (core/worker.py), ``link`` brings the
    connections the supervisor hands over and carries the heartbeat; the log
    files are the worker's own, and only SIGTERM (sent by the supervisor)
    stops it: a terminal's Ctrl-C reaches the supervisor, which forwards it
    once.
    """
    settings = settings or load_settings()
    worker = link is not None
    if link is not None:
        link.start_heartbeat(settings.worker_timeout)
    logs: LogSetup = setup_logging(
        settings.log_dir, settings.log_level, settings.log_format, settings.log_max_bytes, settings.log_backups,
        worker=settings.worker_index if worker else None,
    )
    sockets: list[socket.socket] = []
    try:
        if link is None:  # a port in use or an unresolvable HOST: one ConfigError line, before any plugin speaks
            sockets = bind(settings)
        app = await create_app(settings)
        async with app.services:  # closed however serving ends (a clean shutdown has closed them already)
            server = make_server(app, settings)
            if link is not None:
                link.serve_connections(server)
            else:
                server.add_sockets(sockets)
                sockets = []  # the server owns them now
                print(f"Server running on port {settings.port} ({describe_store(settings)})", flush=True)
            stop, hurry = asyncio.Event(), asyncio.Event()

            def on_signal() -> None:
                (hurry if stop.is_set() else stop).set()

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM,) if worker else (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal)
            if link is not None:
                link.ready()
            await stop.wait()
            if link is not None:
                link.stop_taking()
            else:
                print("Shutting down: finishing requests in progress", flush=True)
            drained = await shutdown(server, app, settings.shutdown_timeout, hurry)
            if not worker:
                print("Stopped" + ("" if drained else " (some requests were cut off)"), flush=True)
            elif not drained:
                print(f"Worker {settings.worker_index}: some requests were cut off", flush=True)
    finally:
        for sock in sockets:  # bound, but start-up failed before serving
            sock.close()
        logs.close()
