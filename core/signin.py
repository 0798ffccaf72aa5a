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
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol, Sequence, TypeVar

from .accounts import PASSWORD_AMR
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


class Handler(Protocol):
    """What signing in needs of a request handler (a `BaseHandler`; named structurally so this module, which
    `Services` and `PluginContext` name, does not import the handler module that imports them)."""

    services: Any
    current_user: Any

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
    if not await services.accounts.start_session(username, token_digest(refresh), tokens.ttl[REFRESH], current, list(amr)):
        raise APIError(401, "Invalid username or password.", log_message="account changed during sign-in")
    roles = stored_roles(user)
    handler.add_header("Set-Cookie", set_cookie_header(services.settings, refresh, tokens.ttl[REFRESH]))
    handler.finish({"roles": roles, "accessToken": tokens.issue(ACCESS, username, roles=roles, amr=list(amr))})


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
