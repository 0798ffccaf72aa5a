"""pytest fixtures for testing Turnstile and its plugins with pytest-tornado.

Installing the project (``bin/setup`` does, ``pip install -e .``) registers
this module as the pytest plugin ``turnstile`` (a ``pytest11`` entry point in
``pyproject.toml``): every test run in that environment has the fixtures, no
``conftest.py`` line needed. Naming it in ``pytest_plugins`` as well would
register it twice, which pytest refuses.

Fixtures:

* ``turnstile_backend``: the store the app runs on, ``"json"`` (a fresh
  ``DATA_DIR``) or ``"postgres"`` (an empty database on the test server, see
  `core.pg.testing`). ``pytest --turnstile-backend=both`` (or
  ``TURNSTILE_TEST_BACKEND=both``) runs every test that uses the app (or
  ``open_store``) once on each; ``postgres`` runs them on PostgreSQL only.
  Default: ``json``.
* ``turnstile_settings``: settings on that store, fast bcrypt.
  Change any setting for one test with the marker
  ``@pytest.mark.settings(refresh_reuse_grace=0)``, or with indirect
  parametrization, ``@pytest.mark.parametrize("turnstile_settings",
  [{"token_leeway": 30}], indirect=True)``.
* ``plugins_dir``: where plugins are loaded from (default: the project's ``plugins/``).
* ``extra_plugins``: ``{name: package folder}`` loaded besides them (override
  to test a plugin that is not installed; default none).
* ``app``: the full application on that ``DATA_DIR`` (pytest-tornado serves it);
  its store and other services are closed when the test ends.
* ``api``: an HTTP client for the app that never raises on 4xx/5xx and keeps cookies.
* ``make_user``: ``await make_user("alice", roles=[ADMIN])`` registers a user
  and gives it exactly those roles (codes or names; default: the store's default).
* ``auth_headers``: ``await auth_headers("alice")`` logs in and returns the Bearer header.
* ``tokens``: the app's `core.signing.TokenSigner`, to mint and read tokens
  as the app does under whatever ``ACCESS_TOKEN_ALGORITHM``:
  ``tokens.issue(ACCESS, "alice", roles=[ADMIN])``, ``tokens.verify(ACCESS,
  token)``, and ``tokens.sign(typ, claims)`` for odd claims (expired, another
  ``typ``) signed with the current key. Never write an algorithm or a secret
  into a test: the suite runs under each algorithm.
* ``logged_in``: ``client = await logged_in("alice", roles=["Editor"])`` makes the
  user if needed and returns an `ApiClient` that sends its access token on every
  request and keeps the refresh cookie (``await client.refresh()``).
* ``open_store``: ``async with open_store() as store:`` a bare store on the
  test's backend, closed when the block ends; each call opens one more instance
  on the same data (a restart, or a second server). The store contract tests
  use it, so they run on every selected backend.
* ``pg_admin``, ``pg_database``, ``pg_url``: the PostgreSQL test server's admin
  URL, this run's one test database (made on first use, dropped at the end),
  and that database emptied for the test. A test that needs PostgreSQL names
  one of them; without a server it skips loudly (fails with ``CI=true``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import os
import secrets
import threading
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, TypeVar

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from .app import create_app
from .backends import open_at
from .config import Settings
from .lifecycle import TurnstileApplication
from .loader import PROJECT_PLUGINS
from .roles import role_codes
from .signing import TokenSigner
from .store import Store

DEFAULT_PASSWORD = "correct horse battery staple"
T = TypeVar("T")


class Response:
    """A finished response with helpers for JSON and cookies."""

    def __init__(self, raw: HTTPResponse) -> None:
        self.raw = raw
        self.code = raw.code
        self.headers = raw.headers
        self.body = raw.body or b""

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()

    def set_cookies(self) -> list[str]:
        return self.headers.get_list("Set-Cookie")


class ApiClient:
    """Talks to the app under test like a browser would: keeps the cookies it is given."""

    def __init__(self, http_client: AsyncHTTPClient, base_url: str) -> None:
        self.http = http_client
        self.base_url = base_url
        self.cookies: dict[str, str] = {}
        self.headers: dict[str, str] = {}
        self.token: str | None = None

    async def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        cookies: bool = True,
    ) -> Response:
        headers = {**self.headers, **(headers or {})}
        if json is not None:
            body = jsonlib.dumps(json)
            headers.setdefault("Content-Type", "application/json")
        if cookies and self.cookies:
            headers.setdefault("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        raw = await self.http.fetch(
            self.base_url + path,
            method=method,
            body=body,
            headers=headers,
            raise_error=False,
            allow_nonstandard_methods=True,
            follow_redirects=False,
        )
        response = Response(raw)
        if cookies:
            self._remember(response)
        return response

    def _remember(self, response: Response) -> None:
        for header in response.set_cookies():
            jar = SimpleCookie()
            jar.load(header.replace("; Partitioned", ""))
            for name, morsel in jar.items():
                if morsel.value == "" or morsel["expires"].startswith("Thu, 01 Jan 1970") or morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Response:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> Response:
        return await self.request("PUT", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Response:
        return await self.request("DELETE", path, **kw)

    async def options(self, path: str, **kw: Any) -> Response:
        return await self.request("OPTIONS", path, **kw)

    async def login(self, user: str, pwd: str = DEFAULT_PASSWORD) -> str:
        """Log in, keep the refresh cookie, and return the access token."""
        response = await self.post("/auth", json={"user": user, "pwd": pwd})
        assert response.code == 200, f"login of {user!r} failed: {response.code} {response.text}"
        return response.json()["accessToken"]

    def use_token(self, token: str | None) -> None:
        """Send ``Authorization: Bearer <token>`` on every request from now on (None: stop)."""
        self.token = token
        if token is None:
            self.headers.pop("Authorization", None)
        else:
            self.headers["Authorization"] = f"Bearer {token}"

    async def refresh(self) -> Response:
        """``GET /refresh`` with the kept cookie; on success, use the new access token."""
        response = await self.get("/refresh")
        if response.code == 200:
            self.use_token(response.json()["accessToken"])
        return response


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: random secrets, cheap bcrypt, everything under ``data_dir``.

    Access tokens are signed with ``ACCESS_TOKEN_ALGORITHM`` from the environment
    (default HS256), so the whole suite can run under each algorithm.
    """
    base: dict[str, Any] = dict(
        access_secret=secrets.token_hex(32),
        refresh_secret=secrets.token_hex(32),
        data_dir=data_dir / "data",
        log_dir=data_dir / "logs",
        bcrypt_rounds=4,
    )
    algorithm = os.environ.get("ACCESS_TOKEN_ALGORITHM", "").strip()
    if algorithm:  # unset: the settings' default
        base["access_algorithm"] = algorithm
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--turnstile-backend",
        default=os.environ.get("TURNSTILE_TEST_BACKEND", "json"),
        help="store for the app and open_store fixtures: json (default), postgres, or both (each test once per backend)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "settings(**overrides): change Turnstile settings for this test (see make_settings)")
    config.addinivalue_line(
        "markers", "backends(*names): run this test only on these store backends (a fault of one backend's files, say)"
    )


def selected_backends(config: pytest.Config) -> list[str]:
    value = str(config.getoption("--turnstile-backend")).strip().lower()
    names = list(STORE_BACKENDS) if value == "both" else [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(names) - set(STORE_BACKENDS))
    if unknown or not names:
        raise pytest.UsageError(
            f"--turnstile-backend: unknown {', '.join(unknown) or 'empty value'}; use {', '.join(STORE_BACKENDS)} or both"
        )
    return names


#: pytest-tornado's fixtures that fetch the ``app`` fixture at run time (``request.getfixturevalue``).
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses the app (or ``open_store``) on every selected backend.

    A test is parametrized when ``turnstile_backend`` is in the static closure of
    its fixtures: ``app``, and the fixtures that serve it (``api``,
    ``auth_headers``) name ``app`` for that reason, since pytest-tornado's
    ``http_server`` asks for it only at run time. A test module whose own ``app``
    needs no store is left alone.
    """
    if "turnstile_backend" in metafunc.fixturenames:
        backends = selected_backends(metafunc.config)
        only = metafunc.definition.get_closest_marker("backends")
        if only is not None:  # not generated at all elsewhere, rather than skipped there
            backends = [b for b in backends if b in only.args]
        if backends != ["json"]:
            metafunc.parametrize("turnstile_backend", backends, indirect=True)


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` (which may call ``asyncio.run``) on a thread of its own: the test's event loop may exist already."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # pytest.skip and pytest.fail included
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture
def pg_admin() -> str:
    """The admin URL of the PostgreSQL test server; skips the test without one (fails it with ``CI=true``)."""
    from .pg.testing import require_server

    return _in_thread(require_server)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """This run's PostgreSQL test database, made on first use and dropped at the end of the run.

    The only session database: ``pg_url``, and through it the ``postgres`` backend
    of ``turnstile_settings`` and ``open_store``, hand it out emptied to each test.
    """
    from .pg.testing import create_database, drop_database, require_server

    admin = _in_thread(require_server)
    url = _in_thread(lambda: asyncio.run(create_database(admin)))
    try:
        yield url
    finally:
        _in_thread(lambda: asyncio.run(drop_database(admin, url)))


@pytest.fixture
def pg_url(pg_admin: str, pg_database: str) -> str:
    """This run's test database, emptied for this test (much cheaper than a new database)."""
    from .pg.testing import reset_database

    _in_thread(lambda: asyncio.run(reset_database(pg_admin, pg_database)))
    return pg_database


@pytest.fixture
def turnstile_backend(request: pytest.FixtureRequest) -> str:
    """``"json"`` or ``"postgres"``: the store the ``app`` fixture runs on (see ``--turnstile-backend``)."""
    return getattr(request, "param", "json")


@pytest.fixture
def turnstile_settings(tmp_path: Path, request: pytest.FixtureRequest, turnstile_backend: str) -> Settings:
    """Test settings, with the overrides of ``@pytest.mark.settings(...)`` and of indirect parametrization (a dict).

    On ``postgres`` they point at this run's test database, emptied for the test.
    """
    overrides: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("settings"))):  # the closest marker wins
        if marker.args:
            raise TypeError("@pytest.mark.settings takes keyword arguments only, e.g. settings(refresh_reuse_grace=0)")
        overrides.update(marker.kwargs)
    overrides.update(getattr(request, "param", None) or {})
    if turnstile_backend == "postgres" and "database_url" not in overrides:
        overrides["database_url"] = request.getfixturevalue("pg_url")
    return make_settings(tmp_path, **overrides)


# Where a test's data lives on each backend the store contract tests run on (a DATA_DIR or a database URL, opened by
# `core.backends.open_at`). A new backend adds one line here, and then runs the contract suite: every test that uses
# ``open_store`` (tests/test_store_interface.py, _filters, _ids, _lookups, _concurrency), with
# ``--turnstile-backend=<name>``.
STORE_BACKENDS: dict[str, Callable[[pytest.FixtureRequest], str]] = {
    "json": lambda request: str(request.getfixturevalue("tmp_path") / "store"),
    "postgres": lambda request: request.getfixturevalue("pg_url"),
}


class StoreOpener:
    """``async with open_store() as store:``: one more instance on the test's data, closed when the block ends."""

    def __init__(self, backend: str, location: str) -> None:
        self.backend = backend
        self.location = location  # a DATA_DIR, a database URL...: where this test's data lives

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[Store]:
        store = await open_at(self.location, pool_size=4)
        try:
            yield store
        finally:
            await store.close()


@pytest.fixture
def open_store(request: pytest.FixtureRequest, turnstile_backend: str) -> StoreOpener:
    """Bare stores on the test's backend, empty at the start of the test (see `StoreOpener`).

    Parametrized like ``app``: with ``--turnstile-backend=both`` a test that uses
    it runs once per backend; ``@pytest.mark.backends("json")`` keeps it to one.
    """
    return StoreOpener(turnstile_backend, STORE_BACKENDS[turnstile_backend](request))


@pytest.fixture
def plugins_dir() -> Path:
    """The folder plugins are discovered in."""
    return PROJECT_PLUGINS


@pytest.fixture
def extra_plugins() -> Mapping[str, Path]:
    """Plugins loaded besides ``plugins_dir`` and installed ones: ``{name: package folder}``."""
    return {}


@pytest.fixture
def app(io_loop, turnstile_settings: Settings, plugins_dir: Path, extra_plugins: Mapping[str, Path]):
    """The application with every plugin loaded, on a temporary ``DATA_DIR``; closed after the test."""
    application = io_loop.run_sync(lambda: create_app(turnstile_settings, plugins_dir, extra_plugins))
    yield application
    io_loop.run_sync(application.services.close)


@pytest.fixture
def api(app: TurnstileApplication, http_client: AsyncHTTPClient, base_url: str) -> ApiClient:
    return ApiClient(http_client, base_url)


async def set_roles(app: TurnstileApplication, name: str, roles: Iterable[int | str]) -> None:
    """Give user ``name`` exactly ``roles``, directly through the accounts."""
    assert await app.services.accounts.set_roles(name, role_codes(roles)), f"no user {name!r}"


@pytest.fixture
def make_user(app: TurnstileApplication, http_client: AsyncHTTPClient, base_url: str) -> Callable[..., Awaitable[str]]:
    """``await make_user(name, pwd=..., roles=None, email=None)`` registers ``name`` over HTTP and sets its roles."""

    async def make(name: str, pwd: str = DEFAULT_PASSWORD, roles: Iterable[int | str] | None = None, email: str | None = None) -> str:
        body = {"user": name, "pwd": pwd, **({"email": email} if email is not None else {})}
        response = await ApiClient(http_client, base_url).post("/register", json=body)
        assert response.code == 201, f"registering {name!r} failed: {response.code} {response.text}"
        if roles is not None:
            await set_roles(app, name, roles)
        return name

    return make


@pytest.fixture
def auth_headers(app: TurnstileApplication, http_client: AsyncHTTPClient, base_url: str) -> Callable[..., Awaitable[dict[str, str]]]:
    """``await auth_headers(name, pwd=...)`` logs ``name`` in and returns its Bearer header."""

    async def headers(name: str, pwd: str = DEFAULT_PASSWORD) -> dict[str, str]:
        token = await ApiClient(http_client, base_url).login(name, pwd)
        return {"Authorization": f"Bearer {token}"}

    return headers


@pytest.fixture
def tokens(app: TurnstileApplication) -> TokenSigner:
    """The app's token signer: tests mint and read tokens through it, so they hold under every algorithm."""
    return app.services.tokens


@pytest.fixture
def logged_in(app: TurnstileApplication, http_client: AsyncHTTPClient, base_url: str, make_user) -> Callable[..., Awaitable[ApiClient]]:
    """``await logged_in(name, roles=None, pwd=...)``: a client logged in as ``name`` (created if new).

    The client sends the access token on every request and keeps the refresh
    cookie, so ``await client.refresh()`` and ``await client.get("/logout")``
    work like in a browser.
    """

    async def login(name: str, roles: Iterable[int | str] | None = None, pwd: str = DEFAULT_PASSWORD) -> ApiClient:
        if await app.services.accounts.exists(name):
            if roles is not None:
                await set_roles(app, name, roles)
        else:
            await make_user(name, pwd, roles)
        client = ApiClient(http_client, base_url)
        client.use_token(await client.login(name, pwd))
        return client

    return login
