"""Login throttling: lock out a username, or a client address, after repeated failures.

Counts live in memory, per server process: a restart forgets them, and
behind several processes each keeps its own count. A lock is checked before
the password is, so while it lasts the right password gets 429 as well, and a
locked-out guess costs no bcrypt time at all.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable

MAX_KEYS = 100_000  # bound memory whatever names or addresses an attacker sends


class _Entry:
    __slots__ = ("failures", "locked_until")

    def __init__(self) -> None:
        self.failures: deque[float] = deque()
        self.locked_until = 0.0


class LoginThrottle:
    """Sliding-window failure counts per key; ``limit`` failures within ``window`` lock the key for ``lockout``."""

    def __init__(self, window: int, lockout: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.lockout = lockout
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

    def retry_after(self, *keys: str) -> int:
        """Seconds until every key given is unlocked; 0 if none is locked."""
        now = self.clock()
        waits = [e.locked_until - now for k in keys if (e := self._entries.get(k)) and e.locked_until > now]
        return math.ceil(max(waits)) if waits else 0

    def failure(self, key: str, limit: int) -> None:
        """Count a failed login for ``key``; lock it when ``limit`` (0 = never) is reached."""
        if limit <= 0:
            return
        now = self.clock()
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= MAX_KEYS:
                self._evict(now)
            entry = self._entries[key] = _Entry()
        entry.failures.append(now)
        while entry.failures and entry.failures[0] <= now - self.window:
            entry.failures.popleft()
        if len(entry.failures) >= limit:
            entry.locked_until = now + self.lockout
            entry.failures.clear()

    def success(self, key: str) -> None:
        """Forget ``key``'s failures (a lock already set stays)."""
        entry = self._entries.get(key)
        if entry is not None and entry.locked_until <= self.clock():
            del self._entries[key]

    def forgive(self, key: str) -> None:
        """Take back one failure counted in advance for an attempt that succeeded."""
        entry = self._entries.get(key)
        if entry is not None and entry.failures:
            entry.failures.pop()

    def _evict(self, now: float) -> None:
        stale = [
            k for k, e in self._entries.items() if e.locked_until <= now and (not e.failures or e.failures[-1] <= now - self.window)
        ]
        for key in stale:
            del self._entries[key]
        if len(self._entries) >= MAX_KEYS:  # all live: drop the oldest half rather than grow
            for key in list(self._entries)[: MAX_KEYS // 2]:
                del self._entries[key]
