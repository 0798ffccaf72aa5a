"""Password hashing: bcrypt, off the event loop, and no shortcut for unknown users."""

import threading

import pytest

from core.security import PasswordHasher


@pytest.mark.gen_test
async def test_hash_and_check_run_off_the_event_loop(monkeypatch):
    hasher = PasswordHasher(rounds=4)
    loop_thread = threading.get_ident()
    seen = []
    real_hash, real_check = hasher._hash_sync, hasher._check_sync
    monkeypatch.setattr(hasher, "_hash_sync", lambda p: seen.append(threading.get_ident()) or real_hash(p))
    monkeypatch.setattr(hasher, "_check_sync", lambda p, h: seen.append(threading.get_ident()) or real_check(p, h))
    hashed = await hasher.hash("a password")
    assert hashed.startswith("$2b$04$")
    assert await hasher.check("a password", hashed)
    assert not await hasher.check("another one", hashed)
    assert len(seen) == 3 and loop_thread not in seen


@pytest.mark.gen_test
async def test_unknown_user_is_checked_against_a_dummy_hash(monkeypatch):
    hasher = PasswordHasher(rounds=4)
    checked = []
    real_check = hasher._check_sync
    monkeypatch.setattr(hasher, "_check_sync", lambda p, h: checked.append(h) or real_check(p, h))
    assert await hasher.check("whatever", None) is False
    assert checked and checked[0].startswith("$2b$04$") and len(checked[0]) == 60
