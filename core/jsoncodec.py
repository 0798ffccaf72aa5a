"""JSON for stored documents, data files and private copies, shared by every store backend.

orjson when installed (a requirement), else the standard library. Every
backend encodes through here, so a value comes back the same from any of them:
non-string keys become strings, as in JSON; NaN and infinities become ``null``
with orjson (as JavaScript's ``JSON.stringify`` has them), and are refused
with a ValueError by the standard library.
"""

from __future__ import annotations

import json
from typing import Any, Callable

try:  # orjson parses ~5x and encodes ~18x faster than json (see bench/db_scaling.py)
    import orjson

    def dumps(obj: Any) -> bytes:
        """One compact JSON value, as bytes; TypeError for what JSON cannot hold."""
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)

    loads: Callable[[bytes | str], Any] = orjson.loads
except ImportError:  # pragma: no cover - exercised only without orjson installed

    def dumps(obj: Any) -> bytes:
        """One compact JSON value, as bytes; TypeError for what JSON cannot hold."""
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()

    loads = json.loads


def dumps_str(obj: Any) -> str:
    """One compact JSON value, as text (what a database driver sends as ``json``/``jsonb``)."""
    return dumps(obj).decode()


def copy(value: Any) -> Any:
    """A private copy of a JSON value (a JSON round trip: faster than deepcopy, and validates)."""
    return loads(dumps(value))
