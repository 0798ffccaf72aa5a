"""`Throttle.hit`: a rate limit (mails per hour) on the same store-backed throttle as logins, on every backend."""

from __future__ import annotations

import asyncio

import pytest
from clock_kit import Clock

from core.plugin import Throttle



@pytest.mark.gen_test
async def test_limit_events_pass_then_429_until_the_lockout_ends(open_store):
    clock = Clock(1_000_000.0)
    async with open_store() as store:
        throttle = Throttle(store.namespace("recovery"), window=3600, lockout=3600, clock=clock, collection="mail_rate")
        assert [await throttle.hit({"user:ann": 3}) for _ in range(3)] == [0, 0, 0]
        assert await throttle.hit({"user:ann": 3}) == 3600
        assert await throttle.hit({"user:bob": 3}) == 0  # another key is its own
        clock.now += 1800
        assert await throttle.hit({"user:ann": 3}) == 1800
        clock.now += 1801
        assert await throttle.hit({"user:ann": 3}) == 0


@pytest.mark.gen_test
async def test_a_refused_event_counts_on_no_key(open_store):
    """A 429 for the address must not use up the user's quota too."""
    clock = Clock(1_000_000.0)
    async with open_store() as store:
        throttle = Throttle(store.namespace("recovery"), window=3600, lockout=3600, clock=clock, collection="mail_rate")
        assert await throttle.hit({"ip:1.2.3.4": 1, "user:ann": 2}) == 0
        assert await throttle.hit({"ip:1.2.3.4": 1, "user:ann": 2}) > 0
        assert await throttle.hit({"ip:5.6.7.8": 1, "user:ann": 2}) == 0  # ann's second event: the first refused one did not count
        assert await throttle.hit({"ip:9.9.9.9": 1, "user:ann": 2}) > 0


@pytest.mark.gen_test
async def test_events_leave_the_window(open_store):
    clock = Clock(1_000_000.0)
    async with open_store() as store:
        throttle = Throttle(store.namespace("recovery"), window=60, lockout=600, clock=clock, collection="mail_rate")
        assert await throttle.hit({"k": 2}) == 0
        clock.now += 61
        assert await throttle.hit({"k": 2}) == 0  # the first one left the window: one in it
        clock.now += 1
        assert await throttle.hit({"k": 2}) == 0  # two in the window: the limit reached
        assert await throttle.hit({"k": 2}) == 600


@pytest.mark.gen_test(timeout=30)
async def test_a_burst_from_two_instances_passes_exactly_the_limit(open_store):
    async with open_store() as one, open_store() as two:
        throttles = [Throttle(s.namespace("recovery"), window=3600, lockout=3600, collection="mail_rate") for s in (one, two)]
        waits = await asyncio.gather(*(throttles[i % 2].hit({"addr:x@example.com": 5}) for i in range(16)))
        assert sum(1 for w in waits if w == 0) == 5
