"""What the mail queue sends: each job is turned into a mail when it is sent, never when it is asked for.

So the request that queued a job did the same work whether or not the
account exists, and the token a mail carries is minted only when the mail
goes out: the queue holds no secret, only ``{"user": name}`` or
``{"email": address}``. A job that should send nothing (no such account, an
unverified address, an address over its hourly limit) composes to None.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from typing import Any

from core.plugin import Accounts

from .handlers import EMAIL_CHANGED, Recovery
from .mail import make_message
from .tokens import RESET, VERIFY, password_fingerprint


def link(template: str, token: str) -> str:
    """The front end's URL for ``token``: ``{token}`` in the template replaced (no other brace is special)."""
    return template.replace("{token}", token)


def spell(seconds: int) -> str:
    """``1800`` as ``30 minutes``, ``172800`` as ``2 days``: how long a link lasts, in the mail's words."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def mask(address: str) -> str:
    """``ann.lee@example.com`` as ``a*****e@example.com``: enough for the owner to recognise, little for anyone else."""
    local, _, domain = address.partition("@")
    shown = local[0] + "*" * max(1, len(local) - 2) + local[-1] if len(local) > 2 else local[0] + "*"
    return f"{shown}@{domain}"


class Composer:
    """``compose(kind, data)`` for the mail queue: a reset or verification mail, or None."""

    def __init__(self, recovery: Recovery, accounts: Accounts, log: logging.Logger) -> None:
        self.recovery = recovery
        self.accounts = accounts
        self.log = log

    async def __call__(self, kind: str, data: dict[str, Any], attempt: int = 1) -> EmailMessage | None:
        """The mail for one attempt at a job; a retry mints a fresh token (and, for a reset, voids the last)."""
        if kind == RESET:
            return await self.reset(data, first=attempt == 1)
        if kind == VERIFY:
            return await self.verify(data)
        if kind == EMAIL_CHANGED:
            return await self.email_changed(data)
        self.log.error("mail job of unknown kind %r dropped", kind)
        return None

    async def reset(self, data: dict[str, Any], first: bool = True) -> EmailMessage | None:
        if "email" in data:
            user = await self.accounts.user_by_email(data["email"])
        else:
            user = await self.accounts.user(data["user"])
        if user is None or not user.get("email") or not user.get("email_verified"):
            self.log.info("reset mail not sent: no account with a verified address matches the request")
            return None
        if first and not await self.within_limit(user["email"]):  # a retry is the same mail: counted once
            return None
        config = self.recovery.config
        name, email = user["username"], user["email"]
        token = await self.recovery.tokens.issue(
            RESET, name, config.reset_token_ttl, single=True, email=email, password=password_fingerprint(user["password"])
        )
        text = (
            f"Someone asked to reset the password of the account {name}.\n\n"
            f"To choose a new password, open this link within {spell(config.reset_token_ttl)}:\n\n"
            f"{link(config.reset_url, token)}\n\n"
            "If it was not you, ignore this mail: your password stays as it is.\n"
        )
        return make_message(config.mail_from, email, "Reset your password", text)

    async def verify(self, data: dict[str, Any]) -> EmailMessage | None:
        user = await self.accounts.user(data["username"])
        if user is None or user.get("email") != data["email"] or user.get("email_verified"):
            return None  # the address changed, or was verified, since the request
        if await self.accounts.user_by_email(data["email"]) is not None:
            self.log.info("verification mail not sent: another account verified that address first")
            return None
        config = self.recovery.config
        name, email = user["username"], user["email"]
        token = await self.recovery.tokens.issue(VERIFY, name, config.verify_token_ttl, email=email)
        text = (
            f"Confirm that {email} is the email address of the account {name} by opening this link "
            f"within {spell(config.verify_token_ttl)}:\n\n"
            f"{link(config.verify_url, token)}\n\n"
            "If you did not ask for this, ignore this mail.\n"
        )
        return make_message(config.mail_from, email, "Confirm your email address", text)

    async def email_changed(self, data: dict[str, Any]) -> EmailMessage | None:
        """A notice, without any link, to the verified address an account has just left."""
        user = await self.accounts.user(data["username"])
        if user is None:
            return None
        text = (
            f"The email address of the account {user['username']} was changed from this address to {mask(data['new'])}.\n\n"
            "If you did this, there is nothing to do. If you did not, someone else is signed in to your account: "
            "reset your password and contact the people who run this service.\n"
        )
        return make_message(self.recovery.config.mail_from, data["old"], "Your email address was changed", text)

    async def within_limit(self, email: str) -> bool:
        """Count a mail to ``email``: a reset asked for by username counts on the address it goes to as well."""
        limit = self.recovery.limits.per_address
        if await self.recovery.rate.hit({f"to:{email}": limit}):
            self.log.warning("reset mail not sent: the address is over its limit of %d mails per hour", limit)
            return False
        return True
