"""What a long-lived server needs around the plugins: request draining and the body-size limit.

* `RequestTracker` counts requests in progress, and notes when one last
  began or ended, so a shutdown can wait for them and for keep-alive connections that
  are still in use.
* `TurnstileApplication` holds the shared `Services`, the loaded plugins and
  the OpenAPI document as typed attributes (``application.services``, as in
  Tornado's blog demo), routes plain paths with a dict lookup
  (`core.routing`), and answers a declared body larger than
  ``MAX_BODY_SIZE`` with a JSON 413 as soon as the headers are in, without
  reading the body into memory. It then reads and drops what the client is
  still sending (bounded in bytes and time) before closing, so the client
  gets the 413 rather than a connection reset.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Sequence

from tornado import gen, httputil
from tornado.iostream import IOStream, StreamClosedError

from .headers import header
from .logs import log_line
from .plugin_context import PluginContext
from .routing import ExactRoutingApplication
from .services import Services

log = logging.getLogger("turnstile.server")
LINGER_SECONDS = 2.0
LINGER_BYTES = 16 * 1024 * 1024


class RequestTracker:
    """Requests in progress, and when one last began or ended."""

    def __init__(self) -> None:
        self.active = 0
        self.last_seen = 0.0  # time.monotonic() when a request last began or ended

    def begin(self) -> None:
        self.active += 1
        self.last_seen = time.monotonic()

    def end(self) -> None:
        self.active -= 1
        self.last_seen = time.monotonic()

    async def wait_idle(self, timeout: float, give_up: asyncio.Event | None = None) -> bool:
        """Wait until no request is in progress; False if ``timeout`` passed (or ``give_up`` was set) first."""
        deadline = time.monotonic() + timeout
        while self.active > 0:
            if time.monotonic() >= deadline or (give_up is not None and give_up.is_set()):
                return False
            await asyncio.sleep(0.01)
        return True


class TurnstileApplication(ExactRoutingApplication):
    """The application: its services, plugins and API document, and a 413 for oversized bodies before they are read."""

    def __init__(
        self,
        handlers: list[Any],
        *,
        services: Services,
        plugins: Sequence[PluginContext] = (),
        openapi: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        self.services = services
        self.plugins = list(plugins)
        self.openapi = openapi or {}
        self.requests = RequestTracker()
        super().__init__(handlers, **settings)

    def log_request(self, handler: Any) -> None:
        """Tornado calls this once per finished request, 404s and errors included: count it, then log it."""
        self.services.metrics.observe_request(handler)
        super().log_request(handler)

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        return _BodyLimit(self, request_conn, super().start_request(server_conn, request_conn))


class _BodyLimit(httputil.HTTPMessageDelegate):
    def __init__(self, app: TurnstileApplication, conn: Any, inner: httputil.HTTPMessageDelegate) -> None:
        self.app = app
        self.conn = conn
        self.inner = inner
        self.tracker: RequestTracker | None = None

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Any:
        declared = header(headers, "Content-Length")
        if declared is not None and self._too_large(declared):
            settings = self.app.services.settings
            origin = headers.get("Origin")
            cors = origin if origin and origin.rstrip("/") in settings.allowed_origins else None
            expects_continue = headers.get("Expect", "").lower() == "100-continue"
            stream = self.conn.detach()
            log_line(start_line.method, origin or "-", start_line.path.split("?", 1)[0], 413, 0.0)
            asyncio.ensure_future(_reject(stream, settings.max_body_size, 0 if expects_continue else int(declared), cors))
            return None
        # A request whose body is still arriving is in progress too: count it
        # until its handler exists (the handler counts itself from then on).
        self.tracker = self.app.requests
        self.tracker.begin()
        return self.inner.headers_received(start_line, headers)

    def _too_large(self, declared: str) -> bool:
        try:
            return int(declared) > self.app.services.settings.max_body_size
        except ValueError:
            return False  # malformed: Tornado answers 400

    def data_received(self, chunk: bytes) -> Any:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        try:
            self.inner.finish()
        finally:
            self._release()

    def on_connection_close(self) -> None:
        try:
            self.inner.on_connection_close()
        finally:
            self._release()

    def _release(self) -> None:
        if self.tracker is not None:
            self.tracker.end()
            self.tracker = None


async def _reject(stream: IOStream, limit: int, incoming: int, cors_origin: str | None) -> None:
    body = json.dumps({"message": f"Request body is too large; the limit is {limit} bytes."}).encode()
    head = [
        "HTTP/1.1 413 Payload Too Large",
        "Content-Type: application/json; charset=UTF-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Vary: Origin",
    ]
    if cors_origin:
        head += [f"Access-Control-Allow-Origin: {cors_origin}", "Access-Control-Allow-Credentials: true"]
    try:
        await stream.write(("\r\n".join(head) + "\r\n\r\n").encode("latin1") + body)
        # Drop what the client is still sending: closing a socket with unread
        # data makes the kernel send a reset, which can destroy the 413 in flight.
        budget = min(incoming, LINGER_BYTES)
        deadline = stream.io_loop.time() + LINGER_SECONDS
        while budget > 0:
            chunk = await gen.with_timeout(deadline, stream.read_bytes(min(budget, 65536), partial=True))
            budget -= len(chunk)
    except (StreamClosedError, gen.TimeoutError):
        pass
    finally:
        stream.close()
