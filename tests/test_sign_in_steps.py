"""The sign-in extension point: a plugin steps in between "password checked" and "tokens issued", then ends the
sign-in itself with finish_sign_in; amr (RFC 8176) rides on the session through refresh; require_mfa asks for more."""

from __future__ import annotations

import pytest
from plugin_kit import write_plugin

from core.plugin import ACCESS
from core.pytest_plugin import DEFAULT_PASSWORD

GATE = '''
from core.plugin import APIError, BaseHandler, PluginContext, finish_sign_in, json_body, public, require_mfa

routes_seen = []


@public
class FinishHandler(BaseHandler):
    """A stand-in second factor: the word "open" finishes the sign-in it was given."""

    openapi = {"post": {"requestBody": json_body({"type": "object", "properties": {"who": {"type": "string", "maxLength": 64}, "word": {"type": "string", "maxLength": 64}}, "required": ["who", "word"], "additionalProperties": False})}}

    async def post(self):
        body = self.json_body()
        if body["word"] != "open":
            raise APIError(401, "Wrong word.")
        user = await self.services.accounts.user(body["who"])
        await finish_sign_in(self, user, ["pwd", "otp", "mfa"])


class SecretHandler(BaseHandler):
    @require_mfa
    async def get(self):
        self.send_json({"secret": 42})


def routes(plugin: PluginContext) -> list:
    async def step(sign_in):
        if sign_in.username.startswith("gated"):
            return {"mfaRequired": True, "methods": ["word"], "seen": list(sign_in.amr)}
        return None

    plugin.sign_in_step(step)
    return [(r"/gate/finish", FinishHandler), (r"/gate/secret", SecretHandler)]
'''


@pytest.fixture(scope="module")
def gate_plugin(tmp_path_factory):
    return write_plugin(tmp_path_factory.mktemp("gate"), "gate", GATE)


@pytest.fixture
def extra_plugins(gate_plugin):
    return {"gate": gate_plugin}


@pytest.mark.gen_test
async def test_a_user_no_step_claims_signs_in_as_before_with_amr_pwd(api, make_user, tokens):
    await make_user("plain")
    response = await api.post("/auth", json={"user": "plain", "pwd": DEFAULT_PASSWORD})
    assert response.code == 200 and "jwt" in api.cookies
    assert tokens.verify(ACCESS, response.json()["accessToken"])["amr"] == ["pwd"]


@pytest.mark.gen_test
async def test_a_step_answers_instead_of_tokens(api, make_user):
    await make_user("gated1")
    response = await api.post("/auth", json={"user": "gated1", "pwd": DEFAULT_PASSWORD})
    assert (response.code, response.json()) == (200, {"mfaRequired": True, "methods": ["word"], "seen": ["pwd"]})
    assert "jwt" not in api.cookies and not response.set_cookies()


@pytest.mark.gen_test
async def test_a_wrong_password_never_reaches_the_steps(api, make_user):
    await make_user("gated2")
    response = await api.post("/auth", json={"user": "gated2", "pwd": "not the password"})
    assert response.code == 401


@pytest.mark.gen_test
async def test_finish_sign_in_gives_what_auth_gives_and_refresh_keeps_amr(api, make_user, tokens):
    await make_user("gated3")
    response = await api.post("/gate/finish", json={"who": "gated3", "word": "open"})
    assert response.code == 200 and set(response.json()) == {"roles", "accessToken"} and "jwt" in api.cookies
    assert tokens.verify(ACCESS, response.json()["accessToken"])["amr"] == ["pwd", "otp", "mfa"]
    refreshed = await api.get("/refresh")
    assert refreshed.code == 200
    assert tokens.verify(ACCESS, refreshed.json()["accessToken"])["amr"] == ["pwd", "otp", "mfa"]
    again = await api.get("/refresh")  # the successor's successor too
    assert tokens.verify(ACCESS, again.json()["accessToken"])["amr"] == ["pwd", "otp", "mfa"]


@pytest.mark.gen_test
async def test_require_mfa_asks_a_password_only_token_to_step_up(api, make_user):
    await make_user("gated4")
    await make_user("plain2")
    plain = await api.post("/auth", json={"user": "plain2", "pwd": DEFAULT_PASSWORD}, cookies=False)
    refused = await api.get("/gate/secret", headers={"Authorization": f"Bearer {plain.json()['accessToken']}"})
    assert (refused.code, refused.json()) == (403, {"message": "This needs a sign-in with a second factor.", "mfaRequired": True})
    strong = await api.post("/gate/finish", json={"who": "gated4", "word": "open"}, cookies=False)
    allowed = await api.get("/gate/secret", headers={"Authorization": f"Bearer {strong.json()['accessToken']}"})
    assert (allowed.code, allowed.json()) == (200, {"secret": 42})


@pytest.mark.gen_test
async def test_a_refresh_of_a_session_from_before_amr_is_pwd(api, app, make_user, tokens):
    await make_user("old")
    await api.post("/auth", json={"user": "old", "pwd": DEFAULT_PASSWORD})
    sessions = app.services.store.collection("auth.sessions")
    for key, doc in await sessions.items():
        doc.pop("amr", None)
        await sessions.put(key, doc)
    refreshed = await api.get("/refresh")
    assert tokens.verify(ACCESS, refreshed.json()["accessToken"])["amr"] == ["pwd"]
