"""Refresh token rotation with reuse detection (RFC 9700 §4.14.2), its grace window, and its races."""

import asyncio
import time

import pytest

from core.security import token_digest


def sessions_of(app):
    return app.services.store.collection("auth.sessions")


async def logged_in(api, make_user):
    await make_user("alice")
    await api.login("alice")
    return api.cookies["jwt"]


def cookie_value(response):
    [header] = response.set_cookies()
    return header.split(";")[0].partition("=")[2]


async def refresh_with(api, token):
    return await api.get("/refresh", headers={"Cookie": f"jwt={token}"}, cookies=False)


@pytest.mark.gen_test
async def test_refresh_sets_a_new_cookie_and_retires_the_old_token(api, app, make_user, turnstile_settings):
    old = await logged_in(api, make_user)
    response = await api.get("/refresh")
    assert response.code == 200
    new = cookie_value(response)
    assert new and new != old
    assert f"Max-Age={turnstile_settings.refresh_ttl}" in response.set_cookies()[0]
    sessions = sessions_of(app)
    retired, current = await sessions.get(token_digest(old)), await sessions.get(token_digest(new))
    assert retired["retired"] is not None and retired["successor"] == token_digest(new)
    assert current["retired"] is None and current["family"] == retired["family"]
    assert (await refresh_with(api, new)).code == 200


@pytest.mark.gen_test
@pytest.mark.settings(refresh_reuse_grace=0)
async def test_reused_token_revokes_the_whole_family(api, app, make_user, turnstile_settings):
    old = await logged_in(api, make_user)
    assert (await api.get("/refresh")).code == 200
    newest = api.cookies["jwt"]
    reuse = await refresh_with(api, old)
    assert reuse.code == 403
    assert reuse.set_cookies() and reuse.set_cookies()[0].startswith("jwt=;")  # the cookie is cleared too
    assert (await refresh_with(api, newest)).code == 403
    assert await sessions_of(app).count() == 0


@pytest.mark.gen_test
@pytest.mark.settings(refresh_reuse_grace=0)
async def test_reuse_leaves_other_sessions_alone(http_client, base_url, api, make_user, turnstile_settings):
    from core.pytest_plugin import ApiClient

    old = await logged_in(api, make_user)
    other_device = ApiClient(http_client, base_url)
    await other_device.login("alice")
    await api.get("/refresh")
    assert (await refresh_with(api, old)).code == 403
    assert (await other_device.get("/refresh")).code == 200


@pytest.mark.gen_test
async def test_inside_the_grace_window_a_retired_token_is_answered_without_revoking(api, make_user, turnstile_settings):
    assert turnstile_settings.refresh_reuse_grace == 10  # the documented default
    old = await logged_in(api, make_user)
    assert (await api.get("/refresh")).code == 200
    newest = api.cookies["jwt"]
    late = await refresh_with(api, old)
    assert late.code == 200
    assert set(late.json()) == {"roles", "accessToken"}
    assert late.set_cookies() == []  # no second successor: the family does not fork
    assert (await refresh_with(api, newest)).code == 200


@pytest.mark.gen_test
async def test_after_the_grace_window_a_retired_token_revokes_the_family(api, app, make_user):
    old = await logged_in(api, make_user)
    assert (await api.get("/refresh")).code == 200
    newest = api.cookies["jwt"]
    # Backdate the retirement instead of sleeping through the window.
    await sessions_of(app).update(token_digest(old), {"retired": int(time.time()) - 11})
    assert (await refresh_with(api, old)).code == 403
    assert (await refresh_with(api, newest)).code == 403


@pytest.mark.gen_test
async def test_concurrent_refreshes_inside_the_grace_window_both_succeed(api, app, make_user):
    """Two tabs refreshing at once: both get an access token, exactly one successor exists."""
    token = await logged_in(api, make_user)
    responses = await asyncio.gather(*(refresh_with(api, token) for _ in range(8)))
    assert [r.code for r in responses] == [200] * 8
    issued = [cookie_value(r) for r in responses if r.set_cookies()]
    assert len(issued) == 1
    live = await sessions_of(app).find(retired=None)
    assert len(live) == 1
    assert (await refresh_with(api, issued[0])).code == 200


@pytest.mark.gen_test
@pytest.mark.settings(refresh_reuse_grace=0)
async def test_concurrent_refreshes_without_grace_revoke_the_family(api, app, make_user, turnstile_settings):
    """With REFRESH_REUSE_GRACE=0 the second of two simultaneous refreshes is a reuse."""
    token = await logged_in(api, make_user)
    first, second = await asyncio.gather(refresh_with(api, token), refresh_with(api, token))
    assert sorted([first.code, second.code]) == [200, 403]
    winner = first if first.code == 200 else second
    assert (await refresh_with(api, cookie_value(winner))).code == 403
    assert await sessions_of(app).count() == 0


@pytest.mark.gen_test
async def test_chained_rotation_keeps_working(api, make_user):
    await logged_in(api, make_user)
    seen = {api.cookies["jwt"]}
    for _ in range(5):
        assert (await api.get("/refresh")).code == 200
        seen.add(api.cookies["jwt"])
    assert len(seen) == 6
