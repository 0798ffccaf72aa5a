"""A store that cannot be reached gives 503 with Retry-After and a JSON message: never a 500, never a traceback."""

import logging

import pytest
from plugin_kit import link_project_plugins, write_plugin

from core.store import StoreUnavailable

THINGS = '''
from core.plugin import BaseHandler, public


@public
class Things(BaseHandler):
    async def get(self):
        self.send_json(await self.db.collection("things").all())


@public
class Prepared(BaseHandler):
    async def prepare(self):
        await self.db.collection("things").count()

    def get(self):
        self.send_json({"reached": True})
'''


class Unreachable:
    """A collection whose backend is down: every call raises, as a backend does while the database is away."""

    name = "things.things"

    def __getattr__(self, method):
        async def fail(*args, **kwargs):
            raise StoreUnavailable("database unreachable: connection refused", retry_after=7)

        return fail


@pytest.fixture
def plugins_dir(tmp_path):
    root = tmp_path / "plugins"
    link_project_plugins(root, "auth")
    write_plugin(root, "things", "from .handlers import *\nroutes = [('/things', Things), ('/prepared', Prepared)]\n", handlers=THINGS)
    return root


def assert_unavailable(response, retry_after):
    assert response.code == 503
    assert response.headers["Retry-After"] == retry_after
    assert response.headers["Content-Type"].startswith("application/json")
    assert set(response.json()) == {"message"} and response.json()["message"]
    assert "Traceback" not in response.text and "refused" not in response.text


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/things", "/prepared"])
async def test_a_plugin_read_during_an_outage_is_a_503_in_handler_and_in_prepare(api, app, monkeypatch, caplog, path):
    store = app.services.store
    real = store.collection
    monkeypatch.setattr(store, "collection", lambda name: Unreachable() if name == "things.things" else real(name))
    with caplog.at_level(logging.WARNING, logger="turnstile.error"):
        response = await api.get(path)
    assert_unavailable(response, "7")
    [record] = [r for r in caplog.records if r.name == "turnstile.error"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert f"503 GET {path}: store unavailable" in record.getMessage()
    monkeypatch.undo()
    assert (await api.get(path)).code == 200  # nothing to restart: the next request reaches the store


@pytest.mark.gen_test
async def test_a_login_during_an_outage_is_a_503_and_counts_no_failure(api, app, make_user, monkeypatch):
    await make_user("alice")
    users = app.services.store.collection("auth.users")

    async def down(*args, **kwargs):
        raise StoreUnavailable("database unreachable")

    monkeypatch.setattr(users, "get", down)
    for _ in range(app.services.settings.login_max_failures + 1):
        assert_unavailable(await api.post("/auth", json={"user": "alice", "pwd": "correct horse battery staple"}), "1")
    monkeypatch.undo()
    assert (await api.post("/auth", json={"user": "alice", "pwd": "correct horse battery staple"})).code == 200


@pytest.mark.gen_test
async def test_a_write_during_an_outage_is_a_503(api, app, monkeypatch):
    store = app.services.store

    def down(prefix=""):
        raise StoreUnavailable("database unreachable", retry_after=3)

    monkeypatch.setattr(store, "transaction", down)
    monkeypatch.setattr(store.collection("auth.users"), "insert", lambda *a, **k: down())
    assert_unavailable(await api.post("/register", json={"user": "bob", "pwd": "correct horse battery staple"}), "3")
