"""The recovery plugin's durable mail queue, on each store backend: delivery, retries, leases, several senders, stop."""

from __future__ import annotations

import asyncio
import logging
from email.message import EmailMessage
from typing import Awaitable, Callable

import pytest

from smtp_kit import SMTPServer

from core.plugin import Namespace, StoreUnavailable
from plugins.recovery.mail import SMTPConfig, SMTPTransport, make_message
from plugins.recovery.queue import MailQueue

LOG = "test_recovery_mail_queue"
TOKEN = "tok-5f1e0c9a7b3d"
SENDER = "Turnstile <no-reply@turnstile.example>"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A transport that records subjects; ``gates[subject]`` holds that send until set; ``fail`` raises."""

    def __init__(self, delay: float = 0) -> None:
        self.sent: list[str] = []
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.delay = delay
        self.fail: Exception | None = None
        self.in_flight = self.most_in_flight = 0

    async def send(self, message: EmailMessage) -> str:
        subject = message["Subject"]
        self.started.append(subject)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if subject in self.gates:
                await self.gates[subject].wait()
            await asyncio.sleep(self.delay)
            if self.fail is not None:
                raise self.fail
            self.sent.append(subject)
            return "recorder"
        finally:
            self.in_flight -= 1


class Composer:
    """The lead's callback, as the queue sees it: a fresh message (with a token) per call; None for an unknown user."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.attempts: list[int] = []

    async def __call__(self, kind: str, data: dict, attempt: int) -> EmailMessage | None:
        self.calls.append((kind, data))
        self.attempts.append(attempt)
        user = data["user"]
        if user == "ghost":
            return None
        if user == "boom":
            raise RuntimeError("the user table is gone")
        body = f"Hello {user}, open https://turnstile.example/reset#{TOKEN}-{len(self.calls)}\n"
        return make_message(SENDER, f"{user}@example.com", f"{kind} {user}", body)


def make_queue(store, transport, compose=None, **options) -> MailQueue:
    options = {"retry_delay": 0.05, "poll": 0.05, **options}
    return MailQueue(Namespace(store, "recovery"), transport, compose or Composer(), logging.getLogger(LOG), **options)


async def jobs(store) -> list[dict]:
    return await store.collection("recovery.mail_queue").all()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.01)


def smtp(server: SMTPServer) -> SMTPTransport:
    return SMTPTransport(SMTPConfig("127.0.0.1", server.port, "", "", "none"), timeout=5)


def queue_logs(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOG]


# -- delivery ------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_enqueue_stores_a_job_with_no_secret(open_store):
    async with open_store() as store:
        clock = Clock()
        queue = make_queue(store, Recorder(), clock=clock)
        await queue.enqueue("reset", {"user": "alice"})
        assert await jobs(store) == [
            {"id": 1, "kind": "reset", "data": {"user": "alice"}, "attempts": 0, "due": clock.now, "created": clock.now}
        ]


@pytest.mark.gen_test(timeout=30)
async def test_an_enqueued_mail_is_sent_by_smtp_and_its_job_deleted(open_store, smtp_server, caplog):
    caplog.set_level(logging.INFO, logger=LOG)
    async with open_store() as store:
        queue = make_queue(store, smtp(smtp_server), poll=30)  # only the enqueue's wake-up can send it in time
        queue.start()
        try:
            await queue.enqueue("reset", {"user": "alice"})
            [message] = await smtp_server.wait_for(1)
            await eventually(lambda: _empty(store))
        finally:
            assert await queue.stop(5) == 0
        assert message["To"] == "alice@example.com" and message["Subject"] == "reset alice"
        assert TOKEN in message.get_content()
        assert [r.getMessage() for r in queue_logs(caplog)] == [f"mail reset sent (smtp 127.0.0.1:{smtp_server.port})"]


async def _empty(store) -> bool:
    return await jobs(store) == []


@pytest.mark.gen_test(timeout=30)
async def test_nothing_to_send_drops_the_job_quietly(open_store, caplog):
    caplog.set_level(logging.DEBUG, logger=LOG)
    async with open_store() as store:
        transport, compose = Recorder(), Composer()
        queue = make_queue(store, transport, compose)
        await queue.enqueue("reset", {"user": "ghost"})
        assert await queue.run_once() == 1
        assert transport.started == [] and compose.calls == [("reset", {"user": "ghost"})]
        assert await jobs(store) == []
        assert [r.levelno for r in queue_logs(caplog)] == [logging.INFO]


@pytest.mark.gen_test(timeout=30)
async def test_smtp_down_backs_off_then_delivers_once_it_is_up(open_store, caplog):
    caplog.set_level(logging.INFO, logger=LOG)
    server = SMTPServer()  # its port, nothing listening yet
    try:
        async with open_store() as store:
            clock, compose = Clock(), Composer()
            queue = make_queue(store, smtp(server), compose, clock=clock, retry_delay=10, max_delay=50, lease=120)
            t0 = clock.now
            await queue.enqueue("verify", {"user": "bob"})
            for attempts, delay in [(1, 10), (2, 20), (3, 40), (4, 50)]:  # doubled from retry_delay, capped at max_delay
                assert await queue.run_once() == 1
                [job] = await jobs(store)
                assert (job["attempts"], job["due"], job["claim"]) == (attempts, clock.now + delay, None)
                clock.now += delay - 1
                assert await queue.run_once() == 0, "not due before its time"
                clock.now += 1
            server.start()
            assert await queue.run_once() == 1
            [message] = server.messages
            assert await jobs(store) == [] and message["To"] == "bob@example.com"
            assert len(compose.calls) == 5, "each attempt composes afresh (a fresh token)"
            assert compose.attempts == [1, 2, 3, 4, 5]
            assert clock.now == t0 + 10 + 20 + 40 + 50
        warnings = [r.getMessage() for r in queue_logs(caplog) if r.levelno == logging.WARNING]
        assert len(warnings) == 4
        assert warnings[0].startswith("mail verify (job 1) attempt 1 of 6 failed: SMTPConnectError")
        assert warnings[3].endswith("next try in 50s")
    finally:
        server.stop()


@pytest.mark.gen_test(timeout=30)
async def test_after_max_attempts_the_job_is_dropped_with_an_error(open_store, caplog):
    caplog.set_level(logging.INFO, logger=LOG)
    down = SMTPServer()
    async with open_store() as store:
        queue = make_queue(store, smtp(down), max_attempts=3, retry_delay=0)
        await queue.enqueue("reset", {"user": "carol"})
        assert [await queue.run_once() for _ in range(4)] == [1, 1, 1, 0]
        assert await jobs(store) == []
    [error] = [r for r in queue_logs(caplog) if r.levelno == logging.ERROR]
    assert error.getMessage().startswith("mail reset (job 1) given up after 3 attempts: SMTPConnectError: ")


@pytest.mark.gen_test(timeout=30)
async def test_one_failing_job_does_not_hold_up_the_others(open_store):
    async with open_store() as store:
        transport = Recorder()
        queue = make_queue(store, transport, concurrency=2, retry_delay=60)
        for user in ("boom", "dave", "erin"):
            await queue.enqueue("reset", {"user": user})
        assert await queue.run_once() == 3
        assert sorted(transport.sent) == ["reset dave", "reset erin"]
        [job] = await jobs(store)
        assert job["data"] == {"user": "boom"} and job["attempts"] == 1


# -- several senders -----------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_job_claimed_by_a_dead_sender_is_sent_by_another_after_the_lease(open_store, caplog):
    caplog.set_level(logging.INFO, logger=LOG)
    async with open_store() as store_a, open_store() as store_b:
        clock = Clock()
        stuck = Recorder()
        stuck.gates["reset frank"] = asyncio.Event()  # sender A hangs mid-send, as if it had died
        a = make_queue(store_a, stuck, clock=clock, lease=120)
        await a.enqueue("reset", {"user": "frank"})
        a_run = asyncio.ensure_future(a.run_once())
        await eventually(lambda: _true(stuck.started))

        other = Recorder()
        b = make_queue(store_b, other, clock=clock, lease=120)
        clock.now += 119
        assert await b.run_once() == 0, "still leased to A"
        clock.now += 2
        assert await b.run_once() == 1 and other.sent == ["reset frank"]
        assert await jobs(store_b) == []

        stuck.gates["reset frank"].set()  # A comes back: its claim is gone, it must not touch the queue
        assert await a_run == 1
        assert any("no longer this process's" in r.getMessage() for r in queue_logs(caplog))


async def _true(value) -> bool:
    return bool(value)


@pytest.mark.gen_test(timeout=30)
async def test_a_sender_whose_lease_ran_out_leaves_the_new_claimant_s_job_alone(open_store):
    async with open_store() as store_a, open_store() as store_b:
        clock = Clock()
        stuck = Recorder()
        stuck.gates["reset gina"] = asyncio.Event()
        a = make_queue(store_a, stuck, clock=clock, lease=120)
        await a.enqueue("reset", {"user": "gina"})
        a_run = asyncio.ensure_future(a.run_once())
        await eventually(lambda: _true(stuck.started))

        failing = Recorder()
        failing.fail = OSError("connection reset")
        b = make_queue(store_b, failing, clock=clock, lease=120, retry_delay=30)
        clock.now += 121
        assert await b.run_once() == 1
        stuck.fail = OSError("A fails too")
        stuck.gates["reset gina"].set()
        await a_run
        [job] = await jobs(store_a)
        assert (job["attempts"], job["due"]) == (1, clock.now + 30), "B's reschedule stands; A counted nothing"


@pytest.mark.gen_test(timeout=60)
async def test_two_senders_on_one_store_send_each_job_exactly_once(open_store):
    async with open_store() as store_a, open_store() as store_b:
        sent_a, sent_b = Recorder(delay=0.005), Recorder(delay=0.005)
        a = make_queue(store_a, sent_a, concurrency=3)
        b = make_queue(store_b, sent_b, concurrency=3)
        expected = []
        for n in range(24):
            await (a if n % 2 else b).enqueue("reset", {"user": f"user{n}"})
            expected.append(f"reset user{n}")
        a.start()
        b.start()
        try:
            await eventually(lambda: _empty(store_a), timeout=30)
        finally:
            await a.stop(5)
            await b.stop(5)
        assert sorted(sent_a.sent + sent_b.sent) == sorted(expected)
        assert sent_a.most_in_flight <= 3 and sent_b.most_in_flight <= 3


# -- the background sender and stopping ----------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_stop_waits_for_a_send_in_flight(open_store):
    async with open_store() as store:
        transport = Recorder()
        transport.gates["reset hank"] = asyncio.Event()
        queue = make_queue(store, transport)
        queue.start()
        await queue.enqueue("reset", {"user": "hank"})
        await eventually(lambda: _true(transport.started))
        stopping = asyncio.ensure_future(queue.stop(10))
        await asyncio.sleep(0.1)
        assert not stopping.done(), "stop returned with a send in flight"
        transport.gates["reset hank"].set()
        assert await stopping == 0
        assert transport.sent == ["reset hank"] and await jobs(store) == []


@pytest.mark.gen_test(timeout=30)
async def test_stop_hands_back_unfinished_jobs_at_once(open_store, caplog):
    caplog.set_level(logging.INFO, logger=LOG)
    async with open_store() as store_a, open_store() as store_b:
        clock = Clock()
        stuck = Recorder()
        for user in ("ivan", "judy"):
            stuck.gates[f"reset {user}"] = asyncio.Event()  # never set
        a = make_queue(store_a, stuck, clock=clock, concurrency=2, lease=120)
        a.start()
        await a.enqueue("reset", {"user": "ivan"})
        await a.enqueue("reset", {"user": "judy"})
        await eventually(lambda: _true(len(stuck.started) == 2))
        assert await a.stop(0.05) == 2
        assert {(job["due"], job.get("claim")) for job in await jobs(store_a)} == {(clock.now, None)}
        assert any(r.getMessage().startswith("mail queue: 2 mail(s) left queued") for r in queue_logs(caplog))

        other = Recorder()
        b = make_queue(store_b, other, clock=clock, lease=120)  # same time: the lease has not run out
        assert await b.run_once() == 2
        assert sorted(other.sent) == ["reset ivan", "reset judy"] and await jobs(store_b) == []


@pytest.mark.gen_test(timeout=30)
async def test_stop_sends_what_is_due_while_the_time_lasts(open_store):
    """A request answered just before shutdown: its job is due but no sender has claimed it yet. Stop sends it."""
    async with open_store() as store:
        transport = Recorder()
        queue = make_queue(store, transport, poll=30)  # never started: nothing but stop() will look
        for user in ("kim", "lou"):
            await queue.enqueue("reset", {"user": user})
        assert await queue.stop(5) == 0
        assert sorted(transport.sent) == ["reset kim", "reset lou"] and await jobs(store) == []


class FlakyNamespace(Namespace):
    """A namespace whose transactions fail while ``down`` (a store outage, as claiming sees it)."""

    down = True
    tries = 0

    def transaction(self):
        if self.down:
            self.tries += 1
            raise StoreUnavailable("connection refused")
        return super().transaction()


@pytest.mark.gen_test(timeout=30)
async def test_a_store_outage_while_claiming_is_logged_once_and_sending_resumes(open_store, caplog):
    caplog.set_level(logging.INFO, logger=LOG)
    async with open_store() as store:
        transport = Recorder()
        db = FlakyNamespace(store, "recovery")
        queue = MailQueue(db, transport, Composer(), logging.getLogger(LOG), poll=0.02, retry_delay=0.05)
        await queue.enqueue("reset", {"user": "kim"})  # a plain insert: not through the flaky transaction
        queue.start()
        try:
            await eventually(lambda: _true(db.tries >= 3))
            assert transport.started == []
            db.down = False
            await eventually(lambda: _true(transport.sent))
        finally:
            await queue.stop(5)
        messages = [r.getMessage() for r in queue_logs(caplog)]
        assert sum("cannot claim jobs (StoreUnavailable: connection refused)" in m for m in messages) == 1
        assert "mail queue: claiming jobs again" in messages and "mail reset sent (recorder)" in messages


@pytest.mark.gen_test(timeout=30)
async def test_the_log_names_no_address_and_holds_no_message(open_store, smtp_server, caplog):
    caplog.set_level(logging.DEBUG)
    async with open_store() as store:
        queue = make_queue(store, smtp(smtp_server), max_attempts=2, retry_delay=0)
        for user in ("lena", "ghost", "boom"):
            await queue.enqueue("reset", {"user": user})
        assert await queue.run_once() == 3  # sent, nothing to send, compose failed
        smtp_server.refuse_rcpt = True  # "550 <mike@example.com>: Recipient address rejected"
        await queue.enqueue("reset", {"user": "mike"})
        assert await queue.run_once() == 2  # mike failed; boom given up
        assert await queue.run_once() == 1  # mike given up
        assert await jobs(store) == []
    logged = "\n".join(r.getMessage() for r in queue_logs(caplog))
    assert "given up after 2 attempts: SMTPRecipientsRefused" in logged and "mail reset sent" in logged
    for secret in ("@example.com", "lena", "mike", "ghost", TOKEN, "Hello", "turnstile.example"):
        assert secret not in logged, secret
