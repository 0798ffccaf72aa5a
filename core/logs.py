"""Request and error logs under LOG_DIR, the port of the tutorial's reqLog/errLog.

The request log records time, method, origin, path (never the query string),
status and duration. Headers, cookies and bodies are never logged, so no
token or password can leak into a log file.

Both files rotate by size (``RotatingFileHandler``: ``LOG_MAX_BYTES``, keeping
``LOG_BACKUPS`` old files). The request path never touches a file: loggers
hand records to an in-memory queue (``QueueHandler``) and a background thread
(``QueueListener``) formats and writes them, so a slow disk costs requests
nothing.
"""

from __future__ import annotations

import collections
import logging
import queue
import time
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler
from pathlib import Path

from tornado.web import RequestHandler

from .config import DEFAULT_LOG_FORMAT

access_log = logging.getLogger("turnstile.access")
_FORMAT = DEFAULT_LOG_FORMAT


class _PollingQueue:
    """A queue the writer thread polls every few milliseconds.

    A blocking queue wakes the writer thread on every record, and each wake-up
    makes it compete with the event loop for the GIL; profiling showed that
    costing the request path more than the logging itself. Polling lets records
    pile up briefly and be written in one go.
    """

    POLL_SECONDS = 0.05

    def __init__(self) -> None:
        self._items: collections.deque[logging.LogRecord | None] = collections.deque()

    def put_nowait(self, item: logging.LogRecord | None) -> None:
        self._items.append(item)

    def get(self, block: bool = True) -> logging.LogRecord | None:
        while True:
            try:
                return self._items.popleft()
            except IndexError:
                if not block:
                    raise queue.Empty from None
                time.sleep(self.POLL_SECONDS)

    def empty(self) -> bool:
        return not self._items


class _Enqueue(QueueHandler):
    """Queue a record without formatting it: time stamps and tracebacks are rendered on the writer thread."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The queue is in-process, so the record (and its exc_info) need not be
        # pickled; only merge the arguments now, as they may change later.
        record.msg = record.getMessage()
        record.args = None
        return record


class _LazyFlushFile(RotatingFileHandler):
    """Rotating file whose writes are flushed by the listener once the queue is empty, not after every line."""

    def flush(self) -> None:
        pass

    def flush_now(self) -> None:
        super().flush()


class _BatchingListener(QueueListener):
    """Writes records as they come and flushes the files whenever it has caught up with the queue."""

    def handle(self, record: logging.LogRecord) -> None:
        super().handle(record)
        if self.queue.empty():
            self.flush_files()

    def flush_files(self) -> None:
        for handler in self.handlers:
            if isinstance(handler, _LazyFlushFile):
                handler.flush_now()

    def stop(self) -> None:
        super().stop()
        self.flush_files()


class LogSetup:
    """The queue handlers installed by `setup_logging`, and their writer threads."""

    def __init__(self, log_dir: Path, listeners: list[QueueListener], added: list[tuple[logging.Logger, logging.Handler]]) -> None:
        self.log_dir = log_dir
        self.listeners = listeners
        self.added = added

    def flush(self) -> None:
        """Write out everything queued so far (stops and restarts the writer threads)."""
        for listener in self.listeners:
            listener.stop()
            listener.start()

    def close(self) -> None:
        """Write out what is queued, remove the handlers and close the files."""
        for logger, handler in self.added:
            logger.removeHandler(handler)
        for listener in self.listeners:
            listener.stop()
            for handler in listener.handlers:
                handler.close()


def setup_logging(
    log_dir: Path,
    level: int | str = logging.WARNING,
    fmt: str = _FORMAT,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
) -> LogSetup:
    """Send request lines to reqLog.txt and ``level``-and-up records to errLog.txt, through queues."""
    log_dir.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter(fmt)

    def rotating(name: str) -> RotatingFileHandler:
        handler = _LazyFlushFile(log_dir / name, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        handler.setFormatter(formatter)
        return handler

    request_queue, error_queue = _PollingQueue(), _PollingQueue()
    request_file, error_file = rotating("reqLog.txt"), rotating("errLog.txt")
    error_file.setLevel(level)
    listeners = [
        _BatchingListener(request_queue, request_file),
        _BatchingListener(error_queue, error_file, respect_handler_level=True),
    ]
    for listener in listeners:
        listener.start()

    to_requests, to_errors = _Enqueue(request_queue), _Enqueue(error_queue)
    to_errors.setLevel(level)
    access_log.addHandler(to_requests)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False
    root = logging.getLogger("turnstile")
    root.addHandler(to_errors)
    root.setLevel(level)
    tornado_log = logging.getLogger("tornado")
    tornado_log.addHandler(to_errors)
    return LogSetup(log_dir, listeners, [(access_log, to_requests), (root, to_errors), (tornado_log, to_errors)])


def teardown_logging(setup: LogSetup) -> None:
    """Undo `setup_logging`, writing out whatever is still queued."""
    setup.close()


def log_request(handler: RequestHandler) -> None:
    """Tornado's ``log_function``: one tab-separated line per request."""
    request = handler.request
    log_line(
        request.method or "-",
        request.headers.get("Origin", "-"),
        request.path,
        handler.get_status(),
        1000.0 * request.request_time(),
    )


def log_line(method: str, origin: str, path: str, status: int, ms: float) -> None:
    """One request-log line: method, origin, path (no query string), status, duration."""
    if access_log.handlers:
        access_log.info("%s\t%s\t%s\t%d\t%.1fms", method, origin, path, status, ms)
