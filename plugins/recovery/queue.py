"""A durable outgoing-mail queue in the store, shared by every worker and instance.

Why in the store: a request answered 202 must not lose its mail when the
process stops or crashes before sending, and any process on the same data may
send any job. A job holds no secret, only what to compose (``{"kind":
"reset", "data": {"username": "alice"}}``); the message, with its one-time
token, is composed at send time by the ``compose`` callback, afresh on each
attempt.

Each process claims due jobs in a transaction, leasing them for ``lease``
seconds under a random claim token: a process that dies mid-send leaves its
jobs to be retried by another once the lease runs out. Everything written after
a send (delete, reschedule) re-reads the job and acts only if the claim is still
this one. Delivery is at least once: a crash between the send and the delete
sends the mail again.

Nothing logged names an address or holds a message's body, token or link.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from email.message import EmailMessage
from typing import Awaitable, Callable

from core.plugin import Doc, Namespace, where

from .mail import Transport

#: ``compose(kind, data, attempt)``: the message for a job, made at send time (``attempt`` counts from 1), or None.
Compose = Callable[[str, dict, int], Awaitable[EmailMessage | None]]

_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"'@]+@[^\s<>()\[\],;:\"'@]+")


def describe_error(exc: BaseException) -> str:
    """``Type: message`` for the log, with anything that looks like an address removed (servers echo recipients)."""
    text = _ADDRESS.sub("<address>", str(exc))
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class MailQueue:
    """Jobs in collection ``collection`` of ``db``, sent through ``transport``; see the module docstring."""

    def __init__(
        self,
        db: Namespace,
        transport: Transport,
        compose: Compose,
        log: logging.Logger,
        *,
        max_attempts: int = 6,
        retry_delay: float = 10.0,
        max_delay: float = 3600.0,
        lease: float = 120.0,
        poll: float = 5.0,
        concurrency: int = 4,
        clock: Callable[[], float] = time.time,
        collection: str = "mail_queue",
    ) -> None:
        if max_attempts < 1 or concurrency < 1:
            raise ValueError("max_attempts and concurrency must be at least 1")
        if lease <= 0 or poll <= 0 or retry_delay < 0 or max_delay < 0:
            raise ValueError("lease and poll must be positive, retry_delay and max_delay not negative")
        self.db = db
        self.transport = transport
        self.compose = compose
        self.log = log
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.max_delay = max_delay
        self.lease = lease
        self.poll = poll
        self.concurrency = concurrency
        self.clock = clock
        self.collection = collection
        self._wake = asyncio.Event()
        self._stopping = False
        self._runner: asyncio.Task | None = None
        self._active: dict[int, asyncio.Task] = {}  # job id -> its send, at most `concurrency`
        self._claimed: dict[int, str] = {}  # job id -> claim token, for jobs claimed here and not settled yet
        self._claim_failing = False

    # -- the interface ------------------------------------------------------------------------

    async def enqueue(self, kind: str, data: dict) -> None:
        """Queue one mail; returns once the job is durable (then a crash does not lose it)."""
        now = self.clock()
        await self.db.collection(self.collection).insert(
            {"kind": kind, "data": data, "attempts": 0, "due": now, "created": now}
        )
        self._wake.set()

    def start(self) -> None:
        """Run the sender in the background: on each `enqueue` here, and every ``poll`` seconds for the rest."""
        if self._runner is not None and not self._runner.done():
            return
        self._stopping = False
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="mail queue")

    async def run_once(self) -> int:
        """Claim the jobs due now and send them (``concurrency`` at a time); how many were processed.

        Each job is taken at most once per call, so a failed job rescheduled
        without delay waits for the next call. A store failure while claiming raises.
        """
        cutoff = self.clock()
        seen: set[int] = set()
        mine: list[asyncio.Task] = []
        while True:
            free = self.concurrency - len(self._active)
            if free <= 0:
                await asyncio.wait(list(self._active.values()), return_when=asyncio.FIRST_COMPLETED)
                continue
            jobs = await self._claim(free, cutoff, seen)
            for job in jobs:
                seen.add(job["id"])
                mine.append(self._spawn(job))
            if len(jobs) < free:
                break
        await asyncio.gather(*mine)
        return len(mine)

    async def stop(self, timeout: float) -> int:
        """Stop the background loop, send what is due for up to ``timeout`` seconds, and hand back the rest.

        Jobs this process claimed and did not settle are made due at once, so
        another process, or the next start, sends them without waiting for the
        lease. Returns how many jobs are left in the queue (all processes').
        """
        self._stopping = True
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        if self._runner is not None:
            await asyncio.wait([self._runner], timeout=max(0.0, deadline - loop.time()))
            if not self._runner.done():  # stuck claiming from a store that does not answer
                self._runner.cancel()
                await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        # Drain: send what is due now (a request answered just before the signal included) while the time lasts.
        try:
            while loop.time() < deadline and await asyncio.wait_for(self.run_once(), max(0.0, deadline - loop.time())):
                pass
        except TimeoutError:
            pass
        except Exception as exc:  # a store outage: what is left stays queued for the next start
            self.log.warning("mail queue: cannot drain at shutdown (%s)", describe_error(exc))
        sends = list(self._active.values())
        if sends:
            await asyncio.wait(sends, timeout=max(0.0, deadline - loop.time()))
            unfinished = [task for task in sends if not task.done()]
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
            if unfinished:
                self.log.warning("mail queue: %d send(s) still running after %gs, cancelled", len(unfinished), timeout)
        left = await self._release()
        if left:
            self.log.warning("mail queue: %d mail(s) left queued; another process or the next start sends them", left)
        return left

    # -- the sender ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self._active)
            if free > 0:
                try:
                    jobs = await self._claim(free, self.clock(), set())
                except Exception as exc:  # a store outage: try again at the next poll
                    jobs = []
                    if not self._claim_failing:
                        self.log.warning("mail queue: cannot claim jobs (%s); retrying every %gs", describe_error(exc), self.poll)
                    self._claim_failing = True
                else:
                    if self._claim_failing:
                        self.log.info("mail queue: claiming jobs again")
                    self._claim_failing = False
                if not self._stopping:  # else stop() releases them with the rest it finds claimed
                    for job in jobs:
                        self._spawn(job)
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll)
            except TimeoutError:
                pass

    def _spawn(self, job: Doc) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(self._process(job))
        self._active[job["id"]] = task

        def done(_: asyncio.Task) -> None:
            self._active.pop(job["id"], None)
            self._wake.set()  # a free slot: more jobs may be due

        task.add_done_callback(done)
        return task

    async def _claim(self, limit: int, cutoff: float, skip: set[int]) -> list[Doc]:
        """Lease up to ``limit`` jobs due by ``cutoff`` (oldest first) to this process, in one transaction."""
        if not await self.db.collection(self.collection).count(where("due") <= cutoff):
            return []  # the usual answer to a poll, without a transaction (and its locks) every few seconds
        token = secrets.token_hex(12)
        now = self.clock()
        async with self.db.transaction() as tx:
            jobs = tx.collection(self.collection)
            due = [job for job in await jobs.find(where("due") <= cutoff) if job["id"] not in skip]
            due.sort(key=lambda job: (job["due"], job["id"]))
            taken = due[:limit]
            for job in taken:
                job.update(due=now + self.lease, claim=token)
                await jobs.update(job["id"], {"due": job["due"], "claim": token})
        for job in taken:
            self._claimed[job["id"]] = token
        return taken

    async def _process(self, job: Doc) -> None:
        """One attempt at one job; never raises but for cancellation."""
        kind = job.get("kind")
        try:
            try:
                message = await self.compose(kind, dict(job.get("data") or {}), int(job.get("attempts") or 0) + 1)
                if message is None:
                    if await self._settle(job, delete=True):
                        self.log.info("mail %s (job %s): nothing to send, dropped", kind, job["id"])
                    return
                where_to = await self.transport.send(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._failed(job, exc)
                return
            if await self._settle(job, delete=True):
                self.log.info("mail %s sent (%s)", kind, where_to)
            else:
                self.log.info("mail %s sent (%s); its job was no longer this process's", kind, where_to)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store failed after the send: the job comes back after its lease
            self.log.warning(
                "mail %s (job %s): cannot update the queue (%s); it may be sent again after %gs",
                kind, job["id"], describe_error(exc), self.lease,
            )
        finally:
            if not asyncio.current_task().cancelling():
                self._claimed.pop(job["id"], None)

    async def _settle(self, job: Doc, delete: bool = False, changes: Doc | None = None) -> bool:
        """Delete or change the job if this process still holds its claim; whether it did."""
        async with self.db.transaction() as tx:
            jobs = tx.collection(self.collection)
            current = await jobs.get(job["id"])
            if current is None or current.get("claim") != job["claim"]:
                return False
            if delete:
                await jobs.delete(job["id"])
            else:
                await jobs.update(job["id"], changes or {})
        return True

    async def _failed(self, job: Doc, exc: Exception) -> None:
        kind, error = job.get("kind"), describe_error(exc)
        attempts = int(job.get("attempts") or 0) + 1
        if attempts >= self.max_attempts:
            if await self._settle(job, delete=True):
                self.log.error("mail %s (job %s) given up after %d attempts: %s", kind, job["id"], attempts, error)
            return
        delay = min(self.max_delay, self.retry_delay * 2 ** (attempts - 1))
        if await self._settle(job, changes={"attempts": attempts, "due": self.clock() + delay, "claim": None}):
            self.log.warning(
                "mail %s (job %s) attempt %d of %d failed: %s; next try in %gs",
                kind, job["id"], attempts, self.max_attempts, error, delay,
            )

    async def _release(self) -> int:
        """Make the jobs claimed here and not settled due now; how many jobs the queue holds then."""
        claimed, now = dict(self._claimed), self.clock()
        try:
            async with self.db.transaction() as tx:
                jobs = tx.collection(self.collection)
                for job_id, token in claimed.items():
                    current = await jobs.get(job_id)
                    if current is not None and current.get("claim") == token:
                        await jobs.update(job_id, {"due": now, "claim": None})
                left = await jobs.count()
        except Exception as exc:
            self.log.warning(
                "mail queue: cannot release %d claimed job(s) (%s); they are sent after their lease",
                len(claimed), describe_error(exc),
            )
            return len(claimed)
        for job_id in claimed:
            self._claimed.pop(job_id, None)
        return left
