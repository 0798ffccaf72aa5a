"""The recovery plugin's mail transports: messages, SMTP in each TLS mode against a real server, the outbox directory."""

from __future__ import annotations

import email
import email.policy
import os
import ssl
import stat
from email.message import EmailMessage

import aiosmtplib
import pytest

from smtp_kit import SMTPServer, self_signed

from plugins.recovery import mail as mail_module
from plugins.recovery.mail import OutboxTransport, SMTPConfig, SMTPTransport, Transport, make_message

BODY = "Bonjour Zoë,\n\nOpen https://example.com/reset#token-abc to choose a new password.\n"


def message(to: str = "zoe@example.com") -> EmailMessage:
    return make_message("Turnstile <no-reply@turnstile.example>", to, "Réinitialiser le mot de passe", BODY)


# -- messages and settings ---------------------------------------------------------------


def test_a_message_has_the_headers_a_server_expects_and_a_utf8_text_body():
    msg = message()
    assert msg["From"] == "Turnstile <no-reply@turnstile.example>"
    assert msg["To"] == "zoe@example.com"
    assert msg["Subject"] == "Réinitialiser le mot de passe"
    assert email.utils.parsedate_to_datetime(msg["Date"]).tzinfo is not None
    assert msg["Message-ID"].endswith("@turnstile.example>"), "the id's domain is the sender's, not a DNS lookup"
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed.get_content() == BODY and parsed["Subject"] == "Réinitialiser le mot de passe"


def test_a_header_with_a_line_break_is_refused():
    with pytest.raises(ValueError):
        make_message("a@example.com", "zoe@example.com\r\nBcc: mallory@example.com", "Hi", "x")


@pytest.mark.parametrize("tls, port", [("tls", 465), ("starttls", 587), ("none", 25)])
def test_port_0_is_the_usual_port_of_the_tls_mode(tls, port):
    assert SMTPConfig("mail.example.com", 0, "", "", tls).effective_port == port
    assert SMTPConfig("mail.example.com", 2525, "", "", tls).effective_port == 2525


def test_the_password_is_not_in_the_config_repr_and_bad_settings_are_refused():
    config = SMTPConfig("mail.example.com", 0, "turnstile", "hunter2-secret", "starttls")
    assert "hunter2-secret" not in repr(config) and "turnstile" in repr(config)
    with pytest.raises(ValueError, match="tls"):
        SMTPConfig("mail.example.com", 0, "", "", "ssl")
    with pytest.raises(ValueError, match="port"):
        SMTPConfig("mail.example.com", 70000, "", "", "tls")


@pytest.mark.parametrize(
    "tls, port, use_tls, start_tls",
    [("tls", 465, True, False), ("starttls", 587, False, True), ("none", 25, False, False)],
)
@pytest.mark.gen_test
async def test_what_each_tls_mode_asks_of_aiosmtplib(monkeypatch, tls, port, use_tls, start_tls):
    calls = []

    async def send(msg, **kwargs):
        calls.append((msg, kwargs))
        return {}, "OK"

    monkeypatch.setattr(mail_module.aiosmtplib, "send", send)
    transport = SMTPTransport(SMTPConfig("mail.example.com", 0, "user", "pw", tls), timeout=7)
    msg = message()
    assert await transport.send(msg) == f"smtp mail.example.com:{port}"
    [(sent, kwargs)] = calls
    assert sent is msg
    assert kwargs["hostname"] == "mail.example.com" and kwargs["port"] == port and kwargs["timeout"] == 7
    assert (kwargs["use_tls"], kwargs["start_tls"]) == (use_tls, start_tls)
    assert (kwargs["username"], kwargs["password"]) == ("user", "pw")

    calls.clear()
    await SMTPTransport(SMTPConfig("mail.example.com", 0, "", "", tls)).send(msg)
    assert (calls[0][1]["username"], calls[0][1]["password"]) == (None, None), "no login without a user"


# -- SMTP against a real server ----------------------------------------------------------


def test_the_transports_satisfy_the_protocol(tmp_path):
    assert isinstance(SMTPTransport(SMTPConfig("h", 0, "", "", "none")), Transport)
    assert isinstance(OutboxTransport(tmp_path), Transport)


@pytest.mark.gen_test
async def test_smtp_without_tls_delivers_to_the_recipient(smtp_server):
    transport = SMTPTransport(SMTPConfig("127.0.0.1", smtp_server.port, "", "", "none"), timeout=10)
    assert await transport.send(message()) == f"smtp 127.0.0.1:{smtp_server.port}"
    [delivery] = smtp_server.deliveries
    assert delivery.mail_from == "no-reply@turnstile.example" and delivery.rcpt_tos == ["zoe@example.com"]
    assert delivery.message["Subject"] == "Réinitialiser le mot de passe"
    assert delivery.message.get_content() == BODY
    assert not delivery.tls and delivery.login is None


@pytest.mark.gen_test
async def test_smtp_with_starttls_and_a_login(tmp_path):
    server_tls, client_tls = self_signed(tmp_path)
    server = SMTPServer(tls_context=server_tls, require_starttls=True, logins={"turnstile": "s3cret"})
    server.start()
    try:
        config = SMTPConfig("127.0.0.1", server.port, "turnstile", "s3cret", "starttls")
        await SMTPTransport(config, timeout=10, tls_context=client_tls).send(message())
        [delivery] = server.deliveries
        assert delivery.tls and delivery.login == "turnstile" and delivery.message.get_content() == BODY

        wrong = SMTPConfig("127.0.0.1", server.port, "turnstile", "nope", "starttls")
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await SMTPTransport(wrong, timeout=10, tls_context=client_tls).send(message())
        with pytest.raises((aiosmtplib.SMTPException, ssl.SSLError)):  # the system CAs do not trust a self-signed certificate
            await SMTPTransport(config, timeout=10).send(message())
        assert len(server.deliveries) == 1
    finally:
        server.stop()


@pytest.mark.gen_test
async def test_smtp_with_implicit_tls(tmp_path):
    server_tls, client_tls = self_signed(tmp_path)
    server = SMTPServer(tls_context=server_tls, implicit_tls=True)
    server.start()
    try:
        await SMTPTransport(SMTPConfig("127.0.0.1", server.port, "", "", "tls"), timeout=10, tls_context=client_tls).send(
            message()
        )
        assert [m.get_content() for m in server.messages] == [BODY]
    finally:
        server.stop()


@pytest.mark.gen_test
async def test_smtp_raises_when_the_server_is_down():
    down = SMTPServer()  # a free port, nothing listening
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await SMTPTransport(SMTPConfig("127.0.0.1", down.port, "", "", "none"), timeout=5).send(message())


# -- the outbox directory ----------------------------------------------------------------


@pytest.mark.gen_test
async def test_the_outbox_writes_one_private_parseable_file_per_message(tmp_path):
    outbox = tmp_path / "var" / "outbox"
    transport = OutboxTransport(outbox)
    first = await transport.send(message())
    second = await transport.send(message("other@example.com"))
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
    files = sorted(outbox.iterdir())
    assert sorted(f"outbox/{f.name}" for f in files) == sorted([first, second])
    for f in files:
        assert f.suffix == ".eml" and stat.S_IMODE(f.stat().st_mode) == 0o600
        name = f.stem.split("-")
        assert len(name) == 2 and len(name[0]) == 15 and name[0][8] == "T" and len(name[1]) == 8
    parsed = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    assert sorted(p["To"] for p in parsed) == ["other@example.com", "zoe@example.com"]
    assert all(p.get_content() == BODY for p in parsed)


@pytest.mark.gen_test
async def test_the_outbox_works_off_the_event_loop_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    import threading

    main = threading.get_ident()
    threads = []
    real_replace = os.replace

    def replace(src, dst):
        threads.append(threading.get_ident())
        return real_replace(src, dst)

    monkeypatch.setattr(mail_module.os, "replace", replace)
    await OutboxTransport(tmp_path / "outbox").send(message())
    assert threads and main not in threads
    assert [p.suffix for p in (tmp_path / "outbox").iterdir()] == [".eml"]


@pytest.mark.gen_test
async def test_a_failed_outbox_write_raises_and_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mail_module.os, "replace", broken)
    with pytest.raises(OSError):
        await OutboxTransport(tmp_path / "outbox").send(message())
    assert list((tmp_path / "outbox").iterdir()) == []


def test_a_long_link_stays_whole_in_the_raw_message():
    """A developer copies the link out of an outbox file: it must not be quoted-printable encoded or folded."""
    link = "http://localhost:5500/#reset=" + "A1b2-C3_d4" * 8
    raw = make_message("Turnstile <no-reply@example.com>", "ann@example.com", "Reset", f"Open:\n\n{link}\n").as_bytes()
    assert b"\n" + link.encode() + b"\n" in raw
    assert b"=3D" not in raw
