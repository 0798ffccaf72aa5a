"""The supervisor's hand-off: accept on the port, give each connection to the next worker in turn.

Workers sharing one listening socket do not share its connections: whichever
wakes first accepts everything queued, so a client that opens its keep-alive
connections in one burst (wrk, a proxy's pool) often lands them all on one
worker. Round-robin hand-off, as Node's ``cluster`` does on Linux, spreads
them evenly whatever the pattern; it costs the supervisor an ``accept`` and a
share of one ``sendmsg`` per new connection, nothing per request.

A connection handed over stays the supervisor's (`Target.pending`) until the
worker says it took it, so a worker that dies, hangs or drains first loses
nothing: its untaken connections go to another worker. A worker is skipped
while it has ``MAX_PENDING`` untaken connections or one older than
``STALL_SECONDS``; when every worker is skipped, connections wait here and the
supervisor stops accepting until one catches up.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from typing import Iterable

from . import handoff

log = logging.getLogger("turnstile.supervisor")

MAX_PENDING = 64  # connections handed to one worker and not yet taken
STALL_SECONDS = 0.5  # a connection untaken this long means its worker is not keeping up
ACCEPT_BATCH = 512  # connections accepted per wake-up
ACCEPT_PAUSE = 0.1  # seconds without accepting after accept failed (out of file descriptors, say)


class Target:
    """What the dispatcher knows of a worker: its channel and the connections it has not taken yet."""

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.pending: deque[tuple[float, socket.socket]] = deque()
        self.gone = False  # its channel refused a hand-off: it is exiting

    def has_room(self, now: float) -> bool:
        if self.gone or len(self.pending) >= MAX_PENDING:
            return False
        return not self.pending or now - self.pending[0][0] < STALL_SECONDS


class Dispatcher:
    """Round-robin over the workers that take connections (`targets`)."""

    def __init__(self, listeners: list[socket.socket]) -> None:
        self.listeners = listeners
        self.targets: list[Target] = []
        self.turn = 0
        self.waiting: deque[socket.socket] = deque()  # accepted, no worker had room
        self.paused_until = 0.0
        self.closed = False

    @property
    def accepting(self) -> bool:
        """Whether to accept now: there is a worker to take connections, none is waiting, and accept is not failing."""
        return bool(self.listeners) and bool(self.targets) and not self.waiting and time.monotonic() >= self.paused_until

    def add(self, target: Target) -> None:
        if target not in self.targets:
            self.targets.append(target)
        self.place([])

    def remove(self, target: Target) -> None:
        if target in self.targets:
            self.targets.remove(target)

    def accept(self, listener: socket.socket) -> None:
        """Accept what is queued on ``listener`` (up to ``ACCEPT_BATCH``) and hand it out."""
        accepted = []
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # out of file descriptors, say: leave the rest queued in the kernel for a moment
                log.warning("accept failed: %s; pausing for %.1fs", exc, ACCEPT_PAUSE)
                self.paused_until = time.monotonic() + ACCEPT_PAUSE
                break
            accepted.append(conn)
        self.place(accepted)

    def place(self, connections: Iterable[socket.socket]) -> None:
        """Give ``connections`` (after any already waiting) to the workers in turn; keep what none has room for."""
        self.waiting.extend(connections)
        if self.closed:  # stopping: no worker takes anything any more
            while self.waiting:
                self.waiting.popleft().close()
            return
        if not self.waiting or not self.targets:
            return
        now = time.monotonic()
        batches: dict[Target, list[socket.socket]] = {}
        while self.waiting:
            target = self.next_with_room(now, batches)
            if target is None:
                break
            batches.setdefault(target, []).append(self.waiting.popleft())
        for target, batch in batches.items():
            self.send(target, batch, now)

    def next_with_room(self, now: float, batches: dict[Target, list[socket.socket]]) -> Target | None:
        count = len(self.targets)
        for step in range(count):
            target = self.targets[(self.turn + step) % count]
            if target.has_room(now) and len(target.pending) + len(batches.get(target, ())) < MAX_PENDING:
                self.turn = (self.turn + step + 1) % count
                return target
        return None

    def send(self, target: Target, batch: list[socket.socket], now: float) -> None:
        for start in range(0, len(batch), handoff.MAX_FDS):
            chunk = batch[start:start + handoff.MAX_FDS]
            try:
                handoff.send_connections(target.channel, chunk)
            except (BrokenPipeError, ConnectionError):  # it is exiting; its exit hands back what it had not taken
                target.gone = True
                self.waiting.extendleft(reversed(batch[start:]))
                return
            except OSError as exc:  # its queue is full (it is not keeping up), or the kernel is short of memory
                if not isinstance(exc, BlockingIOError):
                    log.warning("handing connections to a worker failed: %s; trying again", exc)
                self.waiting.extendleft(reversed(batch[start:]))
                return
            target.pending.extend((now, conn) for conn in chunk)

    def took(self, target: Target, sent: int, received: int) -> None:
        """The worker read a message of ``sent`` connections and owns the first ``received``.

        The supervisor's copies of those are closed; any the kernel did not
        deliver (the worker was out of file descriptors) go out again.
        """
        message = [target.pending.popleft()[1] for _ in range(min(sent, len(target.pending)))]
        for conn in message[:received]:
            conn.close()
        if message[received:]:
            log.warning("%d connection(s) did not reach a worker (out of file descriptors?); handing them out again",
                        len(message) - received)
            self.waiting.extendleft(reversed(message[received:]))
            self.place([])

    def reclaim(self, target: Target) -> None:
        """``target`` takes no more: what it had not taken goes to the other workers, first in line."""
        self.remove(target)
        untaken = [conn for _sent, conn in target.pending]
        target.pending.clear()
        if untaken:
            log.info("%d connection(s) a worker had not taken were handed to another", len(untaken))
            self.waiting.extendleft(reversed(untaken))
        self.place([])

    def close_listeners(self) -> None:
        for listener in self.listeners:
            listener.close()
        self.listeners = []

    def close(self) -> None:
        """Close the port and every connection no worker took; from now on, connections handed back are closed too."""
        self.close_listeners()
        self.closed = True
        self.place([])
