"""CORS with credentials: what browsers need for fetch(..., {credentials: 'include'})."""

import pytest

ALLOWED = "http://localhost:5500"
DISALLOWED = "http://evil.example"


def assert_cors(response, origin):
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in response.headers.get_list("Vary")


def assert_no_cors(response):
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.gen_test
@pytest.mark.parametrize("origin", ["http://127.0.0.1:5500", "http://localhost:5500", "http://localhost:3500"])
async def test_default_allowed_origins_are_echoed(api, origin):
    response = await api.get("/", headers={"Origin": origin})
    assert response.code == 200
    assert_cors(response, origin)


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("GET", "/employees", None, 401),
        ("POST", "/auth", b"{", 400),
        ("POST", "/auth", b'{"user": "x", "pwd": "y"}', 401),
        ("GET", "/refresh", None, 401),
        ("GET", "/nowhere", None, 404),
        ("GET", "/logout", None, 204),
    ],
)
async def test_allowed_origin_gets_credentials_on_every_response(api, method, path, body, status):
    headers = {"Origin": ALLOWED, "Content-Type": "application/json"} if body else {"Origin": ALLOWED}
    response = await api.request(method, path, body=body, headers=headers)
    assert response.code == status
    assert_cors(response, ALLOWED)


@pytest.mark.gen_test
async def test_login_response_has_credentials_header(api, make_user):
    await make_user("alice")
    response = await api.post("/auth", json={"user": "alice", "pwd": "correct horse battery staple"}, headers={"Origin": ALLOWED})
    assert response.code == 200
    assert_cors(response, ALLOWED)


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/auth", "/employees", "/refresh", "/anything"])
async def test_preflight_from_allowed_origin(api, path):
    response = await api.options(
        path,
        headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type, authorization"},
    )
    assert response.code == 204
    assert_cors(response, ALLOWED)
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()


@pytest.mark.gen_test
async def test_disallowed_origin_gets_no_cors_headers(api):
    response = await api.get("/", headers={"Origin": DISALLOWED})
    assert response.code == 200
    assert_no_cors(response)


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/auth", "/employees", "/anything"])
async def test_preflight_from_disallowed_origin_is_refused_with_4xx(api, path):
    response = await api.options(path, headers={"Origin": DISALLOWED, "Access-Control-Request-Method": "POST"})
    assert response.code == 403
    assert_no_cors(response)
    assert response.json()["message"]


@pytest.mark.gen_test
async def test_configured_origins_replace_the_defaults(http_client, base_url, app):
    from core.pytest_plugin import ApiClient

    app.services.settings = app.services.settings.with_changes(allowed_origins=("https://app.example",))
    api = ApiClient(http_client, base_url)
    assert_cors(await api.get("/", headers={"Origin": "https://app.example"}), "https://app.example")
    assert_no_cors(await api.get("/", headers={"Origin": ALLOWED}))


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=1)
async def test_a_browser_may_read_retry_after(api, make_user):
    """A front end on another origin can only tell the user how long to wait if the header is exposed."""
    await make_user("ann")
    await api.post("/auth", json={"user": "ann", "pwd": "wrong password"}, headers={"Origin": ALLOWED})
    locked = await api.post("/auth", json={"user": "ann", "pwd": "wrong password"}, headers={"Origin": ALLOWED})
    assert locked.code == 429 and locked.headers["Retry-After"]
    assert locked.headers["Access-Control-Expose-Headers"] == "Retry-After"
    assert "Access-Control-Expose-Headers" not in (await api.get("/", headers={"Origin": DISALLOWED})).headers
