"""Input a careful server refuses: bodies not sent as JSON, repeated names, and usernames differing only in case."""

import timeit

import orjson
import pytest

from core.bodies import refuse_duplicates
from core.errors import APIError
from core.pytest_plugin import DEFAULT_PASSWORD

CREDENTIALS = b'{"user": "alice", "pwd": "' + DEFAULT_PASSWORD.encode() + b'"}'


def message(response, status):
    assert response.code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()["message"]


# -- Content-Type ------------------------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/register", "/auth"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_not_sent_as_json_is_415(app, api, path, content_type):
    """What a cross-site page can post without a preflight never reaches the handler."""
    headers = {"Content-Type": content_type} if content_type else {}
    if content_type is None:  # an empty one (the client would add a form type in its place; see below for none)
        headers["Content-Type"] = ""
    response = await api.post(path, body=CREDENTIALS, headers=headers)
    assert message(response, 415) == "Content-Type must be application/json."
    assert not await app.services.accounts.exists("alice")


@pytest.mark.gen_test
async def test_a_protected_body_not_sent_as_json_is_415(api, headers):
    body = b'{"firstname": "A", "lastname": "B"}'
    response = await api.post("/employees", body=body, headers={**headers, "Content-Type": "text/plain"})
    assert message(response, 415) == "Content-Type must be application/json."


@pytest.mark.gen_test
@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"])
async def test_json_with_or_without_charset_is_accepted(api, content_type):
    response = await api.post("/register", body=CREDENTIALS, headers={"Content-Type": content_type})
    assert response.code == 201, response.text


@pytest.mark.gen_test
async def test_an_empty_body_needs_no_content_type(api):
    """No body is no cross-site payload: the declared message for missing fields answers it."""
    response = await api.post("/register", body=b"", headers={"Content-Type": "text/plain"})
    assert message(response, 400) == "Username and password are required."


# -- duplicate names -----------------------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "body, field",
    [
        (b'{"user": "alice", "user": "admin", "pwd": "a long password"}', "user"),
        (b'{"user": "alice", "pwd": "a:b:c:d long", "pwd": "other password"}', "pwd"),
        (b'{"user" : "alice", "pwd":"a long password","user":"bob"}', "user"),
    ],
)
async def test_a_repeated_name_is_400_naming_it(app, api, body, field):
    response = await api.post("/register", body=body, headers={"Content-Type": "application/json"})
    assert message(response, 400) == f"Field '{field}' appears more than once."
    assert await app.services.accounts.users() == []


@pytest.mark.gen_test
async def test_a_repeated_name_in_a_nested_object_is_refused(api, headers):
    body = b'{"firstname": "A", "lastname": "B", "x": {"k": 1, "k": 2}}'
    response = await api.post("/employees", body=body, headers={**headers, "Content-Type": "application/json"})
    assert message(response, 400) == "Field 'k' appears more than once."


@pytest.mark.gen_test
async def test_colons_inside_strings_are_no_duplicates(api):
    body = b'{"user": "alice", "pwd": "http://a:b@c:d  long"}'
    assert (await api.post("/register", body=body, headers={"Content-Type": "application/json"})).code == 201


@pytest.mark.parametrize(
    "raw", [b'{"a": 1, "a": 2}', b'{"a": {"b": 1, "b": 1}}', b'{"a": [{"x": ":", "x": 2}]}', b'[{"q": 1, "q": 1}]']
)
def test_refuse_duplicates_finds_them_anywhere(raw):
    with pytest.raises(APIError) as caught:
        refuse_duplicates(raw, orjson.loads(raw))
    assert caught.value.status_code == 400


def test_the_duplicate_check_costs_little_on_a_login_body():
    """One count of the bytes for a body with no colon inside its strings."""
    body = orjson.loads(CREDENTIALS)
    check = min(timeit.repeat(lambda: refuse_duplicates(CREDENTIALS, body), number=2000, repeat=5)) / 2000
    parse = min(timeit.repeat(lambda: orjson.loads(CREDENTIALS), number=2000, repeat=5)) / 2000
    assert check < 3 * parse + 1e-6, (check, parse)


# -- usernames are case-insensitive ------------------------------------------------------


@pytest.mark.gen_test
async def test_usernames_differing_in_case_are_one_user(app, api):
    created = await api.post("/register", json={"user": "ATK1", "pwd": DEFAULT_PASSWORD})
    assert created.code == 201 and created.json() == {"success": "New user atk1 created!"}
    for name in ("atk1", "Atk1", "ATK1"):
        assert (await api.post("/register", json={"user": name, "pwd": DEFAULT_PASSWORD})).code == 409
    assert [u["username"] for u in await app.services.accounts.users()] == ["atk1"]


@pytest.mark.gen_test
async def test_login_in_any_case_is_the_stored_user(app, api):
    await api.post("/register", json={"user": "Mixed.Case", "pwd": DEFAULT_PASSWORD})
    for name in ("mixed.case", "MIXED.CASE"):
        response = await api.post("/auth", json={"user": name, "pwd": DEFAULT_PASSWORD})
        assert response.code == 200, response.text
        assert app.services.tokens.verify("access", response.json()["accessToken"])["username"] == "mixed.case"
    api.use_token(response.json()["accessToken"])
    assert (await api.get("/employees")).code == 200


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=2)
async def test_changing_case_does_not_escape_the_login_throttle(api, make_user):
    await make_user("victim")
    for name in ("victim", "VICTIM"):
        assert (await api.post("/auth", json={"user": name, "pwd": "wrong password!"})).code == 401
    response = await api.post("/auth", json={"user": "Victim", "pwd": "wrong password!"})
    assert response.code == 429


@pytest.mark.gen_test
async def test_a_user_stored_with_capitals_by_an_earlier_build_still_logs_in(app, api):
    hashed = await app.services.passwords.hash(DEFAULT_PASSWORD)
    await app.services.store.collection("auth.users").insert(
        {"username": "Legacy", "password": hashed, "roles": [2001], "created": 0}, key="Legacy"
    )
    assert (await api.post("/auth", json={"user": "Legacy", "pwd": DEFAULT_PASSWORD})).code == 200
    assert (await api.post("/register", json={"user": "Legacy", "pwd": DEFAULT_PASSWORD})).code == 409
    assert await app.services.accounts.set_roles("Legacy", [2001, 1984])
    assert (await app.services.accounts.user("Legacy"))["roles"] == [2001, 1984]


@pytest.mark.gen_test
async def test_a_body_with_no_content_type_header_at_all_is_415(app, api, base_url):
    """Sent on a bare socket: an HTTP client library would add a form type of its own."""
    import asyncio
    from urllib.parse import urlsplit

    where = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    writer.write(
        b"POST /register HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(CREDENTIALS) + CREDENTIALS
    )
    reply = await reader.read()
    writer.close()
    assert reply.startswith(b"HTTP/1.1 415 "), reply[:200]
    assert reply.endswith(b'{"message": "Content-Type must be application/json."}')
    assert not await app.services.accounts.exists("alice")


# -- what the declared schemas already refuse ------------------------------------------------


@pytest.mark.gen_test
async def test_a_900_kb_name_is_400_and_nothing_is_stored(app, api, headers):
    """Under MAX_BODY_SIZE (1 MiB), so the declared maxLength is what refuses it."""
    huge = "x" * 900_000
    created = await api.post("/employees", json={"firstname": huge, "lastname": "B"}, headers=headers)
    assert message(created, 400) == "Field 'firstname' must be at most 100 characters."
    changed = await api.put("/employees", json={"id": 1, "lastname": huge}, headers=headers)
    assert message(changed, 400) == "Field 'lastname' must be at most 100 characters."
    assert (await api.post("/register", json={"user": huge, "pwd": DEFAULT_PASSWORD})).code == 400
    assert all(len(e["firstname"]) <= 100 and len(e["lastname"]) <= 100 for e in (await api.get("/employees", headers=headers)).json())


@pytest.mark.gen_test
async def test_a_string_id_on_put_is_400_and_changes_nothing(api, headers):
    before = (await api.get("/employees/1", headers=headers)).json()
    response = await api.put("/employees", json={"id": "1", "firstname": "Mallory"}, headers=headers)
    assert response.code == 400
    assert (await api.get("/employees/1", headers=headers)).json() == before
