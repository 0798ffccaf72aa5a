"""One worker process under the supervisor: ``python -m core.worker --slot N --channel FD --supervisor PID``.

The supervisor starts each worker as a fresh interpreter, so a worker runs
the code, plugins and ``.env`` on disk at the moment it starts: that is what
makes ``SIGHUP`` a deploy. The worker never listens on the port; the
supervisor hands it connections over its channel (`core.handoff`), and the
worker serves them with today's ``serve`` (core/serve.py).

While its event loop runs, the worker sends a heartbeat every
``WORKER_TIMEOUT / 4`` (at most every second); a loop blocked for longer than
``WORKER_TIMEOUT`` is what the supervisor kills it for.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.iostream import IOStream

from . import handoff
from .handoff import Word

log = logging.getLogger("turnstile.worker")
PR_SET_PDEATHSIG = 1


def heartbeat_interval(worker_timeout: float) -> float:
    """Seconds between heartbeats: four per ``WORKER_TIMEOUT``, at most one a second."""
    return max(0.05, min(1.0, worker_timeout / 4))


class SupervisorLink:
    """The worker's end of its channel: connections in; ready, heartbeats, ``took`` and ``draining`` out."""

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.server: HTTPServer | None = None
        self.heartbeat: PeriodicCallback | None = None

    def tell(self, word: Word, detail: str = "") -> None:
        try:
            handoff.tell(self.channel, word, detail)
        except OSError:
            pass  # the supervisor is gone; PR_SET_PDEATHSIG stops this worker

    def start_heartbeat(self, worker_timeout: float) -> None:
        """Beat from the event loop itself, so a blocked loop goes quiet."""
        self.tell(Word.BEAT)
        self.heartbeat = PeriodicCallback(lambda: self.tell(Word.BEAT), heartbeat_interval(worker_timeout) * 1000)
        self.heartbeat.start()

    def serve_connections(self, server: HTTPServer) -> None:
        """From now on, connections the supervisor hands over are served by ``server``."""
        self.server = server
        IOLoop.current().add_handler(self.channel.fileno(), lambda fd, events: self.take(), IOLoop.READ)

    def ready(self) -> None:
        self.tell(Word.READY)

    def take(self) -> None:
        """Receive every waiting connection, say ``took``, then start serving each (tornado's ``handle_stream``)."""
        server = self.server
        assert server is not None
        while True:
            message = handoff.receive_connections(self.channel)
            if message is None:  # the supervisor is gone
                IOLoop.current().remove_handler(self.channel.fileno())
                return
            sent, connections = message
            if not sent:
                return
            # Before a byte is read: from here on these are ours, and the supervisor re-sends any that did not arrive.
            self.tell(Word.TOOK, f"{sent} {len(connections)}")
            for conn in connections:
                try:
                    address = conn.getpeername()
                except OSError:  # the client has already gone
                    conn.close()
                    continue
                stream = IOStream(conn, max_buffer_size=server.max_buffer_size, read_chunk_size=server.read_chunk_size)
                server.handle_stream(stream, address)

    def stop_taking(self) -> None:
        """Serve what is already queued for this worker, then tell the supervisor to send no more."""
        if self.server is not None:
            self.take()
            try:
                IOLoop.current().remove_handler(self.channel.fileno())
            except (KeyError, ValueError):
                pass
        self.tell(Word.DRAINING)


def die_with_parent(supervisor: int) -> bool:
    """Linux: get SIGTERM (and so drain) if the supervisor is killed; False if it already has been."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    return os.getppid() == supervisor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--slot", type=int, required=True)
    parser.add_argument("--channel", type=int, required=True)
    parser.add_argument("--supervisor", type=int, required=True)
    args = parser.parse_args(argv)
    # Ctrl-C and a terminal's hangup reach the whole process group: the supervisor acts for its workers.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)
    if not die_with_parent(args.supervisor):
        return 1
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    channel = socket.socket(fileno=args.channel)
    channel.setblocking(False)
    link = SupervisorLink(channel)

    import asyncio

    from .config import ConfigError, load_settings
    from .plugin import PluginError
    from .serve import serve
    from .store import StoreError

    try:
        settings = load_settings().with_changes(worker_index=args.slot)
        asyncio.run(serve(settings, link=link))
    except (ConfigError, PluginError, StoreError) as exc:
        link.tell(Word.ERROR, str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
