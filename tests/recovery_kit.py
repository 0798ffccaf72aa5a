"""Helpers for the recovery plugin's tests: settings that send mail to the in-process SMTP server, and link reading."""

from __future__ import annotations

import asyncio
import re
from email.message import EmailMessage
from typing import Any

RESET_URL = "https://front.example/reset#token={token}"
VERIFY_URL = "https://front.example/verify#token={token}"
_LINK = re.compile(r"^https://front\.example/(reset|verify)#token=([A-Za-z0-9_-]+)$", re.M)


def smtp_env(port: int, **more: str) -> dict[str, str]:
    """Mail through 127.0.0.1:``port`` without TLS, links to a front end, retries and polls fast enough for tests."""
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_TLS": "none",
        "MAIL_FROM": "Turnstile <accounts@turnstile.example>",
        "RESET_URL": RESET_URL,
        "VERIFY_URL": VERIFY_URL,
        "TURNSTILE_RECOVERY_MAIL_RETRY_DELAY": "0.05",
        "TURNSTILE_RECOVERY_MAIL_POLL": "0.05",
        **more,
    }


def with_smtp(settings: Any, port: int, **more: str) -> Any:
    return settings.with_changes(extra={**settings.extra, **smtp_env(port, **more)})


def body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return part.get_content()


def token_in(message: EmailMessage, kind: str) -> str:
    """The token of the one ``kind`` link (``reset`` or ``verify``) in the mail."""
    links = _LINK.findall(body(message))
    assert [k for k, _ in links] == [kind], body(message)
    return links[0][1]


async def settled(app: Any, timeout: float = 10) -> None:
    """Until the mail queue is empty: every job sent, dropped or given up."""
    queue = app.services.store.collection("recovery.mail_queue")
    async with asyncio.timeout(timeout):
        while await queue.count():
            await asyncio.sleep(0.02)
