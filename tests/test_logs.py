"""Request and error logs: written under LOG_DIR, and never holding a credential."""

import pytest

from core.logs import setup_logging, teardown_logging
from core.pytest_plugin import DEFAULT_PASSWORD


@pytest.mark.gen_test
async def test_logs_record_requests_but_no_secrets(api, logs, make_user):
    await make_user("alice")
    access = await api.login("alice")
    refresh = api.cookies["jwt"]
    await api.get("/employees?token=" + access, headers={"Authorization": f"Bearer {access}", "Origin": "http://localhost:5500"})
    await api.get("/employees", headers={"Authorization": "Bearer forged.token.value"})
    await api.get("/refresh")
    await api.get("/logout")
    await api.post("/auth", json={"user": "alice", "pwd": "wrong-password-123"})

    logs.flush()
    log_dir = logs.log_dir
    request_log = (log_dir / "reqLog.txt").read_text()
    assert "GET\thttp://localhost:5500\t/employees\t200" in request_log
    assert "POST\t-\t/auth\t401" in request_log
    everything = "".join(p.read_text() for p in log_dir.iterdir())
    for secret in (access, refresh, DEFAULT_PASSWORD, "wrong-password-123", "forged.token.value"):
        assert secret not in everything
    assert "refused" in (log_dir / "errLog.txt").read_text()


@pytest.mark.gen_test
async def test_request_log_rotates_by_size(api, turnstile_settings):
    setup = setup_logging(turnstile_settings.log_dir, max_bytes=2000, backups=2)
    try:
        for _ in range(120):
            await api.get("/healthz")
        setup.flush()
    finally:
        teardown_logging(setup)
    files = sorted(p.name for p in turnstile_settings.log_dir.glob("reqLog.txt*"))
    assert files == ["reqLog.txt", "reqLog.txt.1", "reqLog.txt.2"]
    assert all((turnstile_settings.log_dir / name).stat().st_size <= 2000 for name in files)


@pytest.mark.gen_test
async def test_log_files_are_written_off_the_event_loop_thread(api, turnstile_settings, monkeypatch):
    """Requests only queue records; a background thread formats and writes them."""
    import threading

    writers = set()
    setup = setup_logging(turnstile_settings.log_dir)
    for handler in setup.files:
        real_write = handler._write_line
        monkeypatch.setattr(handler, "_write_line", lambda *args, _write=real_write: writers.add(threading.get_ident()) or _write(*args))
    try:
        await api.get("/healthz")
        await api.get("/employees")  # 401: a request line and no error line
        setup.flush()
    finally:
        teardown_logging(setup)
    assert writers and threading.get_ident() not in writers
    assert "GET\t-\t/healthz\t200" in (turnstile_settings.log_dir / "reqLog.txt").read_text()


def test_error_log_level_and_format_are_configurable(tmp_path):
    import logging

    setup = setup_logging(tmp_path, level="ERROR", fmt="%(levelname)s|%(name)s|%(message)s")
    try:
        log = logging.getLogger("turnstile.example")
        log.warning("below the level")
        try:
            raise RuntimeError("kaboom")
        except RuntimeError:
            log.exception("with a traceback")
        setup.flush()
    finally:
        teardown_logging(setup)
    text = (tmp_path / "errLog.txt").read_text()
    assert "below the level" not in text
    assert "ERROR|turnstile.example|with a traceback" in text
    assert "Traceback (most recent call last)" in text and "RuntimeError: kaboom" in text


@pytest.mark.parametrize(
    "fmt",
    [
        None,  # the default
        "%(asctime)s %(msecs)03d %(created)f %(relativeCreated)d %(levelname)-8s %(name)s %(message)s",
        "%(process)d %(threadName)s %(module)s %(lineno)d %(levelno)s|%(message)r",
        "%(levelname)-8s 100%% %(name)s (%(msecs)d): %(message)s",
        "%(process)X %(lineno)X %(created)E %(message)s",  # logging accepts upper-case conversions too
    ],
)
@pytest.mark.parametrize("prefilled", [True, False], ids=["prefilled-template", "formatter"])
def test_request_lines_read_as_logging_would_write_them(tmp_path, monkeypatch, fmt, prefilled):
    """Request lines skip building a LogRecord per request; the text must not change for that."""
    import logging

    from core.logs import REQUEST_LINE, access_log

    setup = setup_logging(tmp_path, **({"fmt": fmt} if fmt else {}))
    try:
        batch, formatter = setup.requests, setup.requests.file.formatter
        assert batch._current_template() is not None  # every one of these formats gets the fast path...
        if not prefilled:
            monkeypatch.setattr(batch, "_current_template", lambda: None)  # ...and the general one must agree with it
        expected = []
        for created, args in [(1700000000.25, ("GET", "-", "/a", 200, 1.25)), (1700000000.999, ("POST", "http://x", "/b", 401, 0.5)),
                              (1700000001.5, ("GET", "-", "/c", 404, 12.0))]:
            batch.add(created, args)
            record = logging.LogRecord(access_log.name, logging.INFO, "", 0, REQUEST_LINE, args, None)
            record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
            record.relativeCreated = (created - logging._startTime) * 1000
            record.pathname, record.filename, record.module = batch._constant["pathname"], batch._constant["filename"], batch._constant["module"]
            expected.append(logging.Formatter(fmt).format(record) if fmt else logging.Formatter(formatter._fmt).format(record))
        setup.flush()
    finally:
        teardown_logging(setup)
    assert (tmp_path / "reqLog.txt").read_text().splitlines() == expected


def test_the_error_log_writer_sleeps_until_something_is_logged(monkeypatch):
    """No polling: an idle error log costs no wake-ups; the first record wakes the writer."""
    import threading

    from core import logs

    naps = []
    monkeypatch.setattr(logs.time, "sleep", lambda seconds: naps.append(seconds))
    queue, got, done = logs._GatheringQueue(), [], threading.Event()
    reader = threading.Thread(target=lambda: (got.append(queue.get()), done.set()), daemon=True)
    reader.start()
    assert not done.wait(0.3)
    assert naps == [] and got == []
    queue.put_nowait("record")
    assert done.wait(5)
    assert got == ["record"] and naps == [logs._GatheringQueue.GATHER_SECONDS]


def test_a_formatter_set_later_shapes_the_request_lines(tmp_path):
    from core.logs import _CachedTimeFormatter

    setup = setup_logging(tmp_path)
    try:
        setup.requests.add(1700000000.5, ("GET", "-", "/before", 200, 1.0))
        setup.flush()
        setup.requests.file.setFormatter(_CachedTimeFormatter("%(levelname)s|%(message)s"))
        setup.requests.add(1700000001.5, ("GET", "-", "/after", 200, 1.0))
        setup.flush()
    finally:
        teardown_logging(setup)
    lines = (tmp_path / "reqLog.txt").read_text().splitlines()
    assert lines[0].endswith("\tINFO\tturnstile.access\tGET\t-\t/before\t200\t1.0ms")
    assert lines[1] == "INFO|GET\t-\t/after\t200\t1.0ms"
