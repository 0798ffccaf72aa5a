"""The channel between the supervisor and one worker: client connections one way, news the other.

One ``SOCK_SEQPACKET`` socket pair per worker, so messages keep their
boundaries and their order:

* supervisor -> worker: accepted client connections, as file descriptors
  (``socket.send_fds``), up to ``MAX_FDS`` in one message;
* worker -> supervisor: one short message per event (`Word`): ``ready``,
  ``beat`` (its event loop is alive), ``took SENT GOT`` (it read one message
  of SENT connections and owns the first GOT of them from now on; fewer when
  it ran out of file descriptors and the kernel dropped the rest),
  ``draining`` (it takes no more), ``error ...`` (why it cannot start, on
  one line).

A connection stays the supervisor's until the worker says ``took``. A worker
that dies, hangs or drains before that never read a byte from it, so the
supervisor can give it to another worker: a request is never lost in transit.
"""

from __future__ import annotations

import enum
import select
import socket

MAX_FDS = 250  # Linux passes at most 253 descriptors in one message (SCM_MAX_FD)
MAX_MESSAGE = 512


class Word(str, enum.Enum):
    READY = "ready"
    BEAT = "beat"
    TOOK = "took"
    DRAINING = "draining"
    ERROR = "error"


def pair() -> tuple[socket.socket, socket.socket]:
    """(supervisor's end, worker's end) of a new channel; both ends are non-blocking once in use."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send_connections(channel: socket.socket, connections: list[socket.socket]) -> None:
    """Hand ``connections`` (at most ``MAX_FDS``) to the worker at the other end, in one message.

    Raises ``BlockingIOError`` when the worker's queue is full and ``OSError``
    when it is gone; either way nothing was sent.
    """
    socket.send_fds(channel, [str(len(connections)).encode()], [conn.fileno() for conn in connections])


def receive_connections(channel: socket.socket, max_fds: int = MAX_FDS) -> tuple[int, list[socket.socket]] | None:
    """One waiting message: (how many connections were sent in it, those that arrived); ``(0, [])`` when none
    is waiting; ``None`` when the supervisor is gone.

    ``channel`` must be non-blocking (``recv_fds`` ignores its flags before Python 3.12).
    """
    try:
        data, fds, _flags, _addr = socket.recv_fds(channel, 16, max_fds)
    except (BlockingIOError, InterruptedError):
        return 0, []
    except ConnectionError:
        return None
    if not data and not fds:
        return None
    sent = int(data) if data.isdigit() else len(fds)
    return sent, [socket.socket(fileno=fd) for fd in fds]


def tell(channel: socket.socket, word: Word, detail: str = "") -> None:
    """Send one message to the supervisor, waiting while its queue is full: a ``took`` must never be dropped."""
    text = word.value if not detail else f"{word.value} {' '.join(detail.split())}"
    data = text.encode()[:MAX_MESSAGE]
    while True:
        try:
            channel.send(data)
            return
        except (BlockingIOError, InterruptedError):
            waiter = select.poll()
            waiter.register(channel, select.POLLOUT)
            waiter.poll(1000)


def read_news(channel: socket.socket) -> tuple[list[tuple[Word, str]], bool]:
    """Every message waiting from the worker, and whether its end is closed (it exited)."""
    news: list[tuple[Word, str]] = []
    while True:
        try:
            data = channel.recv(MAX_MESSAGE)
        except (BlockingIOError, InterruptedError):
            return news, False
        except OSError:
            return news, True
        if not data:
            return news, True
        word, _, detail = data.decode(errors="replace").partition(" ")
        try:
            news.append((Word(word), detail))
        except ValueError:
            continue  # not ours: ignore rather than trust it
