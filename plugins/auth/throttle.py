"""Login throttling: lock out a username, or a client address, after repeated failures.

Counts live in memory, per server process: a restart forgets them, and
behind several processes each keeps its own count. The lock is checked before
the password is, so while it lasts the right password gets 429 as well, and a
refused guess costs no bcrypt time.

An attempt is counted when it *starts* (before the slow bcrypt check), so a
burst of parallel guesses cannot all get past the check before the first
failure is recorded: once ``limit`` attempts are failed or in flight, further
ones are refused. Every attempt then ends one of three ways: ``failed`` (a
wrong password: it stays counted), ``succeeded``, or ``abandoned`` (anything
raised before a verdict, such as a full bcrypt queue or a store error). The
last two take it back, so only wrong passwords ever lock anyone out.
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


class Attempt:
    """One attempt as counted by `LoginThrottle.begin`: which entries it was added to, and when."""

    __slots__ = ("limits", "started", "counted")

    def __init__(self, limits: Mapping[str, int], started: float) -> None:
        self.limits = limits
        self.started = started
        self.counted: list[tuple[str, _Entry]] = []


class LoginThrottle:
    """Per-key sliding window of ``window`` seconds; ``limit`` failures lock the key for ``lockout`` seconds.

    Keys map to their limit; a limit of 0 never locks.
    """

    def __init__(self, window: int, lockout: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.lockout = lockout
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._full_until = 0.0  # every tracked key is locked until then: see `_evict`

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

    def begin(self, limits: Mapping[str, int]) -> Attempt:
        """Count an attempt that is starting; settle it with `failed`, `succeeded` or `abandoned`."""
        now = self.clock()
        attempt = Attempt(limits, now)
        for key, limit in limits.items():
            if limit <= 0:
                continue
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) >= MAX_KEYS and not self._evict(now):
                    continue  # every tracked key is locked: see `_evict`
                entry = self._entries[key] = _Entry()
            entry.attempts.append(now)
            attempt.counted.append((key, entry))
        return attempt

    def failed(self, attempt: Attempt) -> None:
        """A wrong password: the attempt stays counted, and a key that reached its limit is locked."""
        now = self.clock()
        for key, limit in attempt.limits.items():
            entry = self._entries.get(key)
            if limit <= 0 or entry is None:
                continue
            self._expire(entry, now)
            if len(entry.attempts) >= limit:
                entry.locked_until = now + self.lockout
                entry.attempts.clear()

    def succeeded(self, attempt: Attempt, reset: str) -> None:
        """The right password: forget ``reset``'s failures, and take this attempt back from its other keys."""
        entry = self._entries.get(reset)
        if entry is not None and entry.locked_until <= self.clock():
            del self._entries[reset]
        self.abandoned(attempt)

    def abandoned(self, attempt: Attempt) -> None:
        """The attempt raised before a verdict on the password: take it back from every key it was counted on.

        It told the client nothing about the password, so it must not count as a
        guess. Only this attempt's own mark is removed, and only from the entry it
        was added to (not from one that replaced it, nor after a lock cleared it),
        so the failures and in-flight attempts of other requests stay counted.
        """
        for key, entry in attempt.counted:
            if self._entries.get(key) is not entry:
                continue  # reset by a success or evicted meanwhile
            try:
                entry.attempts.remove(attempt.started)
            except ValueError:
                continue  # already expired, or cleared when the key was locked
            if not entry.attempts and entry.locked_until <= self.clock():
                del self._entries[key]  # nothing left to remember: free the slot
        attempt.counted.clear()

    def _expire(self, entry: _Entry, now: float) -> None:
        while entry.attempts and entry.attempts[0] <= now - self.window:
            entry.attempts.popleft()

    def _evict(self, now: float) -> bool:
        """Make room for a new key at the ``MAX_KEYS`` cap; False when there is none.

        A live lock is never evicted: otherwise an attacker who locked a user
        could flood fresh names or addresses to push the lock out and guess
        again. First go entries with nothing left in the window, then unlocked
        entries, oldest first, down to half the cap so the scan is rare.

        When every tracked key is locked, the new key is not tracked (and so not
        throttled) until the first lock ends. Memory stays bounded and every
        existing lock holds; refusing untracked keys instead would let whoever
        filled the table lock every other user out too. Filling it takes
        ``MAX_KEYS`` locks, each ``limit`` failed bcrypt checks from addresses not
        locked themselves. The table is not rescanned before the earliest lock
        ends, so a flood of new keys meanwhile does not cost a scan each.
        """
        if now < self._full_until:
            return False
        stale = [
            k
            for k, e in self._entries.items()
            if e.locked_until <= now and (not e.attempts or e.attempts[-1] <= now - self.window)
        ]
        for key in stale:
            del self._entries[key]
        if len(self._entries) >= MAX_KEYS:
            unlocked = [k for k, e in self._entries.items() if e.locked_until <= now]
            for key in unlocked[: len(self._entries) - MAX_KEYS // 2]:
                del self._entries[key]
        if len(self._entries) < MAX_KEYS:
            return True
        self._full_until = min(e.locked_until for e in self._entries.values())
        return False
