"""Every mounted handler is explicitly public or protected, and nothing a plugin writes can skip the auth check."""

import asyncio
from pathlib import Path

import pytest
from plugin_kit import link_project_plugins, write_plugin

from core.app import create_app
from core.plugin import ADMIN, EDITOR, PluginError, require_roles

HANDLERS = '''
from tornado.web import RequestHandler
from core.plugin import ADMIN, EDITOR, BaseHandler, protected, public, require_roles


class Unmarked(BaseHandler):
    def get(self):
        self.finish({"secret": True})


class OwnPrepare(BaseHandler):
    def prepare(self):  # forgets super().prepare()
        self.seen = True

    def get(self):
        self.finish({"secret": True})


class SkipMixin:
    def prepare(self):
        pass


class MixinPrepare(SkipMixin, BaseHandler):
    def get(self):
        self.finish({"secret": True})


class Options(BaseHandler):
    def options(self):
        self.finish({"secret": True})


@public
class Open(BaseHandler):
    def get(self):
        self.finish({"open": True})


@protected
class Closed(Open):
    pass


@public
class GuardedOnPublic(BaseHandler):
    @require_roles(ADMIN)
    def get(self):
        self.finish({"admin": True})


class Editors(BaseHandler):
    @require_roles(EDITOR, ADMIN)
    async def get(self):
        self.finish({"editor": True})
'''

INIT = """
from .handlers import *
routes = [
    ("/unmarked", Unmarked), ("/own-prepare", OwnPrepare), ("/mixin-prepare", MixinPrepare),
    ("/options", Options), ("/open", Open), ("/closed", Closed),
    ("/guarded-public", GuardedOnPublic), ("/editors", Editors),
]
"""


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Path:
    root = tmp_path / "plugins"
    link_project_plugins(root, "auth", "site")
    write_plugin(root, "safety", INIT, handlers=HANDLERS)
    return root


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/unmarked", "/own-prepare", "/mixin-prepare", "/closed", "/guarded-public", "/editors"])
async def test_no_token_no_access(api, path):
    response = await api.get(path)
    assert response.code == 401
    assert "secret" not in response.text


@pytest.mark.gen_test
async def test_a_custom_options_method_is_protected_too(api):
    response = await api.options("/options")
    assert response.code == 401


@pytest.mark.gen_test
async def test_the_builtin_preflight_stays_public(api):
    response = await api.options("/unmarked", headers={"Origin": "http://localhost:5500"})
    assert response.code == 204


@pytest.mark.gen_test
async def test_public_marker_opens_only_the_marked_class(api):
    assert (await api.get("/open")).code == 200
    assert (await api.get("/closed")).code == 401


@pytest.mark.gen_test
async def test_overridden_prepare_still_runs_after_the_check(logged_in):
    client = await logged_in("alice")
    assert (await client.get("/own-prepare")).code == 200


@pytest.mark.gen_test
async def test_role_guard(logged_in):
    plain, editor, admin = await logged_in("plain"), await logged_in("ed", roles=[EDITOR]), await logged_in("boss", roles=["Admin"])
    assert (await plain.get("/editors")).code == 403
    assert (await editor.get("/editors")).json() == {"editor": True}
    assert (await admin.get("/editors")).code == 200
    assert (await editor.get("/guarded-public")).code == 403
    assert (await admin.get("/guarded-public")).json() == {"admin": True}


def test_unknown_role_is_refused_when_the_handler_is_defined():
    with pytest.raises(ValueError, match="unknown role 1234"):
        require_roles(ADMIN, 1234)
    with pytest.raises(ValueError):
        require_roles()


def _start(settings, root):
    with pytest.raises(PluginError) as info:
        asyncio.run(create_app(settings, root))
    return str(info.value)


@pytest.mark.parametrize(
    "handlers, error",
    [
        ("from tornado.web import RequestHandler\nclass H(RequestHandler):\n    pass\n", "must derive from core.plugin.BaseHandler"),
        ("class H:\n    pass\n", "must derive from core.plugin.BaseHandler"),
        (
            "from core.plugin import BaseHandler, public\n@public\nclass Base(BaseHandler):\n    pass\nclass H(Base):\n    pass\n",
            "handler H inherits public access; mark it @public or @protected itself",
        ),
        ("from core.plugin import BaseHandler\nclass H(BaseHandler):\n    public = 1\n", "H.public must be True or False"),
    ],
)
def test_a_handler_that_is_not_explicitly_public_or_protected_is_never_mounted(tmp_path, turnstile_settings, handlers, error):
    folder = write_plugin(tmp_path / "plugins", "bad", "from .handlers import H\nroutes = [('/h', H)]\n", handlers=handlers)
    message = _start(turnstile_settings, tmp_path / "plugins")
    assert message.startswith(f"plugin 'bad' ({folder / '__init__.py'}): route '/h': ")
    assert error in message
