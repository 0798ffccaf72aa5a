"""`Throttle.guess`: the begin/verdict/settle protocol in one call, as the auth, recovery and mfa plugins use it."""

from __future__ import annotations

import pytest

from core.plugin import Throttle


async def right() -> bool:
    return True


async def wrong() -> bool:
    return False


async def broken() -> bool:
    raise RuntimeError("the check failed before any verdict")


@pytest.mark.gen_test
async def test_wrong_guesses_count_and_lock_and_a_right_one_then_gets_no_verdict(open_store):
    async with open_store() as store:
        throttle = Throttle(store.namespace("t"), window=60, lockout=60)
        limits = {"user:ann": 2}
        assert await throttle.guess(limits, "user:ann", wrong) == (0, False)
        wait, verdict = await throttle.guess(limits, "user:ann", wrong)
        assert wait == 0 and verdict is False  # the second failure locks the key...
        wait, verdict = await throttle.guess(limits, "user:ann", right)
        assert wait > 0 and verdict is False  # ...so even the right answer is a 429 with no verdict


@pytest.mark.gen_test
async def test_a_check_that_raises_is_no_guess(open_store):
    """With a failure on record, each attempt is marked when it starts; a check that raises must take its mark back."""
    async with open_store() as store:
        throttle = Throttle(store.namespace("t"), window=60, lockout=60)
        limits = {"user:bob": 3}
        assert await throttle.guess(limits, "user:bob", wrong) == (0, False)
        for _ in range(3):
            with pytest.raises(RuntimeError):
                await throttle.guess(limits, "user:bob", broken)
        assert await throttle.guess(limits, "user:bob", right) == (0, True)  # 1 failure, no stale marks: not locked
