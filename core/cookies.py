"""The refresh cookie, written by hand because `http.cookies` cannot say ``Partitioned``."""

from __future__ import annotations

from .config import Settings

REFRESH_COOKIE = "jwt"


def _attributes(settings: Settings) -> list[str]:
    attrs = ["HttpOnly", "Path=/"]
    if settings.cookie_secure:
        attrs += ["Secure", "SameSite=None"]
        if settings.cookie_partitioned:
            attrs.append("Partitioned")
    else:
        attrs.append("SameSite=Lax")
    return attrs


def set_cookie_header(settings: Settings, value: str, max_age: int) -> str:
    """``Set-Cookie`` value for a refresh token living ``max_age`` seconds."""
    return "; ".join([f"{REFRESH_COOKIE}={value}", *_attributes(settings), f"Max-Age={max_age}"])


def clear_cookie_header(settings: Settings) -> str:
    """``Set-Cookie`` value that deletes the refresh cookie: same attributes, empty, expired."""
    return "; ".join([f"{REFRESH_COOKIE}=", *_attributes(settings), "Expires=Thu, 01 Jan 1970 00:00:00 GMT"])
