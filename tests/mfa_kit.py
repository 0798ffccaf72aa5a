"""Helpers for the mfa plugin's tests: TOTP codes made, the store and DATA_DIR read whole."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyotp





def code_at(secret: str, when: float | None = None) -> str:
    """The TOTP code of ``secret`` at ``when`` (now by default)."""
    return pyotp.TOTP(secret).at(time.time() if when is None else when)


def secret_of(uri: str) -> str:
    """The base32 secret in an otpauth URI."""
    return pyotp.parse_uri(uri).secret


async def store_dump(store: Any) -> str:
    """Every document of every collection, as one JSON text: what a copy of the database would show."""
    out = {}
    for name in await store.collections():
        out[name] = await store.collection(name).items()
    return json.dumps(out, default=str)


def data_files_text(data_dir: Path) -> str:
    """Every file under ``DATA_DIR`` (the JSON backend's data), as text."""
    return "".join(p.read_bytes().decode("utf-8", "replace") for p in sorted(Path(data_dir).rglob("*")) if p.is_file())
