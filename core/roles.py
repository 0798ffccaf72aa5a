"""The role guard: ``@require_roles(ADMIN)`` on a handler method.

Roles are the tutorial's numeric codes: User 2001, Editor 1984, Admin 5150.
A user holds a list of them (``"roles"`` on their record in the store's
``auth.users`` collection). The guard lets a request through if the user holds
*any* of the listed roles, and answers 403 otherwise. It is checked when the
handler is defined: an unknown role code is an error at import time, so a typo
stops the plugin from loading instead of locking everyone out (or in).

The user's roles come from the access token's ``roles`` claim when the token
carries one, else from the user's record in the store.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable, TypeVar

from .errors import APIError

USER = 2001
EDITOR = 1984
ADMIN = 5150
ROLES: dict[str, int] = {"User": USER, "Editor": EDITOR, "Admin": ADMIN}

F = TypeVar("F", bound=Callable[..., Any])


def role_codes(roles: Iterable[int | str]) -> list[int]:
    """Role codes from codes or names (``[5150, "editor", "1984"]`` -> ``[5150, 1984, 1984]``).

    Names match in any case and codes may be given as text, as operators type
    them in settings; anything unknown raises ValueError.
    """
    by_name = {name.lower(): code for name, code in ROLES.items()}
    out = []
    for role in roles:
        code: Any = None
        if isinstance(role, str):
            text = role.strip()
            code = int(text) if text.isascii() and text.isdecimal() and len(text) < 6 else by_name.get(text.lower())
        elif isinstance(role, int) and not isinstance(role, bool):
            code = role
        if code not in ROLES.values():
            raise ValueError(f"unknown role {role!r}; the roles are {known_roles()}")
        out.append(code)
    return out


def known_roles() -> str:
    """The roles for messages: ``User (2001), Editor (1984), Admin (5150)``."""
    return ", ".join(f"{name} ({code})" for name, code in ROLES.items())


async def user_roles(handler: Any) -> list[int]:
    """The roles of the user making the request (authenticating it first if needed)."""
    claims = handler.current_user or handler.authenticate()
    if isinstance(claims.get("roles"), list):
        return [r for r in claims["roles"] if isinstance(r, int)]
    record = await handler.services.accounts.user(claims.get("username"))
    return [] if record is None else stored_roles(record)


def require_roles(*roles: int | str) -> Callable[[F], F]:
    """Let a handler method run only for users holding at least one of ``roles``; else 403."""
    if not roles:
        raise ValueError("require_roles() needs at least one role")
    allowed = frozenset(role_codes(roles))

    def decorate(method: F) -> F:
        if not callable(method):
            raise TypeError("require_roles decorates handler methods")

        @functools.wraps(method)
        async def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not allowed.intersection(await user_roles(self)):
                raise APIError(403, "You do not have a role allowed to do this.")
            result = method(self, *args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        guarded.required_roles = tuple(sorted(allowed))  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return decorate


def parse_roles(text: str | Iterable[int | str]) -> list[int]:
    """Role codes from ``"Admin,Editor"`` (names any case, or codes), always with User, sorted.

    For operators: every account keeps the base User role whatever else it is given.
    """
    items = [i.strip() for i in text.split(",")] if isinstance(text, str) else list(text)
    codes = set(role_codes(i for i in items if i != ""))
    codes.add(USER)
    return sorted(codes)


def stored_roles(record: dict[str, Any]) -> list[int]:
    """The role codes on a user record; a record without any is a plain User."""
    roles = record.get("roles")
    if not isinstance(roles, list):
        return [USER]
    return sorted({r for r in roles if isinstance(r, int) and not isinstance(r, bool) and r in ROLES.values()})


def role_names(codes: Iterable[int]) -> list[str]:
    """Names for role codes, in the order User, Editor, Admin."""
    held = set(codes)
    return [name for name, code in ROLES.items() if code in held]


async def check_roles(handler: Any, allowed: Iterable[int]) -> None:
    """403 unless the user making the request holds one of ``allowed`` (for roles known only at run time)."""
    if not set(allowed).intersection(await user_roles(handler)):
        raise APIError(403, "You do not have a role allowed to do this.")
