"""``WORKERS`` > 1: a supervisor that owns the port and hands its connections to N worker processes.

The supervisor runs no application code: it binds the port, starts each
worker as a fresh ``python -m core.worker`` (core/worker.py), accepts every
connection and hands it to the next worker in turn (core/dispatch.py). Its
signals, after gunicorn's arbiter:

- ``TERM``/``INT``: graceful stop. The port closes, every worker drains
  (core/serve.py); a second signal hurries them. A worker still there
  ``KILL_GRACE`` seconds after ``SHUTDOWN_TIMEOUT`` is killed. Exit 0, no
  child left behind.
- ``HUP``: rolling restart. ``.env`` is read again and new workers start one
  at a time on the code and settings on disk; once every one of them is
  ready, they take all new connections and the old ones drain. If a new
  worker cannot start, one log line says why, the new ones are stopped and
  the old ones go on serving.
- ``TTIN``/``TTOU``: one worker more, or one fewer (never below one).

A worker that dies is replaced after a backoff that grows while it keeps
dying. A worker whose event loop sends no heartbeat for ``WORKER_TIMEOUT`` is
killed and replaced. Before the deployment has ever served, a worker that
dies before serving ``START_FAILURES`` times in a row stops it: its error is
printed once as ``turnstile: ...``, exit 1.

Each worker has a slot, which names its log files (``reqLog.<slot>.txt``):
the lowest slot no live worker holds, so a worker draining after ``HUP`` and
its successor never write one file.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, Mapping

from . import handoff
from .backends import describe_store
from .config import ConfigError, Settings, read_settings, too_many_workers
from .dispatch import Dispatcher, Target
from .handoff import Word
from .logs import OneLineFormatter
from .preflight import bind, check_dirs

log = logging.getLogger("turnstile.supervisor")

ROOT = Path(__file__).resolve().parent.parent
START_FAILURES = 3  # deaths before serving, in a row, that stop a deployment that never served
BACKOFF_FIRST = 0.1  # seconds before the first replacement
BACKOFF_MAX = 5.0
CRASH_WINDOW = 60.0  # deaths older than this no longer lengthen the backoff
KILL_GRACE = 2.0  # past SHUTDOWN_TIMEOUT: time for a drained worker to close its store before it is killed
RELOAD_START_TIMEOUT = 120.0  # a new worker not ready by then fails the rolling restart
TICK = 0.25  # seconds between checks of heartbeats and deadlines


@dataclass(eq=False)
class Worker:
    slot: int
    proc: subprocess.Popen[bytes]
    target: Target
    spawned: float
    last_beat: float
    ready: bool = False
    message: str = ""  # its "error ..." line, if it sent one
    retiring_since: float | None = None  # when it was told to drain
    killed: str = ""  # why the supervisor killed it

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def name(self) -> str:
        return f"worker {self.slot} (pid {self.pid})"


@dataclass
class Reload:
    """A rolling restart in progress: new workers started one at a time, none serving yet."""

    settings: Settings
    started: list[Worker] = field(default_factory=list)


def describe(returncode: int) -> str:
    """``exited with status 1`` or ``killed by signal SIGKILL``, from a ``Popen.returncode``."""
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Supervisor:
    """Runs ``settings.workers`` workers behind one port until told to stop."""

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.environ = dict(environ)  # the environment before .env: workers and reloads read .env themselves
        self.workers: dict[int, Worker] = {}  # every live worker process, by pid
        self.serving: list[Worker | None] = []  # the workers serving now, by position (None: being replaced)
        self.reload: Reload | None = None
        self.due: dict[int, float] = {}  # position -> monotonic time to start its replacement
        self.deaths: dict[int, list[float]] = {}  # position -> recent deaths (for the backoff)
        self.start_failures: dict[int, int] = {}  # position -> deaths before serving, in a row
        self.signals: list[int] = []
        self.child_exited = False  # a SIGCHLD came: reap
        self.next_check = 0.0  # monotonic time of the next heartbeat and deadline check
        self.stopping = False
        self.failure: str | None = None
        self.announced = False
        self.dispatcher = Dispatcher([])
        self.metrics_dir = ""
        self.file_handler: logging.Handler | None = None
        self.wake_r = self.wake_w = -1

    # -- the supervisor's own process -------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (0) or until the first workers cannot start (1)."""
        self.setup_log()
        try:
            listeners = bind(self.settings)
        except ConfigError as exc:
            print(f"turnstile: {exc}", file=sys.stderr)
            return 1
        self.warn_if_too_many(self.settings.workers)
        self.dispatcher = Dispatcher(listeners)
        self.metrics_dir = tempfile.mkdtemp(prefix="turnstile-metrics-")
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        signal.set_wakeup_fd(self.wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, self.on_signal)
        try:
            self.serving = [None] * self.settings.workers
            for position in range(self.settings.workers):
                self.serving[position] = self.spawn()
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
        handler.setFormatter(OneLineFormatter(settings.log_format))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        self.file_handler = handler

    def warn_if_too_many(self, workers: int) -> None:
        warning = too_many_workers(workers)
        if warning:
            log.warning("%s", warning)

    def on_signal(self, signo: int, frame: Any) -> None:
        self.signals.append(signo)  # handled in the loop; the wakeup fd ends its select

    def loop(self) -> None:
        while self.workers or (self.due and not self.stopping):
            readable = self.wait()
            if self.wake_r in readable:
                try:
                    while os.read(self.wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            for listener in self.dispatcher.listeners:
                if listener.fileno() in readable:
                    self.dispatcher.accept(listener)
            for worker in list(self.workers.values()):
                if worker.target.channel.fileno() in readable:
                    self.read_news(worker)
            while self.signals:
                self.handle_signal(self.signals.pop(0))
            if self.child_exited:
                self.child_exited = False
                self.reap()
            now = time.monotonic()
            if now >= self.next_check:  # once a tick, not once per connection
                self.next_check = now + TICK
                self.check_deadlines()
            if self.due:
                self.start_due()

    def wait(self) -> set[int]:
        """Block until a signal, a connection, a worker's news, or the next deadline; the readable fds."""
        # A closed channel stays readable: wait for that worker's SIGCHLD instead of spinning on it.
        watch = [self.wake_r, *(w.target.channel.fileno() for w in self.workers.values() if not w.target.gone)]
        if self.dispatcher.accepting and not self.stopping:
            watch += [listener.fileno() for listener in self.dispatcher.listeners]
        timeout = TICK
        if self.due and not self.stopping:
            timeout = min(timeout, max(0.0, min(self.due.values()) - time.monotonic()))
        if self.dispatcher.waiting and self.dispatcher.targets:
            timeout = min(timeout, 0.01)  # connections wait for a worker to catch up
        if self.dispatcher.paused_until:
            timeout = min(timeout, max(0.0, self.dispatcher.paused_until - time.monotonic()))
        poller = select.poll()  # not select(): the supervisor may hold more than FD_SETSIZE connections
        for fd in watch:
            poller.register(fd, select.POLLIN)
        readable = {fd for fd, _events in poller.poll(timeout * 1000)}
        if self.dispatcher.waiting:
            self.dispatcher.place([])
        return readable

    def handle_signal(self, signo: int) -> None:
        if signo == signal.SIGCHLD:
            self.child_exited = True
        elif signo in (signal.SIGTERM, signal.SIGINT):
            self.stop(f"{signal.Signals(signo).name} received")
        elif self.stopping:
            return
        elif signo == signal.SIGHUP:
            self.begin_reload()
        elif signo == signal.SIGTTIN:
            self.resize(len(self.serving) + 1)
        elif signo == signal.SIGTTOU:
            self.resize(len(self.serving) - 1)

    # -- news from the workers ----------------------------------------------------------

    def read_news(self, worker: Worker) -> None:
        news, closed = handoff.read_news(worker.target.channel)
        for word, detail in news:
            if word is Word.BEAT:
                worker.last_beat = time.monotonic()
            elif word is Word.TOOK:
                sent, _, received = detail.partition(" ")
                if sent.isdigit() and received.isdigit():
                    self.dispatcher.took(worker.target, int(sent), int(received))
            elif word is Word.READY:
                worker.last_beat = time.monotonic()
                self.on_ready(worker)
            elif word is Word.DRAINING:
                self.dispatcher.reclaim(worker.target)
            elif word is Word.ERROR:
                worker.message = detail
        if closed:
            worker.target.gone = True

    def on_ready(self, worker: Worker) -> None:
        worker.ready = True
        if self.reload and worker in self.reload.started:
            if len(self.reload.started) < self.reload.settings.workers:
                self.start_new_worker()
            else:
                self.commit_reload()
            return
        if worker.retiring_since is not None or worker not in self.serving:
            return
        self.start_failures[self.serving.index(worker)] = 0
        self.dispatcher.add(worker.target)
        if not self.announced and all(w is not None and w.ready for w in self.serving):
            self.announced = True
            where = describe_store(self.settings)
            print(f"Server running on port {self.settings.port} with {len(self.serving)} workers ({where})", flush=True)

    # -- exits ----------------------------------------------------------------------------

    def reap(self) -> None:
        for worker in list(self.workers.values()):
            returncode = worker.proc.poll()
            if returncode is None:
                continue
            del self.workers[worker.pid]
            self.read_news(worker)  # its last "took" and "error" lines are still in the channel
            worker.target.gone = True
            self.dispatcher.reclaim(worker.target)
            worker.target.channel.close()
            self.mark_dead(worker.pid)
            self.on_exit(worker, returncode)

    def on_exit(self, worker: Worker, returncode: int) -> None:
        what = f"{worker.name} {describe(returncode)}" + (f": {worker.killed}" if worker.killed else "")
        if worker.retiring_since is not None:
            if worker.killed:
                log.error("%s", what)
            elif returncode != 0:
                log.warning("%s while draining", what)
            return
        if self.reload and worker in self.reload.started:
            self.reload_failed(f"new {worker.name} {describe(returncode)} before it served"
                               + (f": {worker.message}" if worker.message else ""))
            return
        if worker not in self.serving:
            return
        position = self.serving.index(worker)
        self.serving[position] = None
        if not worker.ready and not self.announced:
            failures = self.start_failures.get(position, 0) + 1
            self.start_failures[position] = failures
            if failures >= START_FAILURES:
                log.error("%s before it served, %d times in a row; stopping the server", what, failures)
                self.failure = worker.message or f"{what} before it served"
                self.stop("a worker cannot start")
                return
        now = time.monotonic()
        recent = [t for t in self.deaths.get(position, []) if now - t < CRASH_WINDOW] + [now]
        self.deaths[position] = recent
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (len(recent) - 1))
        reason = "" if worker.ready else " before it served" + (f" ({worker.message})" if worker.message else "")
        log.error("%s%s; starting a new one in %.1fs", what, reason, delay)
        self.due[position] = now + delay

    def start_due(self) -> None:
        if self.stopping:
            return
        now = time.monotonic()
        for position, when in list(self.due.items()):
            if when <= now:
                del self.due[position]
                if position < len(self.serving) and self.serving[position] is None:
                    try:
                        self.serving[position] = self.spawn()
                    except OSError as exc:
                        log.error("could not start a worker: %s; trying again in %.1fs", exc, BACKOFF_MAX)
                        self.due[position] = now + BACKOFF_MAX

    def check_deadlines(self) -> None:
        """Kill a worker whose event loop went quiet, and one that drains past its deadline."""
        now = time.monotonic()
        timeout = self.settings.worker_timeout
        deadline = self.settings.shutdown_timeout + KILL_GRACE
        for worker in list(self.workers.values()):
            if worker.killed:
                continue
            if self.reload and worker in self.reload.started and not worker.ready and now - worker.spawned > RELOAD_START_TIMEOUT:
                self.kill(worker, f"not ready {RELOAD_START_TIMEOUT:.0f}s after it started")
            elif worker.retiring_since is None:
                if now - worker.last_beat > timeout:
                    self.kill(worker, f"no heartbeat for {now - worker.last_beat:.1f}s (WORKER_TIMEOUT={timeout}s); "
                                      "its event loop is blocked, so it was killed")
            elif now - worker.retiring_since > deadline:
                self.kill(worker, f"still draining {deadline:.0f}s after SIGTERM (SHUTDOWN_TIMEOUT="
                                  f"{self.settings.shutdown_timeout}s), so it was killed")

    def kill(self, worker: Worker, why: str) -> None:
        worker.killed = why
        self.dispatcher.remove(worker.target)
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # -- rolling restart and resizing ---------------------------------------------------

    def begin_reload(self) -> None:
        if self.reload:
            log.warning("SIGHUP ignored: a rolling restart is already in progress")
            return
        try:
            settings = read_settings(self.environ)
            check_dirs(settings)  # no new worker is started into a LOG_DIR or DATA_DIR it cannot write
        except ConfigError as exc:
            log.error("rolling restart failed: %s; the old workers keep serving", exc)
            return
        if (settings.host, settings.port) != (self.settings.host, self.settings.port):
            log.warning("PORT and HOST take a full restart; the new workers keep port %d", self.settings.port)
            settings = settings.with_changes(host=self.settings.host, port=self.settings.port)
        self.warn_if_too_many(settings.workers)
        self.reload = Reload(settings)
        log.info("SIGHUP: starting %d new worker(s) one at a time", settings.workers)
        self.start_new_worker()

    def start_new_worker(self) -> None:
        """The next worker of the rolling restart in progress."""
        assert self.reload is not None
        try:
            self.reload.started.append(self.spawn())
        except OSError as exc:
            self.reload_failed(f"could not start a new worker: {exc}")

    def commit_reload(self) -> None:
        reload, self.reload = self.reload, None
        assert reload is not None
        old = [w for w in self.serving if w is not None]
        self.settings = reload.settings
        self.serving = list(reload.started)
        self.due.clear()
        self.deaths.clear()
        self.start_failures.clear()
        for worker in self.serving:
            assert worker is not None
            self.dispatcher.add(worker.target)
        for worker in old:
            self.retire(worker)
        pids = ", ".join(str(w.pid) for w in self.serving if w is not None)
        log.info("rolling restart done: %d new worker(s) serving (pids %s); the old ones drain", len(self.serving), pids)

    def reload_failed(self, reason: str) -> None:
        reload, self.reload = self.reload, None
        assert reload is not None
        log.error("rolling restart failed: %s; the old workers keep serving", reason)
        for worker in reload.started:
            if worker.pid in self.workers:
                self.retire(worker)

    def resize(self, count: int) -> None:
        if self.reload:
            log.warning("resize ignored: a rolling restart is in progress")
            return
        if count < 1:
            log.warning("SIGTTOU ignored: at least one worker must run")
            return
        while len(self.serving) < count:
            try:
                self.serving.append(self.spawn())
            except OSError as exc:
                log.error("could not start a worker: %s", exc)
                return
        while len(self.serving) > count:
            position = len(self.serving) - 1
            worker = self.serving.pop()
            self.due.pop(position, None)
            if worker is not None:
                self.retire(worker)
        self.settings = self.settings.with_changes(workers=count)
        log.info("now %d worker(s)", count)

    def retire(self, worker: Worker) -> None:
        """Take ``worker`` out of the hand-off and let it drain (SIGTERM)."""
        self.dispatcher.remove(worker.target)
        worker.retiring_since = time.monotonic()
        try:
            os.kill(worker.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def stop(self, why: str) -> None:
        """First call: close the port and let every worker drain. Later calls: SIGTERM again, which hurries them."""
        if not self.stopping:
            log.info("stopping %d worker(s): %s", len(self.workers), why)
            self.stopping = True
            self.due.clear()
            self.reload = None
            self.dispatcher.close()  # the port, and connections no worker took
            for worker in list(self.workers.values()):
                self.retire(worker)
            return
        for worker in self.workers.values():
            try:
                os.kill(worker.pid, signal.SIGTERM)
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
        for worker in list(self.workers.values()):  # only after an unexpected error in the loop
            worker.proc.kill()
            worker.proc.wait()
        self.dispatcher.close()
        signal.set_wakeup_fd(-1)
        for fd in (self.wake_r, self.wake_w):
            if fd >= 0:
                os.close(fd)
        if self.metrics_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        if self.file_handler:
            log.removeHandler(self.file_handler)
            self.file_handler.close()

    # -- starting a worker --------------------------------------------------------------

    def free_slot(self) -> int:
        taken = {w.slot for w in self.workers.values()}
        slot = 0
        while slot in taken:
            slot += 1
        return slot

    def spawn(self) -> Worker:
        """Start a fresh interpreter on the code on disk, with a new channel."""
        ours, theirs = handoff.pair()
        slot = self.free_slot()
        env = {
            **self.environ,
            "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir,
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), self.environ.get("PYTHONPATH", "")) if p),
        }
        command = [sys.executable, "-m", "core.worker", "--slot", str(slot), "--channel", str(theirs.fileno()),
                   "--supervisor", str(os.getpid())]
        try:
            proc = subprocess.Popen(command, env=env, pass_fds=(theirs.fileno(),))
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        now = time.monotonic()
        worker = Worker(slot, proc, Target(ours), spawned=now, last_beat=now)
        self.workers[proc.pid] = worker
        return worker


def supervise(settings: Settings, environ: Mapping[str, str]) -> int:
    """Run the server as a supervisor of ``settings.workers`` workers; the process's exit status.

    ``environ`` is the environment before ``.env`` was read into it.
    """
    return Supervisor(settings, environ).run()
