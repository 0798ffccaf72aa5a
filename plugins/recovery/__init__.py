"""Account recovery: email addresses on accounts, their verification, and forgotten-password resets by mail."""

from __future__ import annotations

routes: list = []
