"""What caches may keep: API answers carry tokens or per-user data, so nothing stores them; public pages may be cached."""

import email.utils
import time

import pytest


def assert_not_stored(response):
    assert response.headers["Cache-Control"] == "no-store"
    assert "Etag" not in response.headers


@pytest.mark.gen_test
async def test_token_responses_are_not_stored(api, make_user):
    await make_user("alice")
    login = await api.post("/auth", json={"user": "alice", "pwd": "correct horse battery staple"})
    assert login.code == 200 and "accessToken" in login.json()
    assert_not_stored(login)
    refresh = await api.get("/refresh")
    assert refresh.code == 200 and "accessToken" in refresh.json()
    assert_not_stored(refresh)


@pytest.mark.gen_test
async def test_protected_data_and_errors_are_not_stored(api, auth_headers, make_user):
    await make_user("bob")
    rows = await api.get("/employees", headers=await auth_headers("bob"))
    assert rows.code == 200
    assert_not_stored(rows)
    # A conditional request cannot turn it into a 304 either.
    again = await api.get("/employees", headers={**await auth_headers("bob"), "If-None-Match": "*"})
    assert again.code == 200 and again.json() == rows.json()
    assert_not_stored(await api.get("/employees"))  # 401


@pytest.mark.gen_test
async def test_public_pages_may_be_cached_and_revalidated(api):
    page = await api.get("/")
    assert page.code == 200
    assert "Cache-Control" not in page.headers
    etag = page.headers["Etag"]
    revalidated = await api.get("/", headers={"If-None-Match": etag})
    assert revalidated.code == 304


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/employees", "/", "/no-such-page"])
async def test_date_is_current_and_no_server_banner(api, path):
    response = await api.get(path)
    assert "Server" not in response.headers  # it would name the Tornado version
    sent = email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()
    assert abs(sent - time.time()) < 5
