"""A clock a test moves by hand: what the throttle, tokens, keyring and factors take as ``clock=``."""

from __future__ import annotations

import time


class Clock:
    """Returns ``now``; starts at ``start`` (the real time if none), and moves only when the test sets ``now``."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now
