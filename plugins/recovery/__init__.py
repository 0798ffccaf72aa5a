"""Account recovery: an email address per account, its verification, and forgotten-password resets by mail.

Built only on the plugin API (`core.plugin`): the accounts' addresses, the
password hasher and the shared throttle are the core's; the one-time tokens
(``recovery.tokens``), the mail queue (``recovery.mail_queue``) and the mail
counts (``recovery.mail_rate``) are this plugin's collections. Mail goes out
through SMTP (``SMTP_HOST``...) or, without a server, into ``LOG_DIR/outbox``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path

from core.plugin import PluginContext, duration, setting

from .handlers import EmailHandler, ForgotHandler, Limits, Recovery, ResetHandler, VerifyHandler, VerifyRequestHandler
from .mail import OutboxTransport, SMTPConfig, SMTPTransport, Transport
from .messages import Composer
from .queue import MailQueue
from .tokens import OneTimeTokens

PRUNE_EVERY = 600  # seconds between sweeps of expired tokens and mail counts
HOUR = 3600


def tls_mode(text: str) -> str:
    mode = text.strip().lower()
    if mode not in ("starttls", "tls", "none"):
        raise ValueError(f"expected starttls, tls or none, got {text!r}")
    return mode


def url_template(text: str) -> str:
    """An absolute http(s) URL containing ``{token}``: where a link in a mail points (the front end)."""
    url = text.strip()
    if not url.startswith(("https://", "http://")) or "{token}" not in url:
        raise ValueError(f"expected an http(s) URL containing {{token}}, got {text!r}")
    return url


@dataclass(frozen=True)
class Config:
    """Mail settings keep their conventional names (``SMTP_HOST``...); the rest are ``TURNSTILE_RECOVERY_*``."""

    smtp_host: str = setting("", env="SMTP_HOST", doc="unset: mails are written to LOG_DIR/outbox instead of sent")
    smtp_port: int = setting(0, env="SMTP_PORT", doc="0: 465 for tls, 587 for starttls, 25 for none")
    smtp_user: str = setting("", env="SMTP_USER")
    smtp_password: str = setting("", env="SMTP_PASSWORD", secret=True)
    smtp_tls: str = setting("starttls", env="SMTP_TLS", parse=tls_mode, doc="starttls, tls or none")
    mail_from: str = setting("Turnstile <no-reply@localhost>", env="MAIL_FROM")
    reset_url: str = setting("http://localhost:5500/#reset={token}", env="RESET_URL", parse=url_template)
    verify_url: str = setting("http://localhost:5500/#verify={token}", env="VERIFY_URL", parse=url_template)
    reset_token_ttl: int = setting(30 * 60, env="RESET_TOKEN_TTL", parse=duration)
    verify_token_ttl: int = setting(2 * 86400, env="VERIFY_TOKEN_TTL", parse=duration)
    mails_per_user: int = setting(5, doc="mails per hour per username; 0: no limit")
    mails_per_address: int = setting(5, doc="mails per hour per email address; 0: no limit")
    mails_per_ip: int = setting(20, doc="mails per hour per client IP; 0: no limit")
    mail_attempts: int = setting(6, doc="tries per mail before it is given up (and logged)")
    mail_retry_delay: float = setting(10.0, doc="seconds before the first retry; doubled after each failure")
    mail_poll: float = setting(5.0, doc="seconds between looks for mail queued by other processes")

    def __post_init__(self) -> None:
        """Refuse at start-up what would only fail at the first mail."""
        for name, seconds in (("RESET_TOKEN_TTL", self.reset_token_ttl), ("VERIFY_TOKEN_TTL", self.verify_token_ttl)):
            if seconds < 60:
                raise ValueError(f"{name}={seconds}s is too short for anyone to open the link; give at least 60s")
        address = parseaddr(self.mail_from)[1]
        if "@" not in address or "\n" in self.mail_from or "\r" in self.mail_from:
            raise ValueError(f"MAIL_FROM={self.mail_from!r} is not an address such as 'Turnstile <no-reply@example.com>'")
        if self.mail_attempts < 1:
            raise ValueError("TURNSTILE_RECOVERY_MAIL_ATTEMPTS must be at least 1")
        if self.mail_poll <= 0 or self.mail_retry_delay < 0:
            raise ValueError("TURNSTILE_RECOVERY_MAIL_POLL must be positive and TURNSTILE_RECOVERY_MAIL_RETRY_DELAY not negative")


class AnnouncedOutbox:
    """The outbox, with a log line per mail saying where it went: without SMTP_HOST, that is how a developer finds the link."""

    def __init__(self, directory: Path, log: logging.Logger) -> None:
        self.outbox = OutboxTransport(directory)
        self.log = log

    async def send(self, message: EmailMessage) -> str:
        where = await self.outbox.send(message)
        self.log.warning("SMTP_HOST is not set: mail %r written to %s", message["Subject"], self.outbox.directory.parent / where)
        return where


def transport(plugin: PluginContext) -> Transport:
    """SMTP when ``SMTP_HOST`` is set; else the ``.eml`` files of ``LOG_DIR/outbox``."""
    config: Config = plugin.config
    if config.smtp_host:
        return SMTPTransport(SMTPConfig(config.smtp_host, config.smtp_port, config.smtp_user, config.smtp_password, config.smtp_tls))
    return AnnouncedOutbox(Path(plugin.settings.log_dir) / "outbox", plugin.log)


def routes(plugin: PluginContext) -> list:
    """The routes, and the mail sender they feed: one per application, started here and stopped when it closes."""
    config: Config = plugin.config
    recovery = Recovery(
        config=config,
        tokens=OneTimeTokens(plugin.db),
        rate=plugin.throttle(window=HOUR, lockout=HOUR, collection="mail_rate"),
        limits=Limits(config.mails_per_user, config.mails_per_address, config.mails_per_ip),
        passwords=plugin.throttle(plugin.settings.login_failure_window, plugin.settings.login_lockout, collection="password_tries"),
    )
    queue = MailQueue(
        plugin.db,
        transport(plugin),
        Composer(recovery, plugin.services.accounts, plugin.log),
        plugin.log,
        max_attempts=config.mail_attempts,
        retry_delay=config.mail_retry_delay,
        poll=config.mail_poll,
    )
    queue.start()
    plugin.services.on_close(lambda: queue.stop(plugin.settings.shutdown_timeout))
    options = {"recovery": recovery, "queue": queue}
    return [
        (r"/email", EmailHandler, options),
        (r"/email/verify-request", VerifyRequestHandler, options),
        (r"/email/verify", VerifyHandler, options),
        (r"/password/forgot", ForgotHandler, options),
        (r"/password/reset", ResetHandler, options),
    ]


async def setup(plugin: PluginContext) -> None:
    """Warn about a production start without a mail server; prune expired tokens and counts now and periodically."""
    config: Config = plugin.config
    outbox = Path(plugin.settings.log_dir) / "outbox"
    if not config.smtp_host:
        if plugin.settings.cookie_secure:
            plugin.log.warning("SMTP_HOST is not set: recovery mails are written to %s, not sent; set SMTP_HOST in production", outbox)
        else:
            plugin.log.info("SMTP_HOST is not set: recovery mails are written to %s", outbox)
    tokens = OneTimeTokens(plugin.db)
    await tokens.setup()
    rate = plugin.throttle(window=HOUR, lockout=HOUR, collection="mail_rate")
    passwords = plugin.throttle(plugin.settings.login_failure_window, plugin.settings.login_lockout, collection="password_tries")

    async def prune() -> None:
        await tokens.prune()
        await rate.prune()
        await passwords.prune()

    await prune()
    plugin.every(PRUNE_EVERY, prune, "pruning expired recovery tokens and mail counts")
