"""Two real server processes on one PostgreSQL database, signing with EdDSA: one keyring, one key set.

Both start at once, so both race to make the first key; the store's transaction
lets exactly one make it. A rotation from the command line reaches both.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
from pg_servers import PROJECT, SECRETS, call, start_server

PWD = "correct horse"
EDDSA = {"ACCESS_TOKEN_ALGORITHM": "EdDSA", "JWKS_MAX_AGE": "30s"}


@pytest.fixture
def servers(pg_url, tmp_path):
    with ThreadPoolExecutor(2) as pool:  # started together: both find an empty keyring
        started = [pool.submit(start_server, pg_url, tmp_path, name, **EDDSA) for name in ("a", "b")]
        errors = [f.exception() for f in started]
    running = [f.result() for f in started if f.exception() is None]
    if any(errors):
        for server in running:
            server.stop()
        raise next(e for e in errors if e)
    yield [s.url for s in running]
    for server in running:
        assert "Traceback" not in server.stop()


async def key_set(base: str) -> list[str]:
    reply = await call(base, "GET", "/.well-known/jwks.json")
    assert reply.code == 200 and reply.headers["Cache-Control"] == "public, max-age=30"
    return [key["kid"] for key in reply.body["keys"]]


def rotate_now(pg_url: str) -> str:
    env = {**{k: v for k, v in os.environ.items() if not k.endswith("_TOKEN_SECRET")}, **SECRETS, **EDDSA, "DATABASE_URL": pg_url}
    done = subprocess.run([sys.executable, str(PROJECT / "server.py"), "keys", "rotate", "--now"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[1]  # "staged <kid> (EdDSA): ..."


def test_two_instances_share_one_key_and_a_rotation_reaches_both(servers, pg_url):
    a, b = servers

    async def main() -> None:
        [first] = await key_set(a)
        assert await key_set(b) == [first]
        assert (await call(a, "POST", "/register", {"user": "alice", "pwd": PWD})).code == 201
        tokens = {}
        for name, base in (("a", a), ("b", b)):
            reply = await call(base, "POST", "/auth", {"user": "alice", "pwd": PWD})
            tokens[name] = reply.body["accessToken"]
            assert jwt.get_unverified_header(tokens[name])["kid"] == first
        for token in tokens.values():
            for base in (a, b):
                assert (await call(base, "GET", "/employees", token=token)).code == 200

        staged = await asyncio.to_thread(rotate_now, pg_url)
        deadline = time.monotonic() + 15
        while True:  # each server's own reload publishes it and then signs with it
            reply = await call(b, "POST", "/auth", {"user": "alice", "pwd": PWD})
            if jwt.get_unverified_header(reply.body["accessToken"])["kid"] == staged:
                break
            assert time.monotonic() < deadline, "server b never signed with the rotated key"
            await asyncio.sleep(0.25)
        new = reply.body["accessToken"]
        assert sorted(await key_set(a)) == sorted(await key_set(b)) == sorted([first, staged])
        for token in (*tokens.values(), new):
            for base in (a, b):
                assert (await call(base, "GET", "/employees", token=token)).code == 200

    asyncio.run(main())
