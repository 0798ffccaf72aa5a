"""The pytest fixtures plugin authors use: users with roles, auth headers, a logged-in client."""

import pytest

from core.plugin import ADMIN, EDITOR


@pytest.mark.gen_test
async def test_make_user_sets_roles_in_the_store(app, make_user):
    await make_user("ed", roles=["Editor", ADMIN])
    record = app.services.store.collection("auth.users").get("ed")
    assert record["roles"] == [EDITOR, ADMIN]


@pytest.mark.gen_test
async def test_make_user_refuses_unknown_roles(make_user):
    with pytest.raises(ValueError, match="unknown role"):
        await make_user("ed", roles=["Emperor"])


@pytest.mark.gen_test
async def test_auth_headers_open_a_protected_route(api, make_user, auth_headers):
    await make_user("alice")
    assert (await api.get("/employees", headers=await auth_headers("alice"))).code == 200


@pytest.mark.gen_test
async def test_logged_in_client_sends_its_token_and_keeps_the_refresh_cookie(logged_in):
    client = await logged_in("alice")
    assert (await client.get("/employees")).code == 200
    assert "jwt" in client.cookies
    first = client.token
    assert (await client.refresh()).code == 200
    assert client.token and (await client.get("/employees")).code == 200
    assert (await client.get("/logout")).code == 204
    assert "jwt" not in client.cookies
    assert (await client.refresh()).code == 401
    assert first


@pytest.mark.gen_test
async def test_logged_in_reuses_an_existing_user_and_updates_roles(app, logged_in, make_user):
    await make_user("alice")
    await logged_in("alice", roles=[ADMIN])
    assert app.services.store.collection("auth.users").get("alice")["roles"] == [ADMIN]
