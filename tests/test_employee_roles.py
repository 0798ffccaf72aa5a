"""Who may write employees: any signed-in user by default, or the roles in TURNSTILE_EMPLOYEES_WRITE_ROLES."""

import pytest

from core.app import create_app
from core.plugin import PluginError
from core.pytest_plugin import make_settings

NEW = {"firstname": "Ada", "lastname": "Lovelace"}


editors_only = pytest.mark.parametrize(
    "turnstile_settings", [{"extra": {"TURNSTILE_EMPLOYEES_WRITE_ROLES": "Editor, Admin"}}], indirect=True
)


async def user_with(app, make_user, auth_headers, name, *roles):
    await make_user(name, roles=["User", *roles])
    return await auth_headers(name)


@pytest.mark.gen_test
async def test_by_default_any_signed_in_user_writes(api, headers):
    assert (await api.post("/employees", json=NEW, headers=headers)).code == 201
    assert (await api.put("/employees", json={"id": 1, "firstname": "D"}, headers=headers)).code == 200
    assert (await api.delete("/employees", json={"id": 1}, headers=headers)).code == 200


@pytest.mark.gen_test
@editors_only
async def test_write_roles_restrict_writes_not_reads(api, app, make_user, auth_headers, turnstile_settings):
    plain = await user_with(app, make_user, auth_headers, "plain")
    assert (await api.get("/employees", headers=plain)).code == 200
    assert (await api.get("/employees/1", headers=plain)).code == 200
    for method, body in (("POST", NEW), ("PUT", {"id": 1, "firstname": "D"}), ("DELETE", {"id": 1})):
        assert (await api.request(method, "/employees", json=body, headers=plain)).code == 403
    editor = await user_with(app, make_user, auth_headers, "ed", "Editor")
    assert (await api.post("/employees", json=NEW, headers=editor)).code == 201
    admin = await user_with(app, make_user, auth_headers, "boss", "Admin")
    assert (await api.delete("/employees", json={"id": 1}, headers=admin)).code == 200


@pytest.mark.gen_test
async def test_unknown_write_role_stops_start_up(tmp_path):
    settings = make_settings(tmp_path, extra={"TURNSTILE_EMPLOYEES_WRITE_ROLES": "Editr"})
    with pytest.raises(PluginError, match="TURNSTILE_EMPLOYEES_WRITE_ROLES: unknown role 'Editr'"):
        await create_app(settings)
