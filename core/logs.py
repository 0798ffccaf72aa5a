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
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler
from pathlib import Path

from tornado.web import RequestHandler

from .config import DEFAULT_LOG_FORMAT
from .headers import header

access_log = logging.getLogger("turnstile.access")
#: A request line's message: method, origin, path, status, duration.
REQUEST_LINE = "%s\t%s\t%s\t%d\t%.1fms"


class _NotAccess(logging.Filter):
    """Keeps request lines out of the error log (both files share one listener thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != access_log.name


class LogSetup:
    """What `setup_logging` installed: the queue handler, its listener thread and the two files."""

    def __init__(self, log_dir: Path, listener: QueueListener, added: list[tuple[logging.Logger, logging.Handler]]) -> None:
        self.log_dir = log_dir
        self.listener = listener
        self.added = added

    @property
    def files(self) -> list[RotatingFileHandler]:
        """The request log's and the error log's handlers, in that order."""
        return list(self.listener.handlers)  # type: ignore[arg-type]

    def flush(self) -> None:
        """Write out everything logged so far (stopping the listener drains its queue)."""
        self.listener.stop()
        self.listener.start()

    def close(self) -> None:
        """Remove the handlers, write out what is queued and close the files."""
        for logger, handler in self.added:
            logger.removeHandler(handler)
        self.listener.stop()
        for handler in self.listener.handlers:
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
    formatter = logging.Formatter(fmt)

    def rotating(name: str) -> RotatingFileHandler:
        handler = RotatingFileHandler(log_dir / name, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        handler.setFormatter(formatter)
        return handler

    requests, errors = rotating(f"reqLog{suffix}.txt"), rotating(f"errLog{suffix}.txt")
    requests.addFilter(logging.Filter(access_log.name))
    errors.addFilter(_NotAccess())
    errors.setLevel(level)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = QueueListener(records, requests, errors, respect_handler_level=True)
    listener.start()

    to_queue = QueueHandler(records)
    access_log.addHandler(to_queue)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False
    to_errors = QueueHandler(records)
    to_errors.setLevel(level)
    root = logging.getLogger("turnstile")
    root.addHandler(to_errors)
    root.setLevel(level)
    tornado_log = logging.getLogger("tornado")
    tornado_log.addHandler(to_errors)
    return LogSetup(log_dir, listener, [(access_log, to_queue), (root, to_errors), (tornado_log, to_errors)])


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
