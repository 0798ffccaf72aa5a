"""Login throttling: lock out a username, or a client address, after repeated failures.

Counts live in memory, per server process: a restart forgets them, and
behind several processes each keeps its own count. The lock is checked before
the password is, so while it lasts the right password gets 429 as well, and a
refused guess costs no bcrypt time.

An attempt is counted when it *starts* (before the slow bcrypt check) and
taken back if it succeeds, so a burst of parallel guesses cannot all get past
the check before the first failure is recorded: once ``limit`` attempts are
failed or in flight, further ones are refused.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable, Mapping

MAX_KEYS = 100_000  # bound memory whatever names or addresses an attacker sends


class _Entry:
    __slots__ = ("attempts", "locked_until")

    def __init__(self) -> None:
        self.attempts: deque[float] = deque()  # failed or still in flight, oldest first
        self.locked_until = 0.0


class LoginThrottle:
    """Per-key sliding window of ``window`` seconds; ``limit`` failures lock the key for ``lockout`` seconds.

    Keys map to their limit; a limit of 0 never locks.
    """

    def __init__(self, window: int, lockout: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.lockout = lockout
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

    def retry_after(self, limits: Mapping[str, int]) -> int:
        """Seconds to wait before another attempt on any of these keys; 0 if one may start now."""
        now = self.clock()
        wait = 0.0
        for key, limit in limits.items():
            entry = self._entries.get(key)
            if limit <= 0 or entry is None:
                continue
            self._expire(entry, now)
            if entry.locked_until > now:
                wait = max(wait, entry.locked_until - now)
            elif len(entry.attempts) >= limit:  # the quota is taken by attempts still in flight
                wait = max(wait, float(self.lockout))
        return math.ceil(wait)

    def begin(self, limits: Mapping[str, int]) -> None:
        """Count an attempt that is starting."""
        now = self.clock()
        for key, limit in limits.items():
            if limit <= 0:
                continue
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) >= MAX_KEYS:
                    self._evict(now)
                entry = self._entries[key] = _Entry()
            entry.attempts.append(now)

    def failed(self, limits: Mapping[str, int]) -> None:
        """The attempt failed: it stays counted, and a key that reached its limit is locked."""
        now = self.clock()
        for key, limit in limits.items():
            entry = self._entries.get(key)
            if limit <= 0 or entry is None:
                continue
            self._expire(entry, now)
            if len(entry.attempts) >= limit:
                entry.locked_until = now + self.lockout
                entry.attempts.clear()

    def succeeded(self, reset: str, *forgive: str) -> None:
        """The attempt succeeded: forget ``reset``'s failures; take back this one attempt for ``forgive`` keys."""
        entry = self._entries.get(reset)
        if entry is not None and entry.locked_until <= self.clock():
            del self._entries[reset]
        for key in forgive:
            entry = self._entries.get(key)
            if entry is not None and entry.attempts:
                entry.attempts.pop()

    def _expire(self, entry: _Entry, now: float) -> None:
        while entry.attempts and entry.attempts[0] <= now - self.window:
            entry.attempts.popleft()

    def _evict(self, now: float) -> None:
        stale = [
            k
            for k, e in self._entries.items()
            if e.locked_until <= now and (not e.attempts or e.attempts[-1] <= now - self.window)
        ]
        for key in stale:
            del self._entries[key]
        if len(self._entries) >= MAX_KEYS:  # all live: drop the oldest half rather than grow
            for key in list(self._entries)[: MAX_KEYS // 2]:
                del self._entries[key]
