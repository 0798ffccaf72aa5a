"""Helpers for the tests that run ``WORKERS`` > 1 as real processes: a probe plugin, bursts of connections, logs."""

from __future__ import annotations

import collections
import http.client
import json
import socket
import textwrap
import time
from pathlib import Path
from typing import Callable

from bench.harness import ServerProcess
from plugin_kit import install_distribution

PROBE = """
import asyncio
import os
import time

from core.plugin import BaseHandler, public

VERSION = {version!r}
{extra}

@public
class Version(BaseHandler):
    def get(self):
        greeting = self.services.settings.extra.get("TURNSTILE_PROBE_GREETING", "")
        self.send_json({{"version": VERSION, "pid": os.getpid(), "greeting": greeting}})


@public
class Block(BaseHandler):
    def get(self):
        time.sleep(float(self.get_argument("seconds", "60")))  # blocks this worker's event loop, on purpose
        self.send_json({{"pid": os.getpid()}})


@public
class Sleep(BaseHandler):
    async def get(self):
        await asyncio.sleep(float(self.get_argument("seconds", "1")))  # a slow request; the event loop runs on
        self.send_json({{"pid": os.getpid()}})


routes = [(r"/probe/version", Version), (r"/probe/block", Block), (r"/probe/sleep", Sleep)]
"""


def install_probe(root: Path, version: str = "v1") -> Path:
    """Install the ``probe`` plugin as a distribution under ``root/site``; returns its module file."""
    source = root / "src" / "turnstile_probe"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text(textwrap.dedent(PROBE.format(version=version, extra="")))
    install_distribution(root / "site", source, "turnstile-probe", "1.0", {"probe": "turnstile_probe"})
    return root / "site" / "turnstile_probe" / "__init__.py"


def rewrite_probe(module: Path, version: str, extra: str = "") -> None:
    """What a deploy does: new source on disk (``extra`` is more module code, e.g. a ``raise``)."""
    module.write_text(textwrap.dedent(PROBE.format(version=version, extra=extra)))


def probe_env(root: Path) -> dict[str, str]:
    """Environment for a ServerProcess that loads the probe plugin (and never runs stale bytecode)."""
    return {"PYTHONPATH": str(root / "site"), "PYTHONDONTWRITEBYTECODE": "1"}


def burst(port: int, count: int) -> collections.Counter[int]:
    """Open ``count`` keep-alive connections in one burst from one thread, then ask each which worker holds it.

    Every connection is opened before any request is sent, as a client pool
    or ``wrk`` does. Returns the number of connections per worker slot; each
    connection answers twice, from the same worker both times.
    """
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    try:
        slots: list[int] = []
        for _round in range(2):
            for sock in socks:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answers = [read_response(sock) for sock in socks]
            seen = [json.loads(body)["worker"]["index"] for status, body in answers if status == 200]
            assert len(seen) == count, answers
            if slots:
                assert seen == slots, "a keep-alive connection moved between workers"
            slots = seen
        return collections.Counter(slots)
    finally:
        for sock in socks:
            sock.close()


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length body: (status, body)."""
    status, _headers, body = read_message(sock)
    return status, body


def read_message(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body: (status, headers with lower-case names, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk
    return int(lines[0].split()[1]), headers, body


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll ``check`` until it returns something true (and return that), or fail naming ``what``.

    A check that raises (a worker not serving yet, a connection refused) counts as not yet.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = check()
        except (AssertionError, OSError, http.client.HTTPException) as exc:
            value, last = None, exc
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}" + (f" (last: {last!r})" if last else "")
        time.sleep(interval)


def supervisor_log(server: ServerProcess) -> str:
    path = server.root / "logs" / "errLog.txt"
    return path.read_text() if path.exists() else ""
