"""An SMTP server in the test process (aiosmtpd, on a thread of its own), and a certificate for its TLS.

``SMTPServer`` takes a free port when made and keeps it, so a test can send
while it is down, then `start` it and see the retry arrive (``smtp_server``
fixture in conftest.py: made, not started). Received mail is in ``messages``,
parsed with `email.policy.default`; ``deliveries`` adds the envelope.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Delivery:
    """One message as the server took it: the envelope, the parsed message, and how the client came in."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    login: str | None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SMTPServer:
    """aiosmtpd on 127.0.0.1:``port``, startable and stoppable any number of times.

    ``tls_context`` enables STARTTLS (and requires it with ``require_starttls``);
    ``implicit_tls`` wraps the whole connection instead (SMTPS). ``logins``
    maps accepted user names to passwords. ``refuse_rcpt`` answers RCPT with a
    550 that echoes the address, as real servers do.
    """

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        require_starttls: bool = False,
        logins: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.require_starttls = require_starttls
        self.logins = logins
        self.refuse_rcpt = False
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return [d.message for d in self.deliveries]

    def start(self) -> None:
        """Listen (blocks a few milliseconds while the server thread comes up)."""
        if self._controller is not None:
            return
        params: dict[str, Any] = {}
        if self.tls_context is not None and not self.implicit_tls:
            params.update(tls_context=self.tls_context, require_starttls=self.require_starttls)
        if self.logins is not None:
            params.update(authenticator=self._authenticate, auth_require_tls=self.tls_context is not None)
        controller = Controller(
            _Handler(self),
            hostname="127.0.0.1",
            port=self.port,
            ssl_context=self.tls_context if self.implicit_tls else None,
            **params,
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def wait_for(self, n: int, timeout: float = 10) -> list[EmailMessage]:
        """The messages, once at least ``n`` have arrived; `TimeoutError` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while len(self.deliveries) < n:
                await asyncio.sleep(0.01)
        return self.messages

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self.logins is not None and self.logins.get(user) == password:
                return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)


class _Handler:
    def __init__(self, server: SMTPServer) -> None:
        self.server = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:  # noqa: N802
        if self.server.refuse_rcpt:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
        data = envelope.original_content.replace(b"\r\n", b"\n")  # as a mail client would store it
        message = email.message_from_bytes(data, policy=email.policy.default)
        self.server._record(
            Delivery(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                message=message,  # type: ignore[arg-type]
                tls=session.ssl is not None or self.server.implicit_tls,
                login=session.auth_data if session.authenticated else None,
            )
        )
        return "250 Message accepted for delivery"


def self_signed(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A certificate for 127.0.0.1 and localhost: the server's context, and a client context trusting only it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client
