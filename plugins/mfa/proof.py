"""Adding a factor asks for proof beyond the access token, when the sign-in was a password alone.

An access token can leak (a script on the page, a log). With one, whoever
holds it could add their own passkey, and sign in without a password from
then on, or enrol an authenticator the owner does not have. So a token whose
``amr`` has no second factor must come with the current password (``pwd``)
to add one; a token from a sign-in with a second factor (or a passkey) needs
nothing more. Wrong passwords count on the user's throttle key, as codes do.
"""

from __future__ import annotations

from typing import Any

from core.plugin import APIError, BaseHandler, Throttle, fold_username, has_second_factor

PASSWORD_NEEDED = "Give your current password ('pwd') to add a factor to a sign-in by password alone."
WRONG_PASSWORD = "Current password is incorrect."
TOO_MANY = "Too many wrong tries. Try again later."
#: The optional ``pwd`` property of the bodies that add a factor.
PWD = {"type": "string", "minLength": 1, "maxLength": 72, "description": "the current password; required with a password-only sign-in"}


async def require_proof(handler: BaseHandler, body: dict[str, Any], throttle: Throttle) -> None:
    """Return if the caller's sign-in had a second factor or ``body["pwd"]`` is their password; else 400 (or 429)."""
    if has_second_factor((handler.current_user or {}).get("amr")):
        return
    pwd = body.get("pwd")
    if not pwd:
        raise APIError(400, PASSWORD_NEEDED)
    username = handler.username or ""
    key = f"user:{fold_username(username)}"

    async def check() -> bool:
        user = await handler.services.accounts.user(username)
        return await handler.services.passwords.check(pwd, user["password"] if user else None)

    wait, right = await throttle.guess({key: handler.services.settings.login_max_failures}, key, check)
    if wait:
        raise APIError(429, TOO_MANY, headers={"Retry-After": str(wait)})
    if not right:
        raise APIError(400, WRONG_PASSWORD)
