"""Request and error logs under LOG_DIR, the port of the tutorial's reqLog/errLog, built from stock `logging` parts.

The request log records time, method, origin, path (never the query string),
status and duration. Headers, cookies and bodies are never logged, so no
token or password can leak into a log file.

The request path only puts a record on an in-memory queue (``QueueHandler``);
one background thread (``QueueListener``) formats it and writes it to a
``RotatingFileHandler`` that rotates by size (``LOG_MAX_BYTES``, keeping
``LOG_BACKUPS`` old files). A slow disk costs requests nothing, and stopping
the listener at shutdown writes out everything queued.
"""

from __future__ import annotations

import logging
import queue
import time
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler
from pathlib import Path
from typing import TYPE_CHECKING

from .config import DEFAULT_LOG_FORMAT
from .headers import header

if TYPE_CHECKING:
    from tornado.web import RequestHandler

access_log = logging.getLogger("turnstile.access")
#: A request line's message: method, origin, path, status, duration.
REQUEST_LINE = "%s\t%s\t%s\t%d\t%.1fms"


class _Enqueue(QueueHandler):
    """Queue the record itself: the queue is in-process, so no copy; only its arguments are merged now, as they may change later."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg, record.args = record.getMessage(), None
        return record


class _EnqueueAsIs(QueueHandler):
    """The request log's `QueueHandler`: a request line's arguments are immutable, so the record is queued untouched."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class _LineBatches(QueueListener):
    """The request log's `QueueListener`: it formats what has queued up and hands the file one record per batch.

    Kept because the side-by-side GET benchmark showed it paying: handling each
    line alone makes the stock ``RotatingFileHandler`` stat, seek and flush the
    file per line, and every one of those system calls hands the GIL back and
    forth with the event loop. Woken after an idle spell, it waits
    ``GATHER_SECONDS`` for a burst to gather; a batch holds less than ``maxBytes``
    of text, so the stock size check still keeps every file within
    ``LOG_MAX_BYTES`` and never rolls over an empty file (it rolls over when the
    file's size plus the record reaches ``maxBytes``: a batch of exactly that
    size left an empty backup behind).
    """

    GATHER_SECONDS = 0.05
    STOP = None  # the sentinel `enqueue_sentinel` puts and ``QueueListener`` stops at

    def __init__(self, records: "queue.SimpleQueue[logging.LogRecord | None]", file: RotatingFileHandler, formatter: logging.Formatter) -> None:
        super().__init__(records, file)
        self.file, self.formatter = file, formatter
        file.setFormatter(logging.Formatter("%(message)s"))
        self.budget = max(file.maxBytes - 1, 1) if file.maxBytes > 0 else 1 << 16
        self._carry: str | None = None  # a line that did not fit in the previous batch
        self._stop_next = False

    def enqueue_sentinel(self) -> None:
        self.queue.put_nowait(self.STOP)

    def _line(self, record: logging.LogRecord) -> str | None:
        """The record's text, or None (reported as `logging` reports a failed emit) if the format does not fit it."""
        try:
            return self.formatter.format(record)
        except Exception:
            self.file.handleError(record)
            return None

    def dequeue(self, block: bool) -> logging.LogRecord | None:
        lines, size = ([self._carry], len(self._carry) + 1) if self._carry is not None else ([], 0)
        self._carry = None
        while not lines:
            if self._stop_next:
                self._stop_next = False
                return self.STOP
            try:
                first = self.queue.get_nowait()
            except queue.Empty:
                if not block:
                    raise
                first = self.queue.get()
                if first is not self.STOP:
                    time.sleep(self.GATHER_SECONDS)
            if first is self.STOP:
                return self.STOP
            line = self._line(first)
            if line is not None:
                lines, size = [line], len(line) + 1
        while size < self.budget:
            try:
                record = self.queue.get_nowait()
            except queue.Empty:
                break
            if record is self.STOP:
                self._stop_next = True
                break
            line = self._line(record)
            if line is None:
                continue
            if size + len(line) + 1 > self.budget:
                self._carry = line
                break
            lines.append(line)
            size += len(line) + 1
        return logging.makeLogRecord({"name": access_log.name, "levelno": logging.INFO, "levelname": "INFO", "msg": "\n".join(lines)})


class OneLineFormatter(logging.Formatter):
    """The stock formatter, but a record is one line: a traceback or a multi-line message stays on it, newlines written as ``\\n``.

    One line per error keeps the log greppable and rotation-safe, and a newline in a logged value
    cannot forge a line of its own.
    """

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\\n")


class LogSetup:
    """What `setup_logging` installed: the queue handler, its listener thread and the two files."""

    def __init__(
        self, log_dir: Path, listeners: list[QueueListener], added: list[tuple[logging.Logger, logging.Handler]], root_level: int = logging.WARNING
    ) -> None:
        self.log_dir = log_dir
        self.listeners = listeners
        self.added = added
        self.root_level = root_level  # the root logger's level before, put back by `close`

    @property
    def files(self) -> list[RotatingFileHandler]:
        """The request log's and the error log's handlers, in that order."""
        return [handler for listener in self.listeners for handler in listener.handlers]  # type: ignore[misc]

    def flush(self) -> None:
        """Write out everything logged so far (stopping a listener drains its queue)."""
        for listener in self.listeners:
            listener.stop()
            listener.start()

    def close(self) -> None:
        """Remove the handlers, write out what is queued and close the files."""
        for logger, handler in self.added:
            logger.removeHandler(handler)
        logging.getLogger().setLevel(self.root_level)
        for listener in self.listeners:
            listener.stop()
            for handler in listener.handlers:
                handler.close()


def setup_logging(
    log_dir: Path,
    level: int | str = logging.WARNING,
    fmt: str = DEFAULT_LOG_FORMAT,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
    worker: int | None = None,
) -> LogSetup:
    """Send request lines to reqLog.txt and ``level``-and-up records to errLog.txt, both through one queue and thread.

    ``worker`` (under ``WORKERS`` > 1) names files of that worker's own,
    reqLog.<worker>.txt and errLog.<worker>.txt: one writer per file, so no two
    processes ever rotate the same one.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if worker is None else f".{worker}"
    formatter = OneLineFormatter(fmt)

    def rotating(name: str) -> RotatingFileHandler:
        handler = RotatingFileHandler(log_dir / name, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        handler.setFormatter(formatter)
        return handler

    request_queue: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
    error_queue: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
    requests = _LineBatches(request_queue, rotating(f"reqLog{suffix}.txt"), formatter)
    error_file = rotating(f"errLog{suffix}.txt")
    error_file.setLevel(level)
    errors = QueueListener(error_queue, error_file, respect_handler_level=True)
    listeners: list[QueueListener] = [requests, errors]
    for listener in listeners:
        listener.start()

    to_requests, to_errors = _EnqueueAsIs(request_queue), _Enqueue(error_queue)
    to_errors.setLevel(level)
    access_log.addHandler(to_requests)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False
    # On the root logger: errors from asyncio, asyncpg, tornado or any library reach errLog.txt too,
    # each once (every other logger propagates here and has no handler of ours).
    root = logging.getLogger()
    root_level = root.level
    root.addHandler(to_errors)
    root.setLevel(level)
    return LogSetup(log_dir, listeners, [(access_log, to_requests), (root, to_errors)], root_level)


def teardown_logging(setup: LogSetup) -> None:
    """Undo `setup_logging`, writing out whatever is still queued."""
    setup.close()


def log_request(handler: RequestHandler) -> None:
    """Tornado's ``log_function``: one tab-separated line per request."""
    request = handler.request
    log_line(
        request.method or "-",
        header(request.headers, "Origin", "-"),
        request.path,
        handler.get_status(),
        1000.0 * request.request_time(),
    )


def log_line(method: str, origin: str, path: str, status: int, ms: float) -> None:
    """One request-log line: method, origin, path (no query string), status, duration."""
    if access_log.isEnabledFor(logging.INFO):
        # ``makeRecord`` rather than ``info``: ``info`` also walks the stack to find its caller, which the line never shows.
        access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, __file__, 0, REQUEST_LINE, (method, origin, path, status, ms), None))
