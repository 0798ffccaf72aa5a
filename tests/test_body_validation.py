"""Request bodies are checked by the schema each route declares in /openapi.json, and by nothing else."""

import pytest

from core.bodies import MESSAGE_KEY, compile_body
from core.errors import APIError
from core.plugin import BaseHandler, protected
from plugins.auth.handlers import AuthHandler, PasswordHandler, RegisterHandler
from plugins.employees.handlers import EmployeesHandler
from plugins.users.handlers import UsersHandler


def message(response, status=400):
    assert response.code == status, response.text
    return response.json()["message"]


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/register", "/auth"])
async def test_unknown_field_is_400_naming_it(api, path):
    response = await api.post(path, json={"user": "alice", "pwd": "a good password", "admin": True})
    assert message(response) == "Unknown field 'admin'."


@pytest.mark.gen_test
async def test_unknown_field_on_a_protected_route(api, headers):
    response = await api.post("/employees", json={"firstname": "A", "lastname": "B", "salary": 1}, headers=headers)
    assert message(response) == "Unknown field 'salary'."


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "body, expected",
    [
        ({"id": "1"}, "Employee ID must be a whole number."),
        ({"id": 1, "firstname": 7}, "Field 'firstname' must be a string."),
        ({"id": 1, "lastname": None}, "Field 'lastname' must be a string."),
    ],
)
async def test_wrong_type_is_400_naming_the_field(api, headers, body, expected):
    response = await api.put("/employees", json=body, headers=headers)
    assert message(response) == expected
    assert (await api.get("/employees/1", headers=headers)).json()["firstname"] == "Dave"  # nothing changed


@pytest.mark.gen_test
async def test_wrong_type_in_credentials_names_the_field(api):
    assert message(await api.post("/auth", json={"user": "alice", "pwd": 12345678})) == "Field 'pwd' must be a string."


@pytest.mark.gen_test
async def test_over_long_strings_are_400_naming_the_field(api, headers):
    response = await api.post("/employees", json={"firstname": "A" * 101, "lastname": "B"}, headers=headers)
    assert message(response) == "Field 'firstname' must be at most 100 characters."
    admin = await api.delete("/users", json={"user": "x" * 65}, headers=headers)
    assert admin.code == 403  # the role guard runs first: no body check for those who may not call it


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/register", "/auth"])
async def test_over_long_password_has_the_declared_message(api, path):
    assert message(await api.post(path, json={"user": "alice", "pwd": "p" * 73})) == "Password must be at most 72 bytes."


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/register", "/auth"])
@pytest.mark.parametrize("body", [{}, {"user": "alice"}, {"pwd": "a good password"}, {"user": " ", "pwd": "x"}, {"user": "a", "pwd": ""}])
async def test_missing_credentials_get_the_declared_message(api, path, body):
    assert message(await api.post(path, json=body)) == "Username and password are required."


@pytest.mark.gen_test
async def test_missing_fields_get_the_declared_or_a_naming_message(api, headers):
    assert message(await api.post("/employees", json={"firstname": "A"}, headers=headers)) == "First and last names are required."
    assert message(await api.delete("/employees", json={}, headers=headers)) == "Employee ID required."
    assert message(await api.post("/password", json={"pwd": "x"}, headers=headers)) == "Current and new password are required."


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "body, expected",
    [(b"{oops", "Request body must be valid JSON."), (b"[1]", "Request body must be a JSON object."), (b"null", "Request body must be a JSON object.")],
)
async def test_invalid_json_and_non_objects_stay_clear_400s(api, body, expected):
    response = await api.post("/auth", body=body, headers={"Content-Type": "application/json"})
    assert message(response) == expected


@pytest.mark.gen_test
async def test_valid_bodies_pass(api, headers):
    assert (await api.post("/register", json={"user": " alice2 ", "pwd": "a good password"})).code == 201
    assert (await api.post("/auth", json={"user": "alice2", "pwd": "a good password"})).code == 200
    assert (await api.put("/employees", json={"id": 1, "lastname": "Grey"}, headers=headers)).code == 200


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "path, method, handler",
    [
        ("/register", "post", RegisterHandler),
        ("/auth", "post", AuthHandler),
        ("/password", "post", PasswordHandler),
        ("/employees", "post", EmployeesHandler),
        ("/employees", "put", EmployeesHandler),
        ("/employees", "delete", EmployeesHandler),
        ("/users", "delete", UsersHandler),
    ],
)
async def test_openapi_shows_the_schema_that_validates(api, path, method, handler):
    document = (await api.get("/openapi.json")).json()
    published = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    check = handler.body_checks[method.upper()]
    assert published == check.schema
    assert published["additionalProperties"] is False


def test_every_declared_body_is_compiled_and_every_compiled_one_declared(app):
    """No route can declare a body that goes unchecked, or check one it does not publish."""
    seen = 0
    for rule in app.wildcard_router.rules:
        handler = rule.target
        if not (isinstance(handler, type) and issubclass(handler, BaseHandler)):
            continue
        declared = {m.upper() for m, op in handler.openapi.items() if "requestBody" in op}
        assert set(handler.body_checks) == declared, handler
        seen += len(declared)
    assert seen >= 7


def test_a_declared_message_wins_for_its_keyword_only():
    check = compile_body(
        {
            "type": "object",
            "properties": {"n": {"type": "string", "maxLength": 2, MESSAGE_KEY: {"maxLength": "Too long, n."}}},
            "required": ["n"],
            MESSAGE_KEY: {"required": "Need n."},
        }
    )
    assert check({"n": "ab"}) == {"n": "ab"}
    for body, expected in [({}, "Need n."), ({"n": "abc"}, "Too long, n."), ({"n": 1}, "Field 'n' must be a string.")]:
        with pytest.raises(APIError) as raised:
            check(body)
        assert (raised.value.status_code, raised.value.message) == (400, expected)


def test_nested_fields_are_named_by_their_path():
    check = compile_body(
        {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "integer"}}, "additionalProperties": False}}}
    )
    for body, expected in [({"a": {"b": "x"}}, "Field 'a.b' must be an integer."), ({"a": {"c": 1}}, "Unknown field 'a.c'.")]:
        with pytest.raises(APIError) as raised:
            check(body)
        assert raised.value.message == expected


def test_a_handler_gets_its_check_when_the_class_is_defined():
    @protected
    class Handler(BaseHandler):
        openapi = {"post": {"requestBody": {"content": {"application/json": {"schema": {"type": "object", "required": ["x"]}}}}}}

        async def post(self) -> None: ...

    assert set(Handler.body_checks) == {"POST"}
    with pytest.raises(APIError) as raised:
        Handler.body_checks["POST"]({})
    assert raised.value.message == "Field 'x' is required."
