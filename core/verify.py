"""The verify mixin: the Tornado port of the tutorial's ``verifyJWT`` middleware."""

from __future__ import annotations

from typing import Any

from .errors import APIError
from .signing import ACCESS, TokenInvalid


class VerifyJWTMixin:
    """Checks ``Authorization: Bearer <access token>``.

    No header, or a header that is not ``Bearer``, is 401 (log in first); a
    token that is expired, forged or of the wrong type is 403 (refresh first).
    On success ``self.current_user`` holds the token's claims.
    """

    def authenticate(self) -> dict[str, Any]:
        header = self.request.headers.get("Authorization", "")  # type: ignore[attr-defined]
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise APIError(401, "Missing bearer token.", headers={"WWW-Authenticate": "Bearer"})
        try:
            claims = self.services.tokens.verify(ACCESS, token.strip())  # type: ignore[attr-defined]
        except TokenInvalid as exc:
            raise APIError(403, "Invalid or expired access token.", log_message=f"access token refused: {exc}") from None
        self.current_user = claims
        return claims
