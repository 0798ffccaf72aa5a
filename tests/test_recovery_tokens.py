"""One-time tokens: 256 random bits, stored as SHA-256 only, single use even when redeemed concurrently, on both backends."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest
from clock_kit import Clock

from plugins.recovery.tokens import RESET, VERIFY, OneTimeTokens



@pytest.mark.gen_test
async def test_a_token_is_256_random_bits_stored_only_as_its_sha256(open_store):
    async with open_store() as store:
        tokens = OneTimeTokens(store.namespace("recovery"))
        raw = await tokens.issue(RESET, "ann", 60, email="ann@example.com")
        assert len(base64.urlsafe_b64decode(raw + "=")) == 32
        stored = await store.collection("recovery.tokens").items()
        assert [key for key, _ in stored] == [hashlib.sha256(raw.encode()).hexdigest()]
        assert raw not in repr(stored)


@pytest.mark.gen_test
async def test_redeemed_once_then_gone(open_store):
    async with open_store() as store:
        tokens = OneTimeTokens(store.namespace("recovery"))
        raw = await tokens.issue(VERIFY, "ann", 60, email="ann@example.com")
        assert (await tokens.peek(VERIFY, raw))["username"] == "ann"  # a peek uses nothing up
        assert (await tokens.redeem(VERIFY, raw))["email"] == "ann@example.com"
        assert await tokens.redeem(VERIFY, raw) is None
        assert await tokens.peek(VERIFY, raw) is None


@pytest.mark.gen_test(timeout=30)
async def test_of_concurrent_redeems_on_two_instances_one_wins(open_store):
    async with open_store() as one, open_store() as two:
        raw = await OneTimeTokens(one.namespace("recovery")).issue(RESET, "ann", 60)
        both = [OneTimeTokens(s.namespace("recovery")) for s in (one, two)]
        results = await asyncio.gather(*(both[i % 2].redeem(RESET, raw) for i in range(8)))
        assert sum(r is not None for r in results) == 1


@pytest.mark.gen_test
async def test_kind_and_expiry_are_checked(open_store):
    clock = Clock(1_000_000.0)
    async with open_store() as store:
        tokens = OneTimeTokens(store.namespace("recovery"), clock=clock)
        raw = await tokens.issue(VERIFY, "ann", 60)
        assert await tokens.peek(RESET, raw) is None  # a verify link is no reset link
        clock.now += 60
        assert await tokens.peek(VERIFY, raw) is None
        clock.now += 1
        assert await tokens.prune() == 1


@pytest.mark.gen_test
async def test_single_voids_the_users_earlier_tokens_of_that_kind_only(open_store):
    async with open_store() as store:
        tokens = OneTimeTokens(store.namespace("recovery"))
        await tokens.setup()
        first = await tokens.issue(RESET, "ann", 60)
        verify = await tokens.issue(VERIFY, "ann", 60)
        bobs = await tokens.issue(RESET, "bob", 60)
        second = await tokens.issue(RESET, "ann", 60, single=True)
        assert await tokens.peek(RESET, first) is None
        assert all([await tokens.peek(RESET, second), await tokens.peek(VERIFY, verify), await tokens.peek(RESET, bobs)])
