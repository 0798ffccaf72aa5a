"""A path no route matches: 401 without a token and 404 with one for writes (as the Express original), the 404 page for reads."""

from pathlib import Path

import pytest

from tests.plugin_kit import link_project_plugins

WRITES = ["POST", "PUT", "PATCH", "DELETE"]


@pytest.mark.gen_test
@pytest.mark.parametrize("method", WRITES)
@pytest.mark.parametrize("path", ["/nowhere", "/css/nowhere.css", "/employees/1/x"])
async def test_a_write_to_an_unknown_path_without_a_token_is_401(app, api, method, path):
    response = await api.request(method, path, body=b"")
    assert response.code == 401, response.text
    assert response.json() == {"message": "Missing bearer token."}


@pytest.mark.gen_test
@pytest.mark.parametrize("method", WRITES)
async def test_a_write_to_an_unknown_path_with_a_bad_token_is_403(app, api, method):
    response = await api.request(method, "/nowhere", body=b"", headers={"Authorization": "Bearer not-a-token"})
    assert response.code == 403


@pytest.mark.gen_test
@pytest.mark.parametrize("method", WRITES)
async def test_a_write_to_an_unknown_path_with_a_token_is_404(app, api, headers, method):
    response = await api.request(method, "/nowhere", body=b"", headers={**headers, "Accept": "application/json"})
    assert response.code == 404, response.text
    assert response.json() == {"error": "404 Not Found"}


@pytest.mark.gen_test
async def test_a_read_of_an_unknown_path_stays_the_public_404_page(app, api):
    response = await api.get("/nowhere", headers={"Accept": "text/html"})
    assert response.code == 404 and "<html" in response.text.lower()
    assert (await api.request("HEAD", "/nowhere")).code == 404


class TestWithoutTheSitePlugin:
    """The core's own fallback answers the same when no plugin declares a ``default_handler``."""

    @pytest.fixture
    def plugins_dir(self, tmp_path: Path) -> Path:
        root = tmp_path / "plugins"
        link_project_plugins(root, "auth", "employees")
        return root

    @pytest.mark.gen_test
    @pytest.mark.parametrize("method", WRITES)
    async def test_writes(self, app, api, headers, method):
        assert (await api.request(method, "/nowhere", body=b"")).code == 401
        assert (await api.request(method, "/nowhere", body=b"", headers=headers)).code == 404

    @pytest.mark.gen_test
    async def test_reads(self, app, api):
        assert (await api.get("/nowhere", headers={"Accept": "application/json"})).json() == {"error": "404 Not Found"}
        assert (await api.request("HEAD", "/nowhere")).code == 404


@pytest.mark.gen_test
async def test_a_known_path_with_a_method_it_lacks_stays_405(app, api):
    assert (await api.request("PATCH", "/register", json={})).code == 405
