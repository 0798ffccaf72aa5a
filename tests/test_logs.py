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
        real_emit = handler.emit
        monkeypatch.setattr(handler, "emit", lambda record, _emit=real_emit: writers.add(threading.get_ident()) or _emit(record))
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


def test_request_lines_read_as_logging_would_write_them(tmp_path):
    """A request line is a plain LogRecord rendered by the configured stock formatter."""
    from core.logs import log_line

    setup = setup_logging(tmp_path, fmt="%(levelname)s|%(name)s|%(message)s")
    try:
        log_line("GET", "-", "/a", 200, 1.25)
        log_line("POST", "http://x", "/b", 401, 0.5)
        setup.flush()
    finally:
        teardown_logging(setup)
    assert (tmp_path / "reqLog.txt").read_text().splitlines() == [
        "INFO|turnstile.access|GET\t-\t/a\t200\t1.2ms", "INFO|turnstile.access|POST\thttp://x\t/b\t401\t0.5ms"]
    assert (tmp_path / "errLog.txt").read_text() == ""  # request lines stay out of the error log


def test_a_request_line_the_format_cannot_render_is_reported_and_the_rest_are_written(tmp_path, capsys):
    """A format naming a field a record lacks must not stop the writer thread: later lines still reach the file."""
    from core.logs import access_log, log_line

    setup = setup_logging(tmp_path, fmt="%(message)s %(path)s")
    try:
        log_line("GET", "-", "/broken", 200, 1.0)
        access_log.info("GET\t-\t/fine\t200\t1.0ms", extra={"path": "/fine"})
        setup.flush()
    finally:
        teardown_logging(setup)
    assert (tmp_path / "reqLog.txt").read_text() == "GET\t-\t/fine\t200\t1.0ms /fine\n"
    assert "KeyError" in capsys.readouterr().err


def test_a_burst_that_fills_the_size_limit_exactly_leaves_no_empty_backup(tmp_path):
    """A batch as large as LOG_MAX_BYTES made the stock size check roll over the still-empty file."""
    from core.logs import access_log

    setup = setup_logging(tmp_path, fmt="%(message)s", max_bytes=100, backups=5)
    try:
        for i in range(20):  # 20 lines of 10 bytes, queued before the writer wakes: batches of 100 bytes
            access_log.info(f"line-{i:04d}")
        setup.flush()
    finally:
        teardown_logging(setup)
    files = sorted(tmp_path.glob("reqLog.txt*"))
    assert len(files) >= 2  # it did rotate
    for file in files:
        assert file.stat().st_size <= 100, file.name
        if file.name != "reqLog.txt":
            assert file.read_text().endswith("\n"), f"{file.name} is empty"
    oldest_first = sorted(files[1:], key=lambda f: -int(f.suffix[1:])) + files[:1]
    lines = [line for file in oldest_first for line in file.read_text().splitlines()]
    assert lines == [f"line-{i:04d}" for i in range(20)]


def test_errors_from_any_library_reach_the_error_log_once_each_on_one_line(tmp_path):
    """The error log hangs on the root logger: asyncio, asyncpg, tornado and our own loggers each land once."""
    import asyncio
    import logging

    setup = setup_logging(tmp_path)
    try:
        logging.getLogger("asyncpg.pool").error("pool trouble")
        logging.getLogger("tornado.application").error("tornado trouble")
        logging.getLogger("turnstile.example").error("our trouble")

        async def fail() -> None:
            raise RuntimeError("never retrieved")

        async def main() -> None:
            task = asyncio.get_running_loop().create_task(fail())
            await asyncio.sleep(0.01)
            assert task.done()
            del task  # asyncio reports the unretrieved exception when the task is collected

        asyncio.run(main())
        import gc

        gc.collect()
        setup.flush()
    finally:
        teardown_logging(setup)
    lines = (tmp_path / "errLog.txt").read_text().splitlines()
    for text in ("pool trouble", "tornado trouble", "our trouble", "Task exception was never retrieved"):
        assert sum(text in line for line in lines) == 1, (text, lines)
    [asyncio_line] = [line for line in lines if "never retrieved" in line]
    assert "\tasyncio\t" in asyncio_line and "RuntimeError: never retrieved" in asyncio_line
    assert len(lines) == 4  # a traceback stays on its error's line


def test_a_newline_in_a_logged_value_cannot_forge_a_line(tmp_path):
    import logging

    setup = setup_logging(tmp_path)
    try:
        logging.getLogger("turnstile.example").warning("user %r said %s", "x", "hi\n2026-01-01\tERROR\tforged")
        setup.flush()
    finally:
        teardown_logging(setup)
    [line] = (tmp_path / "errLog.txt").read_text().splitlines()
    assert line.endswith("said hi\\n2026-01-01\tERROR\tforged")
