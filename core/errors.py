"""One error type for handlers: a status, a client-safe message, and private details."""

from __future__ import annotations

from typing import Any

from tornado.web import HTTPError


class APIError(HTTPError):
    """An HTTP error whose ``message`` is shown to the client as ``{"message": ...}``.

    ``log_message`` goes to the error log only, so internals never reach the
    response. ``headers`` are added to the error response (``Retry-After``,
    ``WWW-Authenticate``...). ``body`` adds fields a client acts on beside the
    message (``{"mfaRequired": true}``).
    """

    def __init__(
        self,
        status_code: int,
        message: str | None = None,
        log_message: str | None = None,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(status_code, log_message)
        self.message = message
        self.headers = headers or {}
        self.body = body or {}
