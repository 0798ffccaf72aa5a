"""TOTP (RFC 6238) as a second factor: enrolment, confirmation, checks that refuse a replayed code, removal.

What is kept where:

* a pending enrolment, in this plugin's ``enrolments`` collection keyed by
  the (folded) username: ``{"secret": sealed, "expires"}``. It changes nothing
  at sign-in; it becomes the factor only when a code from it is confirmed,
  and is gone after ten minutes (`prune`) or when confirmed.
* the factor, on the user record: ``factors["totp"] = {"secret": sealed,
  "last_step", "created"}``. The secret is sealed with the plugin's
  `SecretBox`, so a copy of the data alone cannot mint codes.

A code is accepted for the current 30-second step or the one before or after
(clock drift, a code typed as it changed), and only for a step later than
``last_step``: once a code has been accepted, neither it nor any earlier one
ever is again (RFC 6238 §5.2). The comparison and the new ``last_step`` are
one `Accounts.update_factors` transaction, so two requests with one code
cannot both pass, on any worker or instance.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any, Callable

import pyotp

from core.plugin import Accounts, Namespace, SealBroken, SecretBox, fold_username, where

from . import codes as recovery

FACTOR = "totp"
ENROLMENTS = "enrolments"
ENROLMENT_TTL = 600  # seconds to confirm a new secret
WINDOW = 1  # steps accepted either side of the current one
DIGITS = 6

log = logging.getLogger("turnstile.plugins.mfa")


class TOTPAlreadyOn(Exception):
    """The user has TOTP on already: a new secret would replace it without a code from the old one."""


class TOTPNotOn(Exception):
    """The user has no TOTP to check or turn off."""


class NoEnrolment(Exception):
    """No enrolment is pending for the user (never begun, expired, or confirmed already)."""


def normalize_code(code: str) -> str | None:
    """The six digits of a TOTP code as typed (spaces allowed, as apps show ``123 456``); None if it is not one."""
    text = "".join(code.split())
    return text if len(text) == DIGITS and text.isascii() and text.isdigit() else None


def matching_step(secret: str, code: str, now: float, after: int | None) -> int | None:
    """The latest step within ±`WINDOW` of ``now``, later than ``after``, whose code is ``code``; else None."""
    digits = normalize_code(code)
    if digits is None:
        return None
    otp = pyotp.TOTP(secret)
    current = int(now // otp.interval)
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        if (after is None or step > after) and hmac.compare_digest(otp.generate_otp(step), digits):
            found = step
    return found


class TOTPFactor:
    """The TOTP factor of every user: what the handlers and the sign-in step call."""

    def __init__(
        self, accounts: Accounts, db: Namespace, box: SecretBox, issuer: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.accounts = accounts
        self.enrolments = db.collection(ENROLMENTS)
        self.box = box
        self.issuer = issuer
        self.clock = clock

    async def active(self, username: str) -> bool:
        """Whether the user has TOTP on (confirmed)."""
        return bool((await self.accounts.factors(username)).get(FACTOR))

    async def begin(self, username: str) -> dict[str, str]:
        """A new secret for the user to confirm, replacing any pending one: ``{"secret", "uri"}``.

        `TOTPAlreadyOn` if TOTP is on: turning it off (with a code) comes first.
        """
        if await self.active(username):
            raise TOTPAlreadyOn(username)
        secret = pyotp.random_base32()
        uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=self.issuer)
        sealed = self.box.seal(secret.encode("ascii"))
        await self.enrolments.put(fold_username(username), {"secret": sealed, "expires": int(self.clock()) + ENROLMENT_TTL})
        return {"secret": secret, "uri": uri}

    async def confirm(self, username: str, code: str) -> list[str] | None:
        """Turn TOTP on if ``code`` is right for the pending secret; the new recovery codes (shown once), else None.

        The code's step counts as used. `NoEnrolment` if none is pending,
        `TOTPAlreadyOn` if another request turned TOTP on meanwhile.
        """
        key = fold_username(username)
        now = self.clock()
        pending = await self.enrolments.get(key)
        if pending is None or pending.get("expires", 0) <= now:
            raise NoEnrolment(username)
        secret = self._open(pending["secret"])
        step = matching_step(secret, code, now, None) if secret is not None else None
        if step is None:
            return None
        plain, hashes = recovery.new_codes()

        def change(factors: dict[str, Any]) -> dict[str, Any]:
            if factors.get(FACTOR):
                raise TOTPAlreadyOn(username)
            factor = {"secret": pending["secret"], "last_step": step, "created": int(now)}
            return {**factors, FACTOR: factor, recovery.FACTOR: recovery.codes_factor(hashes, now)}

        if await self.accounts.update_factors(username, change) is None:
            raise NoEnrolment(username)  # the user is gone
        await self.enrolments.delete(key)
        return plain

    async def check(self, username: str, code: str) -> bool:
        """Whether ``code`` is a TOTP code of the user not accepted before; if so its step is now used."""
        return await self._change(username, code, totp=True, codes=False, then=None)

    async def check_or_spend(self, username: str, code: str) -> bool:
        """A TOTP code (as `check`) or else a recovery code (spent): whether it was either."""
        return await self._change(username, code, totp=True, codes=True, then=None)

    async def disable(self, username: str, code: str) -> bool:
        """Turn TOTP off, and void the recovery codes, if ``code`` is a current TOTP code or a recovery code.

        `TOTPNotOn` if the user has no TOTP.
        """

        def off(factors: dict[str, Any]) -> dict[str, Any]:
            if not factors.get(FACTOR):
                raise TOTPNotOn(username)
            return {k: v for k, v in factors.items() if k not in (FACTOR, recovery.FACTOR)}

        return await self._change(username, code, totp=True, codes=True, then=off)

    async def regenerate_codes(self, username: str, code: str) -> list[str] | None:
        """A new set of recovery codes, voiding the old, if ``code`` is a TOTP or recovery code; else None.

        `TOTPNotOn` if the user has neither TOTP nor recovery codes (no code could be right).
        """
        plain, hashes = recovery.new_codes()

        def renew(factors: dict[str, Any]) -> dict[str, Any]:
            return {**factors, recovery.FACTOR: recovery.codes_factor(hashes, self.clock())}

        return plain if await self._change(username, code, totp=True, codes=True, then=renew) else None

    async def prune(self) -> int:
        """Delete the enrolments never confirmed in time; how many."""
        return await self.enrolments.delete_where(where("expires") < self.clock())

    # -- inside the transaction ---------------------------------------------------------------

    async def _change(
        self,
        username: str,
        code: str,
        totp: bool,
        codes: bool,
        then: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ) -> bool:
        """Check ``code`` (a TOTP code, a recovery code) and apply ``then`` to the factors, in one transaction."""
        accepted = False
        now = self.clock()

        def change(factors: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal accepted
            accepted = False  # a transaction run again starts over
            if not factors.get(FACTOR) and not (codes and factors.get(recovery.FACTOR)):
                if then is not None:
                    raise TOTPNotOn(username)  # nothing to change: say so rather than "wrong code"
                return None
            factors = dict(factors)
            if totp and normalize_code(code) is not None:
                accepted = self._accept_totp(factors, code, now)
            elif codes:
                accepted = recovery.spend(factors, code)
            if not accepted:
                return None
            return then(factors) if then is not None else factors

        await self.accounts.update_factors(username, change)
        return accepted

    def _accept_totp(self, factors: dict[str, Any], code: str, now: float) -> bool:
        """Mark the code's step used in ``factors`` if the code is right and new; whether it was."""
        entry = factors.get(FACTOR)
        if not entry:
            return False
        secret = self._open(entry["secret"])
        if secret is None:
            return False
        step = matching_step(secret, code, now, entry.get("last_step"))
        if step is None:
            return False
        factors[FACTOR] = {**entry, "last_step": step}
        return True

    def _open(self, sealed: str) -> str | None:
        try:
            return self.box.open(sealed).decode("ascii")
        except SealBroken:
            # ACCESS_TOKEN_SECRET changed since the secret was sealed: no code can be checked (say so, not what).
            log.error("a TOTP secret cannot be opened: was ACCESS_TOKEN_SECRET changed? The user needs a recovery code or mfa-reset")
            return None
