"""Request and error logs: written under LOG_DIR, and never holding a credential."""

import pytest

from core.logs import setup_logging, teardown_logging
from core.pytest_plugin import DEFAULT_PASSWORD


@pytest.fixture
def logs(turnstile_settings):
    setup = setup_logging(turnstile_settings.log_dir)
    yield setup
    teardown_logging(setup)


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
