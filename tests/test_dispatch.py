"""The supervisor's hand-off (core/dispatch.py, core/handoff.py) over real Unix sockets, without processes."""

from __future__ import annotations

import socket
import time

from core import dispatch, handoff
from core.dispatch import Dispatcher, Target
from core.handoff import Word


def channel() -> tuple[Target, socket.socket]:
    ours, theirs = handoff.pair()
    ours.setblocking(False)
    theirs.setblocking(False)
    return Target(ours), theirs


CLIENT_ENDS: list[socket.socket] = []  # kept open, so the stand-ins stay connected


def connections(count: int) -> list[socket.socket]:
    """Stand-ins for accepted client connections: one end of a socket pair each."""
    made = []
    for _ in range(count):
        ours, client = socket.socketpair()
        made.append(ours)
        CLIENT_ENDS.append(client)
    return made


def received(worker_end: socket.socket) -> list[socket.socket]:
    got: list[socket.socket] = []
    while (message := handoff.receive_connections(worker_end)) and message[0]:
        got += message[1]
    return got


def test_connections_go_to_the_workers_in_turn():
    (a, a_end), (b, b_end) = channel(), channel()
    dispatcher = Dispatcher([])
    dispatcher.add(a)
    dispatcher.add(b)
    dispatcher.place(connections(7))
    assert (len(received(a_end)), len(received(b_end))) == (4, 3)
    dispatcher.place(connections(1))  # the turn goes on where it stopped
    assert (len(received(a_end)), len(received(b_end))) == (0, 1)
    assert (len(a.pending), len(b.pending)) == (4, 4)


def test_took_closes_the_supervisors_copies_and_only_those():
    (a, a_end) = channel()
    dispatcher = Dispatcher([])
    dispatcher.add(a)
    first, second = connections(3), connections(1)
    dispatcher.place(first)
    dispatcher.place(second)
    dispatcher.took(a, 3, 3)  # the first message
    assert [c.fileno() for c in first] == [-1, -1, -1] and second[0].fileno() != -1
    assert len(a.pending) == 1


def test_connections_the_kernel_did_not_deliver_are_handed_out_again():
    """A worker out of file descriptors gets fewer than were sent: the rest go to a worker again, never lost or doubled."""
    (a, a_end), (b, b_end) = channel(), channel()
    dispatcher = Dispatcher([])
    dispatcher.add(a)
    conns = connections(3)
    dispatcher.place(conns)
    sent, got = handoff.receive_connections(a_end, max_fds=1)  # as if only one descriptor fitted
    assert (sent, len(got)) == (3, 1)
    dispatcher.add(b)
    dispatcher.remove(a)
    dispatcher.took(a, sent, len(got))
    assert conns[0].fileno() == -1  # a owns it now: the supervisor's copy is closed
    assert not a.pending
    assert {c.fileno() for _, c in b.pending} == {conns[1].fileno(), conns[2].fileno()}
    assert len(received(b_end)) == 2


def test_what_a_worker_did_not_take_goes_to_another_when_it_leaves():
    (a, a_end), (b, b_end) = channel(), channel()
    dispatcher = Dispatcher([])
    dispatcher.add(a)
    dispatcher.add(b)
    conns = connections(4)
    dispatcher.place(conns)
    dispatcher.reclaim(a)  # a died, or drained, before taking its two
    assert a not in dispatcher.targets and not a.pending
    assert len(b.pending) == 4
    assert {c.fileno() for c in conns} == {c.fileno() for _, c in b.pending}


def test_a_worker_that_does_not_take_is_skipped_and_connections_wait_when_none_has_room(monkeypatch):
    monkeypatch.setattr(dispatch, "MAX_PENDING", 2)
    (a, a_end), (b, b_end) = channel(), channel()
    listener = socket.create_server(("127.0.0.1", 0))
    dispatcher = Dispatcher([listener])
    dispatcher.add(a)
    dispatcher.add(b)
    assert dispatcher.accepting
    dispatcher.place(connections(5))
    assert (len(a.pending), len(b.pending), len(dispatcher.waiting)) == (2, 2, 1)
    assert not dispatcher.accepting  # the port waits in the kernel until a worker catches up
    dispatcher.took(b, 2, 2)
    dispatcher.place([])
    assert (len(b.pending), len(dispatcher.waiting)) == (1, 0)
    assert dispatcher.accepting
    dispatcher.close()


def test_a_stalled_worker_is_skipped(monkeypatch):
    (a, a_end), (b, b_end) = channel(), channel()
    dispatcher = Dispatcher([])
    dispatcher.add(a)
    dispatcher.add(b)
    dispatcher.place(connections(2))
    now = time.monotonic()
    a.pending[0] = (now - dispatch.STALL_SECONDS - 1, a.pending[0][1])  # a has held one untaken for too long
    dispatcher.took(b, 1, 1)
    dispatcher.place(connections(4))
    assert (len(a.pending), len(b.pending)) == (1, 4)


def test_the_worker_end_reports_back_in_order():
    ours, theirs = handoff.pair()
    ours.setblocking(False)
    for word, detail in ((Word.READY, ""), (Word.TOOK, "3 3"), (Word.ERROR, "plugin 'x'\nbroken"), (Word.BEAT, "")):
        handoff.tell(theirs, word, detail)
    news, closed = handoff.read_news(ours)
    assert news == [(Word.READY, ""), (Word.TOOK, "3 3"), (Word.ERROR, "plugin 'x' broken"), (Word.BEAT, "")]
    assert not closed
    theirs.close()
    assert handoff.read_news(ours) == ([], True)


def test_after_close_connections_handed_back_are_closed_not_kept():
    (a, a_end) = channel()
    dispatcher = Dispatcher([])
    dispatcher.add(a)
    conns = connections(2)
    dispatcher.place(conns)
    dispatcher.close()  # the supervisor is stopping
    dispatcher.reclaim(a)  # a drained without taking them
    assert not dispatcher.waiting and [c.fileno() for c in conns] == [-1, -1]
