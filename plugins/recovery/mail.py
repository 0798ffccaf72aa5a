"""Mail delivery for account recovery: building a message, and the transports that carry it.

A transport is anything with ``async send(message) -> str``: `SMTPTransport`
talks to a mail server with aiosmtplib; `OutboxTransport` writes each message to
a file, for development and tests, where no mail server is at hand. Both raise on
failure, and the mail queue (`plugins.recovery.queue`) retries. The string a
transport returns goes into the log, so it names where the mail went (a server,
a file), never who it is for or what it says.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Protocol, runtime_checkable

import aiosmtplib

#: The port each ``tls`` mode uses when `SMTPConfig.port` is 0: implicit TLS, STARTTLS submission, plain relay.
DEFAULT_PORTS = {"tls": 465, "starttls": 587, "none": 25}


@dataclass(frozen=True)
class SMTPConfig:
    """Where and how to hand mail to a server. ``tls``: "starttls", "tls" (implicit, SMTPS) or "none"."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)  # never in a repr, so never in a log line or a traceback's locals
    tls: str

    def __post_init__(self) -> None:
        if self.tls not in DEFAULT_PORTS:
            raise ValueError(f"tls must be one of {', '.join(DEFAULT_PORTS)}, not {self.tls!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0 (the default for the tls mode) or 1 to 65535, not {self.port!r}")

    @property
    def effective_port(self) -> int:
        """The port to connect to: the one given, or the usual one for the tls mode when it is 0."""
        return self.port or DEFAULT_PORTS[self.tls]


def make_message(sender: str, to: str, subject: str, text: str) -> EmailMessage:
    """A plain-text UTF-8 message with the headers a receiving server expects (Date, Message-ID).

    The Message-ID takes its domain from the sender's address: `make_msgid` would
    otherwise ask the resolver for this host's name, a blocking call on the event loop.
    A header value with a line break raises ValueError (no header injection).
    """
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    # ASCII text goes as it is (7bit), not quoted-printable, which would turn each link's "=" into "=3D" and
    # break long lines: a link stays whole and copyable in the raw message (an outbox file, a server's log).
    ascii_lines = text.isascii() and all(len(line) <= 998 for line in text.splitlines())
    message.set_content(text, charset="utf-8", cte="7bit" if ascii_lines else "quoted-printable")
    return message


@runtime_checkable
class Transport(Protocol):
    """Carries a message; returns a short description of where it went, for the log; raises on failure."""

    async def send(self, message: EmailMessage) -> str: ...


class SMTPTransport:
    """Sends through an SMTP server, one connection per message (recovery mail is rare)."""

    def __init__(self, config: SMTPConfig, timeout: float = 30, tls_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.timeout = timeout
        self.tls_context = tls_context  # None: the system's trusted CAs (tests pass one trusting their own cert)

    def send_arguments(self) -> dict:
        """The keyword arguments of `aiosmtplib.send` for this configuration (password included: do not log)."""
        config = self.config
        return {
            "hostname": config.host,
            "port": config.effective_port,
            "username": config.user or None,
            "password": config.password or None,
            "use_tls": config.tls == "tls",
            "start_tls": config.tls == "starttls",
            "timeout": self.timeout,
            "tls_context": self.tls_context,
        }

    async def send(self, message: EmailMessage) -> str:
        await aiosmtplib.send(message, **self.send_arguments())
        return f"smtp {self.config.host}:{self.config.effective_port}"


class OutboxTransport:
    """Writes each message as a ``.eml`` file into a directory instead of sending it.

    For development and tests. The directory is made 0700 and each file 0600:
    a message holds a one-time link. A file appears whole or not at all (written
    under a temporary name, then renamed), and all file work runs on a thread.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    async def send(self, message: EmailMessage) -> str:
        name = await asyncio.get_running_loop().run_in_executor(None, self._write, message)
        return f"{self.directory.name}/{name}"

    def _write(self, message: EmailMessage) -> str:
        data = message.as_bytes()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        name = f"{stamp}-{secrets.token_hex(4)}.eml"
        final = self.directory / name
        temp = self.directory / f".{name}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _sync_directory(self.directory)  # the rename survives a crash too: the queue forgets the job next
        return name


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
