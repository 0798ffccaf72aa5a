"""GET /healthz: public, 200 with the store's health in backend-neutral terms, 503 when the store cannot write."""

import errno
import os
import shutil

import pytest

from core.store import Health, StoreError, StoreUnavailable


@pytest.mark.gen_test
async def test_healthz_is_public_and_reports_the_store(api, app):
    backend = app.services.store.backend
    response = await api.get("/healthz")
    assert response.code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["worker"] == {"index": 0, "pid": os.getpid()}  # the process that answered; one process here
    assert set(body["store"]) == {"backend", "writable", "error", backend}  # details only under the backend's own key
    assert body["store"]["backend"] == backend and body["store"]["writable"] is True and body["store"]["error"] is None
    assert "data_dir" not in body["store"][backend]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.gen_test
async def test_healthz_is_503_when_the_backend_reports_it_cannot_write(api, app, monkeypatch):
    async def down():
        return Health(backend="json", writable=False, error="disk full", details={"pending_writes": 3})

    monkeypatch.setattr(app.services.store, "check", down)
    response = await api.get("/healthz")
    assert response.code == 503
    assert response.json() == {
        "status": "unavailable",
        "worker": {"index": 0, "pid": os.getpid()},
        "store": {"backend": "json", "writable": False, "error": "disk full", "json": {"pending_writes": 3}},
    }


@pytest.mark.gen_test
async def test_healthz_is_503_when_the_backend_cannot_be_reached(api, app, monkeypatch):
    async def unreachable():
        raise StoreUnavailable("database unreachable", retry_after=2)

    monkeypatch.setattr(app.services.store, "check", unreachable)
    backend = app.services.store.backend
    response = await api.get("/healthz")
    assert response.code == 503
    assert response.json()["store"] == {"backend": backend, "writable": False, "error": "database unreachable", backend: {}}


@pytest.mark.backends("json")  # a fault of the JSON store's DATA_DIR
@pytest.mark.gen_test
async def test_healthz_is_503_while_the_data_directory_cannot_take_a_write(api, app, turnstile_settings):
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


@pytest.mark.backends("json")  # a fault of the JSON store's journal
@pytest.mark.gen_test
async def test_healthz_503_after_a_failed_write_names_no_file_system_path(api, app, turnstile_settings, monkeypatch):
    """The public answer says what failed, never where: the data file path stays in the server log."""
    store = app.services.store
    data_dir = turnstile_settings.data_dir.resolve()
    journal = next(data_dir.glob("journal.*.jsonl"))

    def append_failing(data: bytes) -> int:  # fails as os.open does: the error carries the path
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(journal))

    monkeypatch.setattr(store, "_append", append_failing)
    with pytest.raises(StoreError):
        await store.collection("t.docs").put("x", {"v": 1})
    response = await api.get("/healthz")
    assert response.code == 503
    assert response.json()["store"]["error"]
    for part in (str(data_dir), str(turnstile_settings.data_dir), data_dir.name, journal.name):
        assert part not in response.text
    monkeypatch.undo()
    await store.collection("t.docs").put("y", {"v": 2})
    assert (await api.get("/healthz")).code == 200
