"""Request and error logs under LOG_DIR, the port of the tutorial's reqLog/errLog.

The request log records time, method, origin, path (never the query string),
status and duration. Headers, cookies and bodies are never logged, so no
token or password can leak into a log file.

Both files rotate by size (``RotatingFileHandler``: ``LOG_MAX_BYTES``, keeping
``LOG_BACKUPS`` old files). The request path never touches a file. A request
only appends its time and fields to a queue (no ``LogRecord``: building one
costs more than the rest of the logging); the event loop formats the queue
every 0.1 s with the configured ``logging.Formatter`` and one I/O thread
writes it. Warnings and errors go through an in-memory queue
(``QueueHandler``) to a background thread (``QueueListener``) that formats
them, tracebacks included, and writes them. A slow disk costs requests
nothing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler
from pathlib import Path
from typing import Any

from tornado.web import RequestHandler

from .config import DEFAULT_LOG_FORMAT
from .headers import header

access_log = logging.getLogger("turnstile.access")
_FORMAT = DEFAULT_LOG_FORMAT
#: A request line's message: method, origin, path, status, duration.
REQUEST_LINE = "%s\t%s\t%s\t%d\t%.1fms"


class _GatheringQueue:
    """The error log's queue: its writer thread sleeps until a record comes, then lets a burst gather.

    A plain blocking queue wakes the writer thread for every record, and each
    wake-up makes it compete with the event loop for the GIL; profiling showed
    that costing the request path more than the logging itself. Polling would
    wake it even when nothing is logged. Here it blocks while the queue is
    empty, and after the first record waits ``GATHER_SECONDS`` so that a burst
    is written in one go.
    """

    GATHER_SECONDS = 0.05

    def __init__(self) -> None:
        self._items: collections.deque[logging.LogRecord | None] = collections.deque()
        self._arrived = threading.Event()

    def put_nowait(self, item: logging.LogRecord | None) -> None:
        self._items.append(item)
        if not self._arrived.is_set():
            self._arrived.set()

    def get(self, block: bool = True) -> logging.LogRecord | None:
        while True:
            try:
                return self._items.popleft()
            except IndexError:
                if not block:
                    raise queue.Empty from None
                self._arrived.clear()
                if not self._items:  # a record put before the clear is seen here, one put after it sets the event
                    self._arrived.wait()
                    time.sleep(self.GATHER_SECONDS)

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
    """Rotating file that keeps its size in memory, flushed by the listener once the queue is empty.

    The standard handler stats the file, seeks, and formats every record twice
    to decide whether to roll over; on the writer thread that work competes
    with the event loop for the GIL, so this one formats once and counts bytes.
    """

    _size = 0

    def _open(self):  # type: ignore[no-untyped-def]
        stream = super()._open()
        self._size = os.fstat(stream.fileno()).st_size
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write_line(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)

    def write_text(self, text: str) -> None:
        """Write already formatted lines (a batch), rolling over between lines as needed, then flush."""
        with self.lock:  # type: ignore[union-attr]
            size = self._bytes(text)
            if self.maxBytes <= 0 or self._size + size <= self.maxBytes:
                self._write_line(text, size)  # the whole batch fits before the next rollover: one write
            else:
                for line in text.splitlines(keepends=True):
                    self._write_line(line)
            self.flush_now()

    def _bytes(self, text: str) -> int:
        return len(text.encode(self.encoding or "utf-8", "replace"))

    def _write_line(self, line: str, size: int | None = None) -> None:
        size = self._bytes(line) if size is None else size
        if self.stream is None:
            self.stream = self._open()
        if self.maxBytes > 0 and self._size > 0 and self._size + size > self.maxBytes:
            self.doRollover()
        self.stream.write(line)
        self._size += size

    def flush(self) -> None:
        pass

    def flush_now(self) -> None:
        super().flush()


class _CachedTimeFormatter(logging.Formatter):
    """A `logging.Formatter` that renders the date part of ``asctime`` once per second, not once per line."""

    _cached: tuple[int, str] = (-1, "")  # (second, its date text): one attribute, so threads never see half an update

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        return self.time_text(record.created, record.msecs, datefmt)

    def time_text(self, created: float, msecs: float, datefmt: str | None = None) -> str:
        second, date = self._cached
        if int(created) != second:
            second = int(created)
            date = time.strftime(datefmt or self.default_time_format, self.converter(second))
            self._cached = (second, date)
        if datefmt or not self.default_msec_format:
            return date
        return self.default_msec_format % (date, msecs)


# One ``%(name)...`` field of a %-style format, or an escaped percent sign.
_FIELD = re.compile(r"%%|%\((\w+)\)([#0+ -]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxefgcrsa%])", re.IGNORECASE)
# Record fields that differ from one request line to the next.
_PER_LINE = frozenset({"asctime", "created", "msecs", "relativeCreated", "message", "args"})


def _msecs(created: float) -> float:
    """``LogRecord.msecs`` for a record made at ``created``."""
    return int((created - int(created)) * 1000) + 0.0


def _relative(created: float, constant: dict[str, Any]) -> float:
    """``LogRecord.relativeCreated`` at ``created``, from the template record's own pair."""
    return (created - constant["created"]) * 1000 + constant["relativeCreated"]


class _LineTemplate:
    """A request-line format with every field that is the same on each line already filled in.

    ``render(created, args)`` then fills in only the time and the message,
    giving exactly the text ``formatter.format`` would give for the record.
    ``compile`` returns None for formats it cannot do this for (not %-style,
    or naming a field a record does not have); those lines go through
    ``formatter.format``.
    """

    def __init__(self, text: str, constant: dict[str, Any], formatter: _CachedTimeFormatter, fields: set[str]) -> None:
        self.text = text
        self.formatter = formatter
        self.constant = constant
        self.fields = fields

    @classmethod
    def compile(cls, formatter: logging.Formatter, constant: dict[str, Any]) -> "_LineTemplate | None":
        style = getattr(formatter, "_style", None)
        if type(formatter) is not _CachedTimeFormatter or type(style) is not logging.PercentStyle or style._defaults:
            return None
        fields: set[str] = set()

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None or name in _PER_LINE:
                fields.add(name or "%")
                return match.group(0)
            return (("%" + match.group(2)) % constant[name]).replace("%", "%%")

        try:
            template = cls(_FIELD.sub(fill, style._fmt), constant, formatter, fields)
            # Proof on a sample line; anything this parser misread takes the general path instead.
            sample = (constant["created"] + 0.125, ("GET", "-", "/", 200, 1.0))
            if template.render(*sample) != formatter.format(_RequestRecord(constant, *sample)):  # type: ignore[arg-type]
                return None
        except (KeyError, TypeError, ValueError):
            return None
        return template

    def render(self, created: float, args: tuple[object, ...]) -> str:
        msecs = _msecs(created)
        values: dict[str, object] = {"message": REQUEST_LINE % args, "args": args, "created": created, "msecs": msecs}
        if "asctime" in self.fields:
            values["asctime"] = self.formatter.time_text(created, msecs, self.formatter.datefmt)
        if "relativeCreated" in self.fields:
            values["relativeCreated"] = _relative(created, self.constant)
        return self.text % values


class _RequestRecord:
    """What a `logging.Formatter` needs of a request line: a real record's constant fields, this line's time and arguments.

    Built only when the batch is formatted, never on the request path.
    """

    exc_info = exc_text = stack_info = None
    msg = REQUEST_LINE

    def __init__(self, constant: dict[str, Any], created: float, args: tuple[object, ...]) -> None:
        self.__dict__.update(constant)
        self.created = created
        self.msecs = _msecs(created)
        self.relativeCreated = _relative(created, constant)
        self.args = args

    def getMessage(self) -> str:  # noqa: N802 (logging's name)
        return REQUEST_LINE % self.args


class _LoopBatch(logging.Handler):
    """Request-log handler: lines wait in a queue on the event loop and are written in batches.

    The request log gets a line per request. Handing each one to a writer
    thread made that thread compete with the event loop for the GIL, and
    building a ``LogRecord`` per request cost more than the rest of the
    logging; profiling showed both on the request path. Here a request only
    appends its time and fields (`add`); every ``BATCH_SECONDS`` the loop
    formats the batch with the file's formatter and one I/O thread writes
    the text (the write releases the GIL). Records logged the usual way
    (``access_log.info``) join the same queue.
    """

    BATCH_SECONDS = 0.1

    def __init__(self, file: _LazyFlushFile) -> None:
        super().__init__()
        self.file = file
        # A deque: appends from the loop and a drain from another thread (flush) never lose a line.
        self._pending: collections.deque[logging.LogRecord | tuple[float, tuple[object, ...]]] = collections.deque()
        self._scheduled = False
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnstile-reqlog")
        template = logging.LogRecord(access_log.name, logging.INFO, __file__, 0, REQUEST_LINE, None, None)
        self._constant = dict(vars(template), msg=REQUEST_LINE, args=None)
        self._template: _LineTemplate | None = None
        self._template_for: logging.Formatter | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self._queue(record)

    def add(self, created: float, args: tuple[object, ...]) -> None:
        """Queue one request line: ``args`` fill `REQUEST_LINE`; ``created`` is its time stamp."""
        self._queue((created, args))

    def _queue(self, item: "logging.LogRecord | tuple[float, tuple[object, ...]]") -> None:
        self._pending.append(item)
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop: write it now
            self.flush()
            return
        self._scheduled = True
        loop.call_later(self.BATCH_SECONDS, self._write_batch)

    def _current_template(self) -> "_LineTemplate | None":
        """The template for the file's formatter now (rebuilt if ``setFormatter`` replaced it)."""
        formatter = self.file.formatter
        if formatter is not self._template_for:
            self._template = _LineTemplate.compile(formatter, self._constant) if formatter else None
            self._template_for = formatter
        return self._template

    def _take_text(self) -> str:
        pending, fmt, template, lines = self._pending, self.file.format, self._current_template(), []
        with self.lock:  # type: ignore[union-attr]  # one drain at a time keeps the lines in order
            while pending:
                item = pending.popleft()
                if type(item) is not tuple:
                    lines.append(fmt(item) + "\n")  # type: ignore[arg-type]
                elif template is not None:
                    lines.append(template.render(*item) + "\n")
                else:
                    lines.append(fmt(_RequestRecord(self._constant, *item)) + "\n")  # type: ignore[arg-type]
        return "".join(lines)

    def _write_batch(self) -> None:
        self._scheduled = False
        text = self._take_text()
        if text:
            self._io.submit(self.file.write_text, text)

    def flush(self) -> None:
        """Write everything logged so far, and wait for it (tests, shutdown)."""
        text = self._take_text()
        try:
            self._io.submit(self.file.write_text, text).result()
        except RuntimeError:  # the I/O thread is gone (interpreter exit): write from here
            self.file.write_text(text)

    def close(self) -> None:
        self.flush()
        self._io.shutdown(wait=True)
        self.file.close()
        super().close()


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
    """The handlers installed by `setup_logging`: the request-log batcher and the error-log writer thread."""

    def __init__(
        self,
        log_dir: Path,
        requests: "_LoopBatch",
        listeners: list[QueueListener],
        added: list[tuple[logging.Logger, logging.Handler]],
    ) -> None:
        self.log_dir = log_dir
        self.requests = requests
        self.listeners = listeners
        self.added = added

    @property
    def files(self) -> list[_LazyFlushFile]:
        """The two log files' handlers."""
        return [self.requests.file, *(h for listener in self.listeners for h in listener.handlers)]  # type: ignore[misc]

    def flush(self) -> None:
        """Write out everything logged so far."""
        self.requests.flush()
        for listener in self.listeners:
            listener.stop()
            listener.start()

    def close(self) -> None:
        """Write out what is pending, remove the handlers and close the files."""
        for logger, handler in self.added:
            logger.removeHandler(handler)
        self.requests.close()
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
    worker: int | None = None,
) -> LogSetup:
    """Send request lines to reqLog.txt (batched) and ``level``-and-up records to errLog.txt (through a queue).

    ``worker`` (under ``WORKERS`` > 1) names files of that worker's own,
    reqLog.<worker>.txt and errLog.<worker>.txt: one writer per file, so no two
    processes ever rotate the same one.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if worker is None else f".{worker}"
    formatter = _CachedTimeFormatter(fmt)

    def rotating(name: str) -> _LazyFlushFile:
        handler = _LazyFlushFile(log_dir / name, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        handler.setFormatter(formatter)
        return handler

    error_queue = _GatheringQueue()
    error_file = rotating(f"errLog{suffix}.txt")
    error_file.setLevel(level)
    listeners = [_BatchingListener(error_queue, error_file, respect_handler_level=True)]
    for listener in listeners:
        listener.start()

    to_requests, to_errors = _LoopBatch(rotating(f"reqLog{suffix}.txt")), _Enqueue(error_queue)
    to_errors.setLevel(level)
    access_log.addHandler(to_requests)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False
    root = logging.getLogger("turnstile")
    root.addHandler(to_errors)
    root.setLevel(level)
    tornado_log = logging.getLogger("tornado")
    tornado_log.addHandler(to_errors)
    return LogSetup(log_dir, to_requests, listeners, [(access_log, to_requests), (root, to_errors), (tornado_log, to_errors)])


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
    handlers = access_log.handlers
    if not handlers or access_log.disabled:
        return
    args = (method, origin, path, status, ms)
    batch = handlers[0]
    if len(handlers) == 1 and type(batch) is _LoopBatch and not (access_log.filters or batch.filters) and batch.level <= logging.INFO:
        batch.add(time.time(), args)  # the usual case: no LogRecord on the request path
        return
    # Other handlers want records. Built directly: ``Logger.info`` would also
    # walk the stack to find its caller, which the request log never shows.
    access_log.handle(logging.LogRecord(access_log.name, logging.INFO, __file__, 0, REQUEST_LINE, args, None))
