"""The users plugin: Admin only, and it never shows password hashes or token data."""

import pytest

from core.pytest_plugin import ApiClient
from core.roles import ADMIN, EDITOR, USER
from core.security import token_digest


@pytest.fixture
def accounts(app):
    return app.services.accounts


@pytest.fixture
def admin(io_loop, make_user, auth_headers, accounts):
    async def make():
        await make_user("root", roles=[USER, ADMIN])
        return await auth_headers("root")

    return io_loop.run_sync(make)


@pytest.mark.gen_test
async def test_users_needs_admin(api, headers):
    assert (await api.get("/users")).code == 401
    for method, path, body in [("GET", "/users", None), ("GET", "/users/alice", None), ("DELETE", "/users", {"user": "alice"})]:
        response = await api.request(method, path, json=body, headers=headers)
        assert response.code == 403, (method, path)


@pytest.mark.gen_test
async def test_editor_is_not_admin(api, make_user, auth_headers, accounts):
    await make_user("ed", roles=[USER, EDITOR])
    assert (await api.get("/users", headers=await auth_headers("ed"))).code == 403


@pytest.mark.gen_test
async def test_list_and_show_without_secrets(api, app, admin, make_user):
    await make_user("alice")
    user_client = ApiClient(api.http, api.base_url)
    await user_client.login("alice")
    listing = await api.get("/users", headers=admin)
    assert listing.code == 200
    assert [(u["username"], u["roles"]) for u in listing.json()] == [("alice", [2001]), ("root", [2001, 5150])]
    assert {u["username"]: u["sessions"] for u in listing.json()} == {"alice": 1, "root": 1}
    one = await api.get("/users/alice", headers=admin)
    assert one.code == 200 and one.json()["username"] == "alice" and one.json()["roles"] == [2001]
    stored = app.services.store
    secrets = [u["password"] for u in await stored.collection("auth.users").all()]
    secrets += [user_client.cookies["jwt"], token_digest(user_client.cookies["jwt"])]
    for body in (listing.text, one.text):
        assert "password" not in body and "$2b$" not in body
        for secret in secrets:
            assert secret not in body


@pytest.mark.gen_test
async def test_unknown_user_is_404(api, admin):
    response = await api.get("/users/nobody", headers=admin)
    assert response.code == 404 and response.json()["message"]


@pytest.mark.gen_test
async def test_delete_removes_user_and_ends_sessions(api, admin, make_user, accounts):
    await make_user("alice")
    alice = ApiClient(api.http, api.base_url)
    await alice.login("alice")
    response = await api.delete("/users", json={"user": "alice"}, headers=admin)
    assert response.code == 200
    assert await accounts.user("alice") is None
    assert (await alice.get("/refresh")).code == 403
    assert (await alice.post("/auth", json={"user": "alice", "pwd": "correct horse battery staple"})).code == 401
    assert [u["username"] for u in (await api.get("/users", headers=admin)).json()] == ["root"]


@pytest.mark.gen_test
@pytest.mark.parametrize("body, status", [({}, 400), ({"user": 5}, 400), ({"user": "nobody"}, 404)])
async def test_delete_refusals(api, admin, body, status):
    response = await api.delete("/users", json=body, headers=admin)
    assert response.code == status and response.json()["message"]
