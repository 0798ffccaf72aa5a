"""POST /register: validation, duplicates, success, and bcrypt-hashed storage."""

import pytest

from core.pytest_plugin import DEFAULT_PASSWORD


@pytest.mark.gen_test
@pytest.mark.parametrize("body", [{}, {"user": "alice"}, {"pwd": "secret-pass"}, {"user": "", "pwd": "x"}, {"user": "  ", "pwd": "x"}])
async def test_missing_fields_are_400(api, body):
    response = await api.post("/register", json=body)
    assert response.code == 400
    assert response.json() == {"message": "Username and password are required."}


@pytest.mark.gen_test
async def test_success_is_201_and_password_is_bcrypt_hashed(api, app):
    response = await api.post("/register", json={"user": "alice", "pwd": DEFAULT_PASSWORD})
    assert response.code == 201
    assert response.json() == {"success": "New user alice created!"}
    stored = await app.services.store.collection("auth.users").get("alice")
    assert stored["password"].startswith("$2b$")
    assert DEFAULT_PASSWORD not in str(stored)


@pytest.mark.gen_test
async def test_duplicate_is_409(api, make_user):
    await make_user("alice")
    response = await api.post("/register", json={"user": "alice", "pwd": "another-password"})
    assert response.code == 409
    assert "message" in response.json()


@pytest.mark.gen_test
async def test_new_user_can_log_in_without_restart(api):
    """The tutorial's bug: each controller kept its own copy of users.json."""
    await api.post("/register", json={"user": "fresh", "pwd": DEFAULT_PASSWORD})
    response = await api.post("/auth", json={"user": "fresh", "pwd": DEFAULT_PASSWORD})
    assert response.code == 200
