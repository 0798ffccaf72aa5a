"""Signing in: the one extension point between "who it is" and "tokens issued", and the one way a sign-in ends.

A sign-in proves who the user is by some methods, named as RFC 8176 ``amr``
values (``pwd`` for a password). Plugins may step in after that proof and
before any token exists: a *sign-in step* (`PluginContext.sign_in_step`) sees
the `SignIn` and either lets it through (None) or stops it with the JSON
object to answer instead, such as ``{"mfaRequired": true, "mfaToken": ...}``.
Steps run in plugin order; the first that answers wins. A later factor (an
emailed code) or a policy (Admins need a second factor) is one more step.

Whatever stopped a sign-in finishes it later with `finish_sign_in`, as a
passwordless sign-in (a passkey) does from the start: it records the session
with its ``amr``, sets the refresh cookie and answers what ``/auth`` answers.
Every access token carries ``amr``, and a refreshed one keeps the ``amr`` of
the sign-in its session descends from, so `require_mfa` can ask for a second
factor on any route.
"""

from __future__ import annotations

import functools
import inspect
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol, Sequence, TypeVar

from .accounts import PASSWORD_AMR, fold_username
from .cookies import set_cookie_header
from .errors import APIError
from .roles import stored_roles
from .security import token_digest
from .signing import ACCESS, REFRESH

F = TypeVar("F", bound=Callable[..., Any])

#: ``amr`` values that are a second factor by themselves: RFC 8176's "mfa" (set by whoever checked one).
MFA = "mfa"
#: A passkey: proof of a hardware- or software-held key, with the user verified on the device (PIN, biometrics).
PASSKEY_KEYS = frozenset({"hwk", "swk"})
MFA_REQUIRED = "This needs a sign-in with a second factor."
REAUTH_NEEDED = "Your sign-in is not recent: give your current password ('pwd'), or sign in again."
WRONG_PASSWORD = "Current password is incorrect."
TOO_MANY_PASSWORDS = "Too many wrong passwords. Try again later."


class Handler(Protocol):
    """What signing in needs of a request handler (a `BaseHandler`; named structurally so this module, which
    `Services` and `PluginContext` name, does not import the handler module that imports them)."""

    services: Any
    current_user: Any
    username: Any

    def add_header(self, name: str, value: str) -> None: ...

    def finish(self, chunk: Any = None) -> Any: ...


@dataclass(frozen=True)
class SignIn:
    """A sign-in in progress: the user (as stored), how they have proved it so far, and the request."""

    user: dict[str, Any]
    amr: tuple[str, ...]
    handler: Handler

    @property
    def username(self) -> str:
        return str(self.user["username"])


#: A sign-in step: None lets the sign-in go on; a dict is the answer instead (200), and no token is issued.
SignInStep = Callable[[SignIn], Awaitable["dict[str, Any] | None"]]


async def run_sign_in_steps(steps: Sequence[SignInStep], sign_in: SignIn) -> dict[str, Any] | None:
    """The first answer a step gives, or None when every step lets the sign-in through."""
    for step in steps:
        answer = await step(sign_in)
        if answer is not None:
            return answer
    return None


async def finish_sign_in(handler: Handler, user: dict[str, Any], amr: Sequence[str], password_hash: str | None = None) -> None:
    """End a sign-in as ``/auth`` does: a session with ``amr``, the refresh cookie, ``{"roles", "accessToken"}``.

    ``password_hash`` is the hash the password was checked against, if one was:
    the session starts only if it is still the stored one (a password changed
    meanwhile makes this a 401, as for a login racing a reset). A sign-in with
    no password (a passkey) passes None: the user's current hash is used.
    """
    services = handler.services
    tokens = services.tokens
    username = user["username"]
    refresh = tokens.issue(REFRESH, username)
    current = password_hash if password_hash is not None else user["password"]
    now = int(time.time())
    if not await services.accounts.start_session(username, token_digest(refresh), tokens.ttl[REFRESH], current, list(amr), now):
        raise APIError(401, "Invalid username or password.", log_message="account changed during sign-in")
    roles = stored_roles(user)
    handler.add_header("Set-Cookie", set_cookie_header(services.settings, refresh, tokens.ttl[REFRESH]))
    handler.finish({"roles": roles, "accessToken": tokens.issue(ACCESS, username, roles=roles, amr=list(amr), auth_time=now)})


def has_second_factor(amr: Sequence[str] | None) -> bool:
    """Whether a sign-in with these ``amr`` values used more than one factor: ``mfa``, or a user-verified passkey."""
    methods = set(amr or PASSWORD_AMR)
    return MFA in methods or (bool(methods & PASSKEY_KEYS) and "user" in methods)


def require_mfa(method: F) -> F:
    """Let a handler method run only for a token whose sign-in used a second factor; else
    403 ``{"message", "mfaRequired": true}``, so a client knows to sign in again with one (step-up)."""
    if not callable(method):
        raise TypeError("require_mfa decorates handler methods")

    @functools.wraps(method)
    async def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        claims = self.current_user or {}
        if not has_second_factor(claims.get("amr")):
            raise APIError(403, MFA_REQUIRED, body={"mfaRequired": True})
        result = method(self, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    guarded.requires_mfa = True  # type: ignore[attr-defined]
    return guarded  # type: ignore[return-value]


def signed_in_within(claims: dict[str, Any] | None, seconds: int) -> bool:
    """Whether the sign-in an access token descends from (its ``auth_time``) was at most ``seconds`` ago."""
    return time.time() - int((claims or {}).get("auth_time") or 0) <= seconds


async def confirm_identity(handler: Handler, pwd: str | None, throttle: Any) -> None:
    """Ask for more than an access token before a change that would outlive it (where reset links go, a new factor).

    A sign-in within ``REAUTH_WINDOW`` is enough, as is the current password
    (``pwd``), checked as one guess on the user's key in ``throttle`` (a
    `Throttle`): 400 for a wrong one, 429 while locked. Otherwise 400 asking for
    the password: a token refreshed long after its sign-in (a stolen refresh
    cookie, an unattended browser) proves less than the person typing it.
    """
    settings = handler.services.settings
    if pwd is None:
        if signed_in_within(handler.current_user, settings.reauth_window):
            return
        raise APIError(400, REAUTH_NEEDED)
    username = handler.username or ""
    key = f"user:{fold_username(username)}"

    async def check() -> bool:
        user = await handler.services.accounts.user(username)
        return bool(await handler.services.passwords.check(pwd, user["password"] if user else None))

    wait, right = await throttle.guess({key: settings.login_max_failures}, key, check)
    if wait:
        raise APIError(429, TOO_MANY_PASSWORDS, headers={"Retry-After": str(wait)})
    if not right:
        raise APIError(400, WRONG_PASSWORD)

