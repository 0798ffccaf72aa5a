"""GET /healthz: public, 200 with the store's state, 503 when the store cannot write."""

import shutil

import pytest


@pytest.mark.gen_test
async def test_healthz_is_public_and_reports_the_store(api):
    response = await api.get("/healthz")
    assert response.code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["store"]["writable"] is True
    assert "data_dir" not in body["store"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.gen_test
async def test_healthz_is_503_while_the_data_directory_cannot_take_a_write(api, turnstile_settings):
    """Root ignores file modes, so the fault is real: the data directory is replaced by a plain file."""
    data_dir = turnstile_settings.data_dir
    shutil.rmtree(data_dir)
    data_dir.write_text("not a directory")
    try:
        response = await api.get("/healthz")
        assert response.code == 503
        assert response.json()["status"] == "unavailable"
        assert response.json()["store"]["writable"] is False
        assert response.json()["store"]["error"]
    finally:
        data_dir.unlink()
        data_dir.mkdir()
    assert (await api.get("/healthz")).code == 200
