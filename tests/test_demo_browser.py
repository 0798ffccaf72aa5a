"""The demo client in a real headless Chromium against a real server process.

Only a browser enforces what makes the refresh cookie work for a front end on another origin:
CORS with credentials, ``SameSite=None; Secure``, ``HttpOnly`` and, for a page on another site,
``Partitioned``. So the flow runs twice: the page on ``localhost`` (same-site with the API) and
on ``127.0.0.1`` (cross-site, the tutorial's own setup, where Chromium keeps only partitioned
third-party cookies). Ports are free ones; the API runs with a 2 s access token.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "docs" / "demo-logged-in.png"
ACCESS_TTL = 2
PASSWORD = "walter-white-1958"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not CHROMIUM.exists():  # bin/setup installs it when run as root; CI must never skip this file
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: bin/setup should have installed the chromium package")
    pytest.skip(f"{CHROMIUM} is not installed (run bin/setup as root)", allow_module_level=True)

from playwright.sync_api import BrowserContext, Page, Playwright, sync_playwright  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, headers: dict[str, str] | None = None) -> int:
    """Status of a plain GET from outside any browser."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def http_post_json(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@contextmanager
def running(cmd: list[str], cwd: Path, env: dict[str, str], ready_url: str, log: Path) -> Iterator[None]:
    """Run ``cmd`` until the block ends; wait until ``ready_url`` answers."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                http_get(ready_url)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{cmd} did not start:\n{log.read_text()}") from None
                time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def api_server(
    workdir: Path, origins: list[str], partitioned: bool = True, port: int | None = None, extra: dict[str, str] | None = None
) -> Iterator[str]:
    """The real server process, configured by environment only (plus ``extra``); cwd is empty so no ``.env`` is read or written."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN_SECRET")}
    env.update(
        ACCESS_TOKEN_SECRET=secrets.token_hex(32),
        REFRESH_TOKEN_SECRET=secrets.token_hex(32),
        ACCESS_TOKEN_TTL=f"{ACCESS_TTL}s",
        REFRESH_TOKEN_TTL="10m",
        ALLOWED_ORIGINS=",".join(origins),
        DATA_DIR=str(workdir / "data"),
        LOG_DIR=str(workdir / "logs"),
        BCRYPT_ROUNDS="4",
        HOST="localhost",
        PORT=str(port),
        COOKIE_PARTITIONED="true" if partitioned else "false",
    )
    env.update(extra or {})
    url = f"http://localhost:{port}"
    with running([sys.executable, str(REPO / "server.py")], workdir, env, url + "/", workdir / "server.out"):
        yield url


@contextmanager
def demo_server(workdir: Path) -> Iterator[int]:
    """The documented ``python -m demo`` command on a free port."""
    port = free_port()
    with running(
        [sys.executable, "-m", "demo", "--port", str(port)],
        REPO,
        dict(os.environ),
        f"http://127.0.0.1:{port}/",
        workdir / f"demo-{port}.out",
    ):
        yield port


@dataclass
class Setup:
    api: str
    demo_port: int
    outsider_port: int
    workdir: Path
    users: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """One API process and two demo servers: one on an allowed origin, one on an origin outside ``ALLOWED_ORIGINS``."""
    workdir = tmp_path_factory.mktemp("e2e")
    with demo_server(workdir) as demo_port, demo_server(workdir) as outsider_port:
        origins = [f"http://localhost:{demo_port}", f"http://127.0.0.1:{demo_port}"]
        with api_server(workdir / "api", origins) as api:
            yield Setup(api, demo_port, outsider_port, workdir)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture
def browser(playwright: Playwright, tmp_path: Path) -> Iterator[BrowserContext]:
    """Debian's Chromium on a fresh profile: no cookies, default third-party cookie rules."""
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1000, "height": 580},
    )
    context.set_default_timeout(10_000)
    yield context
    context.close()


class Calls:
    """Every API call the page makes, as ``(method, path, status)``, preflights left out."""

    def __init__(self, page: Page, api: str) -> None:
        self.seen: list[tuple[str, str, int]] = []
        self.bearers: list[str | None] = []
        self.mark = 0

        def record(response) -> None:  # type: ignore[no-untyped-def]
            request = response.request
            if response.url.startswith(api) and request.method != "OPTIONS":
                self.seen.append((request.method, urlsplit(response.url).path, response.status))
                self.bearers.append(request.headers.get("authorization"))

        page.on("response", record)

    def since_mark(self) -> list[tuple[str, str, int]]:
        """Calls since the last call to this method."""
        new, self.mark = self.seen[self.mark :], len(self.seen)
        return new


def open_demo(context: BrowserContext, page_origin: str, api: str) -> tuple[Page, Calls]:
    page = context.new_page()
    calls = Calls(page, api)
    page.goto(f"{page_origin}/?api={api}")
    page.wait_for_selector("body[data-ready=true]")
    return page, calls


def click(page: Page, selector: str, then_says: str) -> None:
    """Click, then wait until the status line says ``then_says`` (it is blanked first, so an old message can't match)."""
    page.evaluate("document.getElementById('message').textContent = ''")
    page.click(selector)
    page.wait_for_function("t => document.getElementById('message').textContent.includes(t)", arg=then_says)


def refresh_cookies(context: BrowserContext, api: str) -> list[dict]:
    return [c for c in context.cookies(api) if c["name"] == "jwt"]


def assert_nothing_readable(page: Page) -> None:
    """No script on the page can read the refresh cookie, and no token is stored anywhere."""
    assert "jwt" not in page.evaluate("document.cookie")
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0


def browser_fetch(page: Page, url: str) -> object:
    """``fetch(url, {credentials: "include"})`` from the page: the status, or the error if the browser refused."""
    return page.evaluate(
        """url => fetch(url, {credentials: "include"}).then(r => r.status, e => e.name + ": " + e.message)""", url
    )


def save_screenshot(page: Page) -> None:
    """Full page, no focus ring or caret, so identical pages give identical files."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.evaluate("document.fonts.ready")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True, animations="disabled", caret="hide")


def test_demo_server_serves_the_client_and_nothing_else(setup: Setup) -> None:
    """``python -m demo`` answers on both host names and does not expose its own source."""
    for host in ("localhost", "127.0.0.1"):
        for path in ("/", "/index.html", "/app.js", "/style.css"):
            assert http_get(f"http://{host}:{setup.demo_port}{path}") == 200, (host, path)
    for path in ("/serve.py", "/__init__.py", "/../server.py"):
        assert http_get(f"http://localhost:{setup.demo_port}{path}") == 404, path


@pytest.mark.parametrize("where", ["same-site", "cross-site"])
def test_full_flow_in_chromium(where: str, setup: Setup, browser: BrowserContext) -> None:
    """Register, log in, call, expire, refresh and retry, log out: the whole flow through the page."""
    host = "localhost" if where == "same-site" else "127.0.0.1"
    user = "walt1" if where == "cross-site" else "jesse"
    page, calls = open_demo(browser, f"http://{host}:{setup.demo_port}", setup.api)
    assert_nothing_readable(page)

    page.fill("#user", user)
    page.fill("#pwd", PASSWORD)
    click(page, "#register", f"Registered {user}")
    assert calls.since_mark() == [("POST", "/register", 201)]

    click(page, "#login", "Loaded 2 employees")
    logged_in = time.monotonic()
    assert calls.since_mark() == [("POST", "/auth", 200), ("GET", "/email", 200), ("GET", "/employees", 200)]
    first_token = calls.bearers[-1]
    assert first_token and first_token.startswith("Bearer ")
    assert page.inner_text("#session").startswith(f"Signed in as {user}")
    assert page.locator("#employees tbody tr").all_inner_texts() == ["1\tDave\tGray", "2\tJohn\tSmith"]
    assert page.inner_text("#email-status") == "No address on this account yet."

    (cookie,) = refresh_cookies(browser, setup.api)
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "None"
    assert cookie["partitionKey"] == f"http://{host}"  # kept in the page's partition, even cross-site
    assert_nothing_readable(page)
    if where == "cross-site":
        save_screenshot(page)

    page.wait_for_timeout((ACCESS_TTL + 0.6 - (time.monotonic() - logged_in)) * 1000)
    click(page, "#load", "Loaded 2 employees")
    assert calls.since_mark() == [("GET", "/employees", 403), ("GET", "/refresh", 200), ("GET", "/employees", 200)]
    assert calls.bearers[-3] == first_token and calls.bearers[-1] not in (None, first_token)
    assert page.inner_text("#session").startswith(f"Signed in as {user}")
    assert_nothing_readable(page)

    (cookie,) = refresh_cookies(browser, setup.api)
    click(page, "#logout", "Logged out")
    assert calls.since_mark() == [("GET", "/logout", 204)]
    assert refresh_cookies(browser, setup.api) == []
    assert page.inner_text("#session") == "Signed out"
    assert page.locator("#employees tbody tr").count() == 0
    assert page.is_hidden("#email-panel")
    assert_nothing_readable(page)

    assert browser_fetch(page, setup.api + "/refresh") == 401  # the browser has no cookie left to send
    assert http_get(setup.api + "/refresh", {"Cookie": f"jwt={cookie['value']}"}) == 403  # and a copy is dead too
    click(page, "#load", "Please log in")
    assert calls.since_mark() == [("GET", "/refresh", 401), ("GET", "/employees", 401)]


def test_api_origin_page_cannot_read_the_cookie_either(setup: Setup, browser: BrowserContext) -> None:
    """HttpOnly, not the origin boundary, is what hides the cookie: a page on the API's own origin can't see it."""
    page, _ = open_demo(browser, f"http://localhost:{setup.demo_port}", setup.api)
    page.fill("#user", "skyler")
    page.fill("#pwd", PASSWORD)
    click(page, "#register", "Registered skyler")
    click(page, "#login", "Loaded 2 employees")
    assert len(refresh_cookies(browser, setup.api)) == 1

    api_page = browser.new_page()
    api_page.goto(setup.api + "/")
    assert "jwt" not in api_page.evaluate("document.cookie")
    assert browser_fetch(api_page, setup.api + "/refresh") == 200  # yet the browser does send it


def test_page_outside_allowed_origins_cannot_read_api_responses(setup: Setup, browser: BrowserContext) -> None:
    """A page on an unlisted origin gets no CORS grant: reads fail, and a JSON POST never leaves the browser."""
    outsider = f"http://localhost:{setup.outsider_port}"
    page, _ = open_demo(browser, outsider, setup.api)
    assert http_get(setup.api + "/") == 200  # the API is up and answers non-browser clients

    refused = browser_fetch(page, setup.api + "/")
    assert isinstance(refused, str) and refused.startswith("TypeError"), refused

    page.fill("#user", "mallory")
    page.fill("#pwd", PASSWORD)
    click(page, "#register", "Could not reach the API")
    click(page, "#login", "Could not reach the API")
    assert page.inner_text("#session") == "Signed out"
    assert refresh_cookies(browser, setup.api) == []
    # The preflight was refused, so the POST /register itself was never sent: the name is still free.
    assert http_post_json(setup.api + "/register", b'{"user": "mallory", "pwd": "' + PASSWORD.encode() + b'"}') == 201

    allowed_page, _ = open_demo(browser, f"http://localhost:{setup.demo_port}", setup.api)
    assert browser_fetch(allowed_page, setup.api + "/") == 200  # the same read from an allowed origin works


def test_cross_site_refresh_needs_the_partitioned_cookie(
    setup: Setup, browser: BrowserContext, tmp_path: Path
) -> None:
    """Without ``Partitioned`` Chromium drops the cross-site refresh cookie, so refresh fails: the attribute is load-bearing."""
    origins = [f"http://127.0.0.1:{setup.demo_port}"]
    with api_server(tmp_path / "api", origins, partitioned=False) as api:
        page, calls = open_demo(browser, f"http://127.0.0.1:{setup.demo_port}", api)
        page.fill("#user", "walt1")
        page.fill("#pwd", PASSWORD)
        click(page, "#register", "Registered walt1")
        click(page, "#login", "Loaded 2 employees")  # login and the access token work without any cookie
        assert refresh_cookies(browser, api) == []
        assert browser_fetch(page, api + "/refresh") == 401
        assert calls.seen[-1] == ("GET", "/refresh", 401)
