"""What the benchmarks share: ``server.py`` as a real process on a free loopback port (also used by the soak run
and the tests that need signals, sockets or /proc), the load generator (wrk, else bench/load.py), and CPU
measurements."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import bcrypt

from core.accounts import Accounts
from core.app import create_app
from core.config import Settings
from core.jsondb import JsonStore
from core.store import Store

HERE = Path(__file__).resolve().parent
SERVER = HERE.parent / "server.py"
WRK = shutil.which("wrk")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PASSWORD = "correct horse battery staple"


def cpu_steal_ms() -> float:
    """Time the hypervisor gave this machine's CPUs to others (Linux /proc/stat), in ms; 0 if unknown."""
    try:
        fields = open("/proc/stat").readline().split()
        return int(fields[8]) * 1000 / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python server.py`` (``server``: this checkout's) on fresh data under ``root``; extra environment from ``env``."""

    def __init__(self, root: Path, *, server: Path = SERVER, **env: str) -> None:
        self.root = root
        self.server = server  # another checkout's server.py, to compare versions (bench/versions.py)
        self.port = free_port()
        self.data_dir = root / "data"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.endswith("_TOKEN_SECRET")},
            "ACCESS_TOKEN_SECRET": secrets.token_hex(32),
            "REFRESH_TOKEN_SECRET": secrets.token_hex(32),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "DATA_DIR": str(self.data_dir),
            "LOG_DIR": str(root / "logs"),
            "BCRYPT_ROUNDS": "4",
            **env,
        }
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> "ServerProcess":
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(self.server)], cwd=self.root, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        # Every worker, not just the first: until the last one is ready the others take every connection,
        # so a test (or a benchmark) that counts on them sharing the load would see one worker do it all.
        workers = int(self.env["WORKERS"]) if self.env.get("WORKERS", "").isdigit() else 1
        serving: set[Any] = set()
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, body = self.request("GET", "/healthz")
                if status == 200:
                    # Round-robin hands fresh connections to each ready worker in turn; a build whose
                    # /healthz names no worker counts as all of them.
                    serving.add((json.loads(body).get("worker") or {}).get("index", "all"))
                    if len(serving) >= workers or "all" in serving:
                        return self
            except (OSError, ValueError):
                pass
            assert self.proc.poll() is None, self.proc.communicate()[0]
            assert time.monotonic() < deadline, f"server did not start ({len(serving)} of {workers} workers serving)"
            time.sleep(0.05)

    def __exit__(self, *exc: Any) -> None:
        if self.proc and self.proc.poll() is None:
            stragglers = child_pids(self.proc.pid)  # workers: one whose loop is blocked would outlive its supervisor
            self.proc.kill()
            for pid in stragglers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.communicate()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def connect(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                conn: http.client.HTTPConnection | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One request (on ``conn`` if given, else a fresh connection): status, headers, body."""
        own = conn is None
        conn = conn or self.connect()
        headers = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            if own:
                conn.close()

    def login(self, user: str) -> tuple[str, str]:
        """Register ``user`` and log in: (access token, refresh cookie value)."""
        status, _, body = self.request("POST", "/register", {"user": user, "pwd": PASSWORD})
        assert status == 201, body
        return self.login_again(user)

    def login_again(self, user: str) -> tuple[str, str]:
        """Log in an existing ``user``: (access token, refresh cookie value)."""
        status, headers, body = self.request("POST", "/auth", {"user": user, "pwd": PASSWORD})
        assert status == 200, body
        cookie = headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]
        return json.loads(body)["accessToken"], cookie

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, str]:
        """Send ``sig`` and wait: (exit code, everything it printed)."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        output, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, output


def connections_by_pid(port: int, pids: list[int]) -> dict[int, int]:
    """Established TCP connections on local ``port`` that each of ``pids`` holds (Linux /proc)."""
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # ESTABLISHED
                inodes[fields[9]] = 0
    counts = {}
    for pid in pids:
        held = 0
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    held += 1
        except OSError:
            pass
        counts[pid] = held
    return counts


def child_pids(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


# -- load ----------------------------------------------------------------------------------

def _wrk_seconds(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


# Per-connection state for wrk: each thread runs one connection in a Lua state of its own, so it can
# follow its own session's rotating cookie, or number the bodies it sends, as bench/load.py does.
WRK_PER_CONNECTION = """
local n = 0
function setup(thread)
  n = n + 1
  thread:set("id", n)
  if #cookies > 0 then thread:set("cookie", cookies[(n - 1) % #cookies + 1]) end
end
local sent = 0
function request()
  if cookie then wrk.headers["Cookie"] = cookie end
  local body = wrk.body
  if template then
    sent = sent + 1
    body = template:gsub("{n}", id .. "-" .. sent)
  end
  return wrk.format(nil, nil, nil, body)
end
function response(status, headers, body)
  local set = headers["Set-Cookie"]
  if follow and set then
    local value = set:match("^jwt=([^;]*)")
    if value and value ~= "" then cookie = "jwt=" .. value end
  end
end
"""


def wrk_command(port: int, method: str, path: str, headers: dict[str, str], body: str | None, conns: int, seconds: float,
                script_dir: Path, cookies: list[str] | None = None, body_template: str | None = None) -> list[str]:
    """wrk with a Lua script for the request; with ``cookies`` or ``body_template``, one thread per connection."""
    script = script_dir / f"req-{method}-{abs(hash((path, body, tuple(cookies or ()), body_template)))}.lua"
    lua = [f'wrk.method = "{method}"']
    if body is not None:
        lua.append("wrk.body = " + json.dumps(body))
    for name, value in headers.items():
        lua.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    threads = 1
    if cookies or body_template:
        threads = conns
        lua.append("cookies = {" + ", ".join(json.dumps(c) for c in cookies or []) + "}")
        lua.append(f"follow = {'true' if cookies else 'false'}")
        lua.append(f"template = {json.dumps(body_template) if body_template else 'nil'}")
        lua.append(WRK_PER_CONNECTION)
    script.write_text("\n".join(lua) + "\n")
    return [WRK, f"-t{threads}", f"-c{conns}", "--timeout", "30s", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script),
            f"http://127.0.0.1:{port}{path}"]


def parse_wrk(out: str) -> dict[str, Any]:
    total, secs = re.search(r"(\d+) requests in ([\d.]+\w+)", out).groups()  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    dist = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    ok = int(total) - (int(bad.group(1)) if bad else 0)
    return {
        "rps": ok / _wrk_seconds(secs), "p50_ms": _wrk_seconds(dist["50"]) * 1000, "p99_ms": _wrk_seconds(dist["99"]) * 1000,
        "non2xx": int(bad.group(1)) if bad else 0, "errors": errors.group(1) if errors else "",
    }


class Load:
    """One load run from a separate process; ``start`` then ``result``, or ``run`` for both."""

    def __init__(self, port: int, method: str, path: str, headers: dict[str, str] | None = None, body: str | None = None,
                 conns: int = 16, seconds: float = 4, cookies: list[str] | None = None, scratch: Path | None = None,
                 body_template: str | None = None) -> None:
        self.use_wrk = WRK is not None
        if self.use_wrk:
            if body_template is not None:
                headers = {"Content-Type": "application/json", **(headers or {})}
            cmd = wrk_command(port, method, path, headers or {}, body, conns, seconds, scratch or Path(tempfile.gettempdir()),
                              cookies, body_template)
        else:
            cfg = {"port": port, "method": method, "path": path, "headers": headers or {}, "body": body, "connections": conns,
                   "seconds": seconds, "max_requests": 500000, "follow_cookie": bool(cookies), "cookies": cookies or [],
                   "body_template": body_template}
            if body is not None or body_template is not None:
                cfg["headers"] = {"Content-Type": "application/json", **cfg["headers"]}
            cmd = [sys.executable, str(HERE / "load.py"), json.dumps(cfg)]
        self.cmd = cmd
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> "Load":
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self

    def result(self) -> dict[str, Any]:
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=120)
        if self.proc.returncode != 0:
            raise RuntimeError(f"load generator failed: {out}")
        result = parse_wrk(out) if self.use_wrk else json.loads(out.strip().splitlines()[-1])
        if not result["p99_ms"] > 0 and "/auth" not in " ".join(self.cmd):
            raise RuntimeError(f"load generator measured nothing: {out}")
        return result

    def run(self) -> dict[str, Any]:
        return self.start().result()


def one_core_bcrypt_rate(rounds: int, seconds: float = 2.0) -> float:
    """Checks per second on one thread, at ``rounds``."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds))
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        bcrypt.checkpw(PASSWORD.encode(), hashed)
        count += 1
    return count / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) a process has used; None where /proc is unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# -- PostgreSQL databases for the benchmarks ----------------------------------------------------

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, name: str) -> str:
    """``url`` with database ``name``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def admin_sql(url: str, sql: str) -> None:
    """Run one statement (CREATE or DROP DATABASE) as the server's admin."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# -- store workloads (bench/db_scaling.py and bench/db_scaling_pg.py) ---------------------------

HASH = "$2b$12$" + "N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"[:53]
WRITES = 1000
LOOKUPS = 1000


def user(i: int) -> dict:
    """A user as /register stores it (role User is 2001)."""
    return {"username": f"user{i:06d}", "password": HASH, "roles": [2001], "created": 1_700_000_000 + i}


async def seed(data_dir: Path, count: int) -> JsonStore:
    store = JsonStore(data_dir).open()
    for start in range(0, count, 5000):
        async with store.transaction() as tx:
            users = tx.collection("auth.users")
            for i in range(start, min(count, start + 5000)):
                await users.put(f"user{i:06d}", user(i))
    await store.compact()
    return store


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def write_latencies(store: Store, offset: int, count: int = WRITES) -> list[float]:
    """ms per insert of a new user: one durable write, as /register makes (Accounts.create_user)."""
    users = store.collection("auth.users")
    out = []
    for i in range(offset, offset + count):
        started = time.perf_counter()
        await users.insert(user(i), key=f"user{i:06d}")
        out.append((time.perf_counter() - started) * 1000)
    return out


async def lookup_latencies(store: Store, seeded: int, count: int = LOOKUPS, seed: int = 11) -> list[float]:
    """ms per user lookup of a login (``await accounts.user(name)``), on random seeded users."""
    accounts = await Accounts.open(store)
    names = [f"user{i:06d}" for i in random.Random(seed).choices(range(seeded), k=count)]
    out = []
    for name in names:
        started = time.perf_counter()
        found = await accounts.user(name)
        out.append((time.perf_counter() - started) * 1000)
        assert found is not None and found["username"] == name, name
    return out


# -- an app served in this process, for the timing benchmarks (login_timing.py, forgot_timing.py) -------------

Post = Callable[[str, dict], Awaitable[tuple[int, float]]]


@contextlib.asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[Any, Post]]:
    """The app on a free loopback port: ``(app, post)``, where ``await post(path, body)`` gives ``(status, seconds)``."""
    from tornado.httpclient import AsyncHTTPClient
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    app = await create_app(settings)
    [sock] = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets([sock])
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client = AsyncHTTPClient()

    async def post(path: str, body: dict) -> tuple[int, float]:
        start = time.perf_counter()
        response = await client.fetch(
            base + path, method="POST", body=json.dumps(body), headers={"Content-Type": "application/json"}, raise_error=False
        )
        return response.code, time.perf_counter() - start

    try:
        yield app, post
    finally:
        server.stop()
        await app.services.close()

