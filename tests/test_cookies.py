"""The refresh cookie in today's browsers: Partitioned (CHIPS), the plain-http switch, and the Origin check."""

import pytest


ALLOWED = "http://localhost:5500"


def attributes(header):
    parts = [p.strip() for p in header.split(";")]
    return parts[0], {p for p in parts[1:] if not p.startswith(("Max-Age=", "Expires="))}


async def cookies_of_a_session(api, make_user):
    """The Set-Cookie of login, of a refresh, and of logout."""
    await make_user("alice")
    login = await api.post("/auth", json={"user": "alice", "pwd": "correct horse battery staple"})
    refresh = await api.get("/refresh")
    logout = await api.get("/logout")
    return [r.set_cookies()[0] for r in (login, refresh, logout)]


@pytest.mark.gen_test
async def test_partitioned_by_default_and_the_clearing_cookie_matches(api, make_user, turnstile_settings):
    set_login, set_refresh, cleared = await cookies_of_a_session(api, make_user)
    expected = {"HttpOnly", "Path=/", "Secure", "SameSite=None", "Partitioned"}
    assert attributes(set_login)[1] == attributes(set_refresh)[1] == attributes(cleared)[1] == expected
    assert attributes(cleared)[0] == "jwt="
    assert "Max-Age" not in cleared and "Expires=Thu, 01 Jan 1970 00:00:00 GMT" in cleared
    assert f"Max-Age={turnstile_settings.refresh_ttl}" in set_login and f"Max-Age={turnstile_settings.refresh_ttl}" in set_refresh


@pytest.mark.gen_test
@pytest.mark.parametrize("turnstile_settings", [{"cookie_partitioned": False}], indirect=True)
async def test_partitioned_can_be_turned_off(api, make_user, turnstile_settings):
    for header in await cookies_of_a_session(api, make_user):
        assert attributes(header)[1] == {"HttpOnly", "Path=/", "Secure", "SameSite=None"}


@pytest.mark.gen_test
@pytest.mark.parametrize("turnstile_settings", [{"cookie_secure": False}], indirect=True)
async def test_plain_http_switch_uses_lax_without_secure(api, make_user, turnstile_settings):
    for header in await cookies_of_a_session(api, make_user):
        assert attributes(header)[1] == {"HttpOnly", "Path=/", "SameSite=Lax"}


def test_switches_are_read_from_the_environment():
    from core.config import Settings

    env = {"ACCESS_TOKEN_SECRET": "a" * 32, "REFRESH_TOKEN_SECRET": "b" * 32}
    assert Settings.from_env(env).cookie_partitioned and Settings.from_env(env).cookie_secure
    off = Settings.from_env({**env, "COOKIE_SECURE": "false", "COOKIE_PARTITIONED": "false"})
    assert not off.cookie_secure and not off.cookie_partitioned


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/refresh", "/logout"])
async def test_foreign_origin_is_refused_on_cookie_endpoints(api, make_user, path):
    await make_user("alice")
    await api.login("alice")
    token = api.cookies["jwt"]
    for origin in ("https://evil.example", "null"):
        response = await api.get(path, headers={"Origin": origin})
        assert response.code == 403
        assert "Access-Control-Allow-Origin" not in response.headers
        assert not response.set_cookies()
    assert api.cookies["jwt"] == token
    assert (await api.get("/refresh")).code == 200  # the session survived both attempts


@pytest.mark.gen_test
async def test_allowed_origin_and_no_origin_still_work(api, make_user):
    await make_user("alice")
    await api.login("alice")
    assert (await api.get("/refresh", headers={"Origin": ALLOWED})).code == 200
    assert (await api.get("/refresh")).code == 200
    assert (await api.get("/logout", headers={"Origin": ALLOWED})).code == 204
