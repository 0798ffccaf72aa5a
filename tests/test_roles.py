"""Roles: User/Editor/Admin codes, roles in /auth and /refresh, and the core role guard on the access token's roles."""

import textwrap

import pytest

from core.base import BaseHandler
from core.roles import ROLES, parse_roles, require_roles, role_names, stored_roles
from core.signing import ACCESS

GUARDED_PLUGIN = '''
from core.base import BaseHandler
from core.roles import require_roles


class Guarded(BaseHandler):
    def get(self):
        self.finish({"ok": "read"})

    @require_roles("Editor", "Admin")
    async def post(self):
        self.finish({"ok": "write"})


class AdminOnly(BaseHandler):
    @require_roles("Admin")
    def get(self):
        self.finish({"ok": "admin"})


routes = [(r"/guarded", Guarded), (r"/admin-only", AdminOnly)]
'''


def test_role_codes_are_the_tutorials():
    assert ROLES == {"User": 2001, "Editor": 1984, "Admin": 5150}


def test_parse_roles_always_keeps_user_and_is_case_insensitive():
    """What the CLI accepts: names in any case or codes; every account keeps User."""
    assert parse_roles("admin, Editor") == [1984, 2001, 5150]
    assert parse_roles("5150") == [2001, 5150]
    assert parse_roles("") == [2001]
    assert role_names([5150, 2001, 1984]) == ["User", "Editor", "Admin"]
    with pytest.raises(ValueError, match="unknown role 'Root'"):
        parse_roles("Root")


def test_stored_roles_default_to_user():
    assert stored_roles({}) == [2001]
    assert stored_roles({"roles": [5150, 2001, "junk", 7]}) == [2001, 5150]


def test_guard_with_an_unknown_role_fails_when_the_handler_is_defined():
    with pytest.raises(ValueError, match="unknown role"):

        class Typo(BaseHandler):
            @require_roles("Admn")
            def get(self):
                pass


@pytest.mark.gen_test
async def test_new_user_gets_user_role_in_auth_and_refresh(api, app, make_user):
    await make_user("alice")
    response = await api.post("/auth", json={"user": "alice", "pwd": "correct horse battery staple"})
    assert response.code == 200
    assert set(response.json()) == {"roles", "accessToken"} and response.json()["roles"] == [2001]
    assert (await app.services.store.collection("auth.users").get("alice"))["roles"] == [2001]
    refreshed = await api.get("/refresh")
    assert set(refreshed.json()) == {"roles", "accessToken"} and refreshed.json()["roles"] == [2001]


@pytest.mark.gen_test
async def test_refresh_picks_up_changed_roles(api, app, make_user):
    await make_user("alice")
    await api.login("alice")
    await app.services.accounts.set_roles("alice", [2001, 5150])
    assert (await api.get("/refresh")).json()["roles"] == [2001, 5150]


class TestGuardInAPlugin:
    @pytest.fixture
    def plugins_dir(self, tmp_path):
        folder = tmp_path / "plugins" / "guarded"
        folder.mkdir(parents=True)
        (folder / "__init__.py").write_text(textwrap.dedent(GUARDED_PLUGIN))
        return folder.parent

    @staticmethod
    def bearer(app, *roles):
        token = app.services.tokens.issue(ACCESS, "someone", roles=list(roles))
        return {"Authorization": f"Bearer {token}"}

    @pytest.mark.gen_test
    async def test_method_guard(self, api, app):
        assert (await api.get("/guarded", headers=self.bearer(app, 2001))).code == 200
        refused = await api.post("/guarded", headers=self.bearer(app, 2001))
        assert refused.code == 403 and refused.json()["message"]
        assert (await api.post("/guarded", headers=self.bearer(app, 2001, 1984))).code == 200
        assert (await api.post("/guarded", headers=self.bearer(app, 5150))).code == 200
        assert (await api.post("/guarded")).code == 401

    @pytest.mark.gen_test
    async def test_admin_guard(self, api, app):
        assert (await api.get("/admin-only", headers=self.bearer(app, 2001, 1984))).code == 403
        assert (await api.get("/admin-only", headers=self.bearer(app))).code == 403
        assert (await api.get("/admin-only", headers=self.bearer(app, 5150))).json() == {"ok": "admin"}
        assert (await api.get("/admin-only")).code == 401

    @pytest.mark.gen_test
    async def test_token_without_roles_claim_is_refused(self, api, tokens):
        bare = tokens.issue(ACCESS, "x")
        assert "roles" not in tokens.verify(ACCESS, bare)
        assert (await api.get("/admin-only", headers={"Authorization": f"Bearer {bare}"})).code == 403

    @pytest.mark.gen_test
    async def test_token_without_roles_claim_uses_the_stored_roles(self, api, app, tokens):
        await app.services.accounts.create_user("boss", "not a hash", [5150])
        bare = tokens.issue(ACCESS, "boss")
        assert (await api.get("/admin-only", headers={"Authorization": f"Bearer {bare}"})).json() == {"ok": "admin"}
        await app.services.accounts.set_roles("boss", [2001])
        assert (await api.get("/admin-only", headers={"Authorization": f"Bearer {bare}"})).code == 403

    @pytest.mark.gen_test
    async def test_preflight_is_not_guarded(self, api):
        response = await api.options("/admin-only", headers={"Origin": "http://localhost:5500", "Access-Control-Request-Method": "GET"})
        assert response.code == 204


@pytest.mark.parametrize("text, codes", [("Editor,Admin", [1984, 5150]), ("editor, ADMIN", [1984, 5150]), ("1984,5150", [1984, 5150])])
def test_role_settings_take_names_in_any_case_or_codes(text, codes):
    from core.roles import role_codes

    assert role_codes(text.split(",")) == codes


@pytest.mark.parametrize("bad", ["Root", "2000", "", "５１５０"])
def test_unknown_roles_are_refused(bad):
    from core.roles import role_codes

    with pytest.raises(ValueError, match="unknown role"):
        role_codes([bad])
