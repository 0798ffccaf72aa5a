"""Mail delivery as the app does it: off the request path, retried while SMTP is down, kept across a shutdown, or
written to LOG_DIR/outbox when no SMTP server is configured."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import os
import stat

import pytest
from recovery_kit import RESET_URL, VERIFY_URL, settled, token_in, with_smtp

from core.app import create_app


async def verified(app, make_user, name="ann", email_address="ann@example.com"):
    await make_user(name, email=email_address)
    assert await app.services.accounts.mark_email_verified(name, email_address)


async def attempts(app) -> list[int]:
    return [doc["attempts"] for doc in await app.services.store.collection("recovery.mail_queue").all()]


class TestSMTP:
    @pytest.fixture
    def turnstile_settings(self, turnstile_settings, smtp_server):
        return with_smtp(turnstile_settings, smtp_server.port)

    @pytest.mark.gen_test(timeout=30)
    async def test_smtp_down_then_retried_then_delivered(self, api, app, make_user, smtp_server, caplog):
        await verified(app, make_user)
        smtp_server.stop()
        assert (await api.post("/password/forgot", json={"user": "ann"})).code == 202  # answered while SMTP is down
        async with asyncio.timeout(10):
            while not any(n >= 2 for n in await attempts(app)):
                await asyncio.sleep(0.02)
        smtp_server.start()
        (mail,) = await smtp_server.wait_for(1)
        await settled(app)
        assert (await api.post("/password/reset", json={"token": token_in(mail, "reset"), "newPwd": "a-new-password"})).code == 204
        retries = [r for r in caplog.records if r.name == "turnstile.plugins.recovery" and "attempt" in r.getMessage()]
        assert retries and all(r.levelno == logging.WARNING for r in retries)

    @pytest.mark.gen_test(timeout=30)
    async def test_a_mail_that_never_goes_through_is_given_up_and_logged(self, api, app, make_user, smtp_server, caplog):
        await verified(app, make_user)
        smtp_server.stop()
        await api.post("/password/forgot", json={"user": "ann"})
        await settled(app, timeout=20)  # 6 attempts, 0.05 s doubling: about 1.6 s

        def given_up() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.levelno == logging.ERROR and "given up after 6 attempts" in r.getMessage()]

        async with asyncio.timeout(5):
            while not given_up():
                await asyncio.sleep(0.02)
        assert len(given_up()) == 1 and await attempts(app) == []

    @pytest.mark.gen_test(timeout=60)
    async def test_a_mail_queued_at_shutdown_is_sent_by_the_next_start(self, api, app, make_user, smtp_server, turnstile_settings):
        await verified(app, make_user)
        smtp_server.stop()
        assert (await api.post("/password/forgot", json={"user": "ann"})).code == 202
        await app.services.close()  # the queue stops; the job stays in the store
        smtp_server.start()
        restarted = await create_app(turnstile_settings)
        try:
            (mail,) = await smtp_server.wait_for(1)
            assert mail["To"] == "ann@example.com"
        finally:
            await restarted.services.close()

    @pytest.mark.gen_test(timeout=30)
    async def test_the_answer_does_not_wait_for_smtp(self, api, app, make_user, smtp_server):
        """The 202 comes back while the SMTP server cannot even be reached: the request only queued a job."""
        await verified(app, make_user)
        smtp_server.stop()
        response = await api.post("/password/forgot", json={"user": "ann"})
        assert response.code == 202
        assert await app.services.store.collection("recovery.mail_queue").count() == 1

    @pytest.mark.gen_test(timeout=30)
    async def test_no_token_or_address_in_the_logs(self, api, app, make_user, smtp_server, caplog):
        caplog.set_level(logging.DEBUG)
        await verified(app, make_user)
        smtp_server.stop()
        await api.post("/password/forgot", json={"user": "ann"})
        async with asyncio.timeout(10):
            while not any(n >= 1 for n in await attempts(app)):
                await asyncio.sleep(0.02)
        smtp_server.start()
        (mail,) = await smtp_server.wait_for(1)
        token = token_in(mail, "reset")

        def ours() -> str:
            return "\n".join(r.getMessage() for r in caplog.records if r.name != "mail.log")  # not the test SMTP server's log

        async with asyncio.timeout(5):  # the line is written just after the job is settled
            while "mail reset sent" not in ours():
                await asyncio.sleep(0.02)
        assert token not in ours() and "ann@example.com" not in ours()


class TestOutbox:
    """No SMTP_HOST: mails are .eml files in LOG_DIR/outbox, and the log says where."""

    @pytest.fixture
    def turnstile_settings(self, turnstile_settings):
        return turnstile_settings.with_changes(extra={**turnstile_settings.extra, "RESET_URL": RESET_URL, "VERIFY_URL": VERIFY_URL})

    @pytest.mark.gen_test(timeout=30)
    async def test_mails_are_written_to_the_outbox(self, api, app, make_user, turnstile_settings, caplog):
        await verified(app, make_user)
        assert (await api.post("/password/forgot", json={"user": "ann"})).code == 202
        await settled(app)
        outbox = turnstile_settings.log_dir / "outbox"
        (path,) = list(outbox.glob("*.eml"))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert mail["To"] == "ann@example.com"
        assert (await api.post("/password/reset", json={"token": token_in(mail, "reset"), "newPwd": "a-new-password"})).code == 204
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "written to" in r.getMessage()]
        assert said == [f"SMTP_HOST is not set: mail 'Reset your password' written to {path}"]

    @pytest.mark.gen_test(timeout=30)
    async def test_a_production_start_without_smtp_warns(self, app, caplog):
        """``COOKIE_SECURE=true`` (the default) marks a production set-up: a missing mail server is worth a warning."""
        assert app.services.settings.cookie_secure
        warned = [r.getMessage() for r in caplog.get_records("setup") if r.levelno == logging.WARNING and "SMTP_HOST is not set" in r.getMessage()]
        assert len(warned) == 1 and "set SMTP_HOST in production" in warned[0]

    @pytest.mark.gen_test(timeout=30)
    @pytest.mark.settings(cookie_secure=False)
    async def test_a_development_start_without_smtp_does_not_warn(self, app, caplog):
        assert not [r for r in caplog.get_records("setup") if r.levelno >= logging.WARNING and "SMTP_HOST" in r.getMessage()]
