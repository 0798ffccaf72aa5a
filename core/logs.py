"""Request and error logs under LOG_DIR, the port of the tutorial's reqLog/errLog.

The request log records method, origin, path (never the query string),
status and duration. Headers, cookies and bodies are never logged, so no
token or password can leak into a log file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tornado.web import RequestHandler

access_log = logging.getLogger("turnstile.access")
_FORMAT = "%(asctime)s\t%(levelname)s\t%(name)s\t%(message)s"


def setup_logging(log_dir: Path, level: int = logging.INFO) -> list[tuple[logging.Logger, logging.Handler]]:
    """Send request lines to reqLog.txt and warnings/errors to errLog.txt.

    Returns the (logger, handler) pairs added, so a caller can remove them.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter(_FORMAT)
    requests = logging.FileHandler(log_dir / "reqLog.txt", encoding="utf-8")
    requests.setFormatter(formatter)
    access_log.addHandler(requests)
    access_log.setLevel(level)
    access_log.propagate = False
    errors = logging.FileHandler(log_dir / "errLog.txt", encoding="utf-8")
    errors.setFormatter(formatter)
    errors.setLevel(logging.WARNING)
    root = logging.getLogger("turnstile")
    root.addHandler(errors)
    root.setLevel(level)
    tornado_log = logging.getLogger("tornado")
    tornado_log.addHandler(errors)
    return [(access_log, requests), (root, errors), (tornado_log, errors)]


def teardown_logging(added: list[tuple[logging.Logger, logging.Handler]]) -> None:
    for logger, handler in added:
        logger.removeHandler(handler)
        handler.close()


def log_request(handler: RequestHandler) -> None:
    """Tornado's ``log_function``: one tab-separated line per request."""
    request = handler.request
    access_log.info(
        "%s\t%s\t%s\t%d\t%.1fms",
        request.method,
        request.headers.get("Origin", "-"),
        request.path,
        handler.get_status(),
        1000.0 * request.request_time(),
    )
