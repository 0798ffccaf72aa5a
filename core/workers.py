"""``WORKERS`` > 1: a supervisor process that binds the port and runs N worker processes sharing it.

The supervisor binds the listening sockets, then forks the workers (as
Tornado's ``fork_processes`` and gunicorn's arbiter do). Each worker runs its
own event loop, plugins and store connection, all opened after the fork:
nothing with threads or sockets of a store crosses a fork. The supervisor
itself never opens the store and never starts a thread, so forking it is safe.

- A worker that dies is replaced after a backoff that grows while it keeps
  dying; a log line (stderr and errLog.txt) names its index, pid and status.
- A worker that dies before it ever served, ``START_FAILURES`` times in a row,
  stops the server: its error is printed once as ``turnstile: ...``, exit 1.
- SIGTERM or SIGINT drains every worker (each gets SIGTERM and runs the
  graceful shutdown of core/serve.py); a second signal hurries them. The
  supervisor waits for all of them and exits 0.
- Metrics: ``PROMETHEUS_MULTIPROC_DIR`` is a fresh directory set before the
  first fork, a dead worker's files are marked dead, the directory is removed
  at the end.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from logging.handlers import RotatingFileHandler
from typing import Any

from .config import Settings

log = logging.getLogger("turnstile.supervisor")

START_FAILURES = 3  # deaths before serving, in a row, that stop the server
BACKOFF_FIRST = 0.1  # seconds before the first replacement
BACKOFF_MAX = 5.0
CRASH_WINDOW = 60.0  # deaths older than this no longer lengthen the backoff
PR_SET_PDEATHSIG = 1


@dataclass
class Worker:
    index: int
    pid: int
    pipe: int  # read end: the worker writes "ready" or "error <message>"
    ready: bool = False
    message: str = ""
    closed: bool = False  # its end of the pipe is closed: it is exiting, SIGCHLD follows


def describe(status: int) -> str:
    """``exited with status 1`` or ``killed by signal SIGKILL``, from a wait status."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def die_with_parent() -> None:
    """Linux: get SIGTERM (and so drain) if the supervisor itself is killed, instead of serving on alone."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Supervisor:
    """Runs ``settings.workers`` workers on one set of listening sockets until told to stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workers: dict[int, Worker] = {}  # by pid
        self.due: dict[int, float] = {}  # index -> monotonic time to start it
        self.deaths: dict[int, list[float]] = {}  # index -> recent deaths (for the backoff)
        self.start_failures: dict[int, int] = {}  # index -> deaths before serving, in a row
        self.signals: list[int] = []
        self.stopping = False
        self.failure: str | None = None
        self.announced = False
        self.sockets: list[socket.socket] = []
        self.metrics_dir = ""
        self.file_handler: logging.Handler | None = None
        self.wake_r = self.wake_w = -1

    # -- the supervisor's own process -------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (0) or until a worker cannot start (1)."""
        from tornado.netutil import bind_sockets

        self.setup_log()
        try:
            self.sockets = bind_sockets(self.settings.port, address=self.settings.host or None)
        except OSError as exc:
            print(f"turnstile: cannot listen on port {self.settings.port}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        # Before anything imports prometheus_client: it picks its multiprocess mode from this at import.
        self.metrics_dir = tempfile.mkdtemp(prefix="turnstile-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        import core.serve  # noqa: F401  loaded once here, inherited by every worker

        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, self.on_signal)
        try:
            for index in range(self.settings.workers):
                self.spawn(index)
            self.loop()
        finally:
            self.cleanup()
        if self.failure:
            print(f"turnstile: {self.failure}", file=sys.stderr, flush=True)
            return 1
        print("Stopped", flush=True)
        return 0

    def setup_log(self) -> None:
        """The supervisor's lines go to stderr (root logger) and to errLog.txt, a file no worker writes."""
        settings = self.settings
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(
            settings.log_dir / "errLog.txt", maxBytes=settings.log_max_bytes, backupCount=settings.log_backups, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter(settings.log_format))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        self.file_handler = handler

    def on_signal(self, signo: int, frame: Any) -> None:
        self.signals.append(signo)  # handled in the loop; the wakeup fd ends its select

    def loop(self) -> None:
        while self.workers or (self.due and not self.stopping):
            now = time.monotonic()
            timeout = max(0.0, min(self.due.values()) - now) if self.due and not self.stopping else None
            try:
                readable, _, _ = select.select(
                    [self.wake_r, *(w.pipe for w in self.workers.values() if not w.closed)], [], [], timeout
                )
            except InterruptedError:  # pragma: no cover - PEP 475 retries select
                readable = []
            if self.wake_r in readable:
                try:
                    os.read(self.wake_r, 4096)
                except BlockingIOError:
                    pass
            for worker in list(self.workers.values()):
                if worker.pipe in readable:
                    self.read_pipe(worker)
            while self.signals:
                signo = self.signals.pop(0)
                if signo in (signal.SIGTERM, signal.SIGINT):
                    self.stop(f"{signal.Signals(signo).name} received")
            self.reap()
            self.start_due()

    def read_pipe(self, worker: Worker) -> None:
        try:
            data = os.read(worker.pipe, 4096).decode(errors="replace")
        except OSError:
            return
        if not data:
            worker.closed = True  # wait for its SIGCHLD rather than spin on the end of file
        for line in data.splitlines():
            if line == "ready":
                worker.ready = True
                self.start_failures[worker.index] = 0
            elif line.startswith("error "):
                worker.message = line[len("error "):]
        if not self.announced and len(self.workers) == self.settings.workers and all(w.ready for w in self.workers.values()):
            self.announced = True
            print(f"Server running on port {self.settings.port} with {self.settings.workers} workers", flush=True)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            self.read_pipe(worker)  # a last "error" line may still be in the pipe
            os.close(worker.pipe)
            self.mark_dead(pid)
            self.on_exit(worker, status)

    def on_exit(self, worker: Worker, status: int) -> None:
        what = f"worker {worker.index} (pid {worker.pid}) {describe(status)}"
        if self.stopping:
            if os.waitstatus_to_exitcode(status) != 0:
                log.warning("%s while stopping", what)
            return
        if not worker.ready:
            failures = self.start_failures.get(worker.index, 0) + 1
            self.start_failures[worker.index] = failures
            if failures >= START_FAILURES:
                reason = worker.message or f"{what} before it served"
                log.error("%s before it served, %d times in a row; stopping the server", what, failures)
                self.failure = reason
                self.stop("a worker cannot start")
                return
        now = time.monotonic()
        recent = [t for t in self.deaths.get(worker.index, []) if now - t < CRASH_WINDOW] + [now]
        self.deaths[worker.index] = recent
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (len(recent) - 1))
        log.error("%s%s; starting a new one in %.1fs", what, "" if worker.ready else " before it served", delay)
        self.due[worker.index] = now + delay

    def start_due(self) -> None:
        if self.stopping:
            return
        now = time.monotonic()
        for index, when in list(self.due.items()):
            if when <= now:
                del self.due[index]
                self.spawn(index)

    def stop(self, why: str) -> None:
        """First call: SIGTERM every worker (they drain). Later calls: SIGTERM again, which hurries them."""
        if not self.stopping:
            log.info("stopping %d worker(s): %s", len(self.workers), why)
        self.stopping = True
        self.due.clear()
        for pid in self.workers:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def mark_dead(self, pid: int) -> None:
        try:
            from prometheus_client import multiprocess
        except ImportError:
            return
        try:
            multiprocess.mark_process_dead(pid, self.metrics_dir)
        except OSError as exc:
            log.warning("could not remove the metrics of worker pid %d: %s", pid, exc)

    def cleanup(self) -> None:
        for sock in self.sockets:
            sock.close()
        signal.set_wakeup_fd(-1)
        for fd in (self.wake_r, self.wake_w):
            if fd >= 0:
                os.close(fd)
        if self.metrics_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if self.file_handler:
            log.removeHandler(self.file_handler)
            self.file_handler.close()

    # -- a worker -----------------------------------------------------------------------

    def spawn(self, index: int) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            self.run_worker(index, write_end)  # never returns
        os.close(write_end)
        self.workers[pid] = Worker(index, pid, read_end)

    def run_worker(self, index: int, pipe: int) -> None:
        """The forked child: plain signals again, then today's ``serve`` on the shared sockets."""
        code = 1
        try:
            supervisor = os.getppid()
            signal.set_wakeup_fd(-1)
            for fd in (self.wake_r, self.wake_w, *(w.pipe for w in self.workers.values())):
                os.close(fd)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which forwards it
            if self.file_handler:
                log.removeHandler(self.file_handler)
                self.file_handler.close()
            die_with_parent()
            if os.getppid() != supervisor:
                os._exit(1)
            code = self.serve_worker(index, pipe)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def serve_worker(self, index: int, pipe: int) -> int:
        import asyncio

        from .config import ConfigError
        from .plugin import PluginError
        from .serve import serve
        from .store import StoreError

        def tell(line: str) -> None:
            try:
                os.write(pipe, (line + "\n").encode())
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    raise

        settings = self.settings.with_changes(worker_index=index)
        try:
            asyncio.run(serve(settings, sockets=self.sockets, on_ready=lambda: tell("ready")))
        except (ConfigError, PluginError, StoreError) as exc:
            tell("error " + " ".join(str(exc).split()))
            return 1
        return 0


def supervise(settings: Settings) -> int:
    """Run the server as a supervisor of ``settings.workers`` workers; the process's exit status."""
    return Supervisor(settings).run()
