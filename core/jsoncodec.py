"""JSON encoding for the data files and for private copies: orjson when installed, else the standard library."""

from __future__ import annotations

import json
from typing import Any, Callable

try:  # orjson parses ~5x and encodes ~18x faster than json (see bench/db_scaling.py)
    import orjson

    def dumps(obj: Any) -> bytes:
        """One compact JSON value, as bytes."""
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)

    loads: Callable[[bytes | str], Any] = orjson.loads
except ImportError:  # pragma: no cover - exercised only without orjson installed

    def dumps(obj: Any) -> bytes:
        """One compact JSON value, as bytes."""
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()

    loads = json.loads


def copy(value: Any) -> Any:
    """A private copy of a JSON value (a JSON round trip: faster than deepcopy, and validates)."""
    return loads(dumps(value))
