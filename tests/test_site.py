"""The root page, static files and the tutorial's Accept-negotiated 404."""

import pytest


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/", "/index", "/index.html"])
async def test_index_page(api, path):
    response = await api.get(path)
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<h1>Turnstile</h1>" in response.text


@pytest.mark.gen_test
async def test_static_file_from_public_folder(api):
    response = await api.get("/css/style.css")
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("text/css")
    assert "body" in response.text


@pytest.mark.gen_test
async def test_static_path_traversal_is_not_served(api):
    response = await api.get("/css/../../handlers.py", headers={"Accept": "text/plain"})
    assert response.code in (403, 404)
    assert "import" not in response.text


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "accept, content_type, body",
    [
        ("text/html", "text/html", "404 Not Found</h1>"),
        ("*/*", "text/html", "404 Not Found</h1>"),
        (None, "text/html", "404 Not Found</h1>"),
        ("application/json", "application/json", '{"error": "404 Not Found"}'),
        ("text/plain", "text/plain", "404 Not Found"),
        ("text/html;q=0, application/json", "application/json", '{"error": "404 Not Found"}'),
    ],
)
async def test_unknown_path_404_is_negotiated(api, accept, content_type, body):
    headers = {"Accept": accept} if accept else {}
    response = await api.get("/no/such/page", headers=headers)
    assert response.code == 404
    assert response.headers["Content-Type"].startswith(content_type)
    assert body in response.text
