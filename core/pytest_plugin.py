"""pytest fixtures for testing Turnstile and its plugins with pytest-tornado.

Enable with one line in a ``conftest.py``::

    pytest_plugins = ["core.pytest_plugin"]

Fixtures:

* ``turnstile_settings``: settings on a fresh temporary ``DATA_DIR``, fast bcrypt.
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
* ``logged_in``: ``client = await logged_in("alice", roles=["Editor"])`` makes the
  user if needed and returns an `ApiClient` that sends its access token on every
  request and keeps the refresh cookie (``await client.refresh()``).
"""

from __future__ import annotations

import json as jsonlib
import secrets
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from .app import create_app
from .config import Settings
from .lifecycle import TurnstileApplication
from .loader import PROJECT_PLUGINS
from .roles import role_codes

DEFAULT_PASSWORD = "correct horse battery staple"


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
    """Settings for tests: random secrets, cheap bcrypt, everything under ``data_dir``."""
    base = dict(
        access_secret=secrets.token_hex(32),
        refresh_secret=secrets.token_hex(32),
        data_dir=data_dir / "data",
        log_dir=data_dir / "logs",
        bcrypt_rounds=4,
    )
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "settings(**overrides): change Turnstile settings for this test (see make_settings)")


@pytest.fixture
def turnstile_settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Test settings, with the overrides of ``@pytest.mark.settings(...)`` and of indirect parametrization (a dict)."""
    overrides: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("settings"))):  # the closest marker wins
        if marker.args:
            raise TypeError("@pytest.mark.settings takes keyword arguments only, e.g. settings(refresh_reuse_grace=0)")
        overrides.update(marker.kwargs)
    overrides.update(getattr(request, "param", None) or {})
    return make_settings(tmp_path, **overrides)


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
def api(http_client: AsyncHTTPClient, base_url: str) -> ApiClient:
    return ApiClient(http_client, base_url)


async def set_roles(app: TurnstileApplication, name: str, roles: Iterable[int | str]) -> None:
    """Give user ``name`` exactly ``roles``, directly through the accounts."""
    assert await app.services.accounts.set_roles(name, role_codes(roles)), f"no user {name!r}"


@pytest.fixture
def make_user(app: TurnstileApplication, http_client: AsyncHTTPClient, base_url: str) -> Callable[..., Awaitable[str]]:
    """``await make_user(name, pwd=..., roles=None)`` registers ``name`` over HTTP and sets its roles."""

    async def make(name: str, pwd: str = DEFAULT_PASSWORD, roles: Iterable[int | str] | None = None) -> str:
        response = await ApiClient(http_client, base_url).post("/register", json={"user": name, "pwd": pwd})
        assert response.code == 201, f"registering {name!r} failed: {response.code} {response.text}"
        if roles is not None:
            await set_roles(app, name, roles)
        return name

    return make


@pytest.fixture
def auth_headers(http_client: AsyncHTTPClient, base_url: str) -> Callable[..., Awaitable[dict[str, str]]]:
    """``await auth_headers(name, pwd=...)`` logs ``name`` in and returns its Bearer header."""

    async def headers(name: str, pwd: str = DEFAULT_PASSWORD) -> dict[str, str]:
        token = await ApiClient(http_client, base_url).login(name, pwd)
        return {"Authorization": f"Bearer {token}"}

    return headers


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
