"""JSON for documents: orjson when installed (as the JSON store uses), else the standard library.

The JSON store encodes with the same options, so a value comes back the
same from either backend (non-string keys become strings, as in JSON).
"""

from __future__ import annotations

import json
from typing import Any, Callable

try:
    import orjson

    def _encode(obj: Any) -> str:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

    loads: Callable[[str | bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - exercised only without orjson installed

    def _encode(obj: Any) -> str:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    loads = json.loads


def dumps(obj: Any) -> str:
    """JSON text of ``obj``; TypeError for what JSON cannot hold."""
    return _encode(obj)


def copy(obj: Any) -> Any:
    """A private copy of a JSON value (a round trip: also proves it is JSON)."""
    return loads(_encode(obj))
