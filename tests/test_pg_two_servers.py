"""Two real server processes on one PostgreSQL database behave as one service."""

from __future__ import annotations

import asyncio

import pytest
from pg_servers import call, start_server

from core.pg import PgStore
from core.pg.testing import require_server, reset_database

PWD = "correct horse"


@pytest.fixture(scope="module")
def pg_url(pg_database):
    """This run's test database, emptied once for this module's two servers (each test uses names of its own)."""
    asyncio.run(reset_database(require_server(), pg_database))
    return pg_database


@pytest.fixture(scope="module")
def servers(pg_url, tmp_path_factory):
    """Servers A and B on one database, refresh reuse grace off; started once for the module."""
    workdir = tmp_path_factory.mktemp("servers")
    a = start_server(pg_url, workdir, "a", REFRESH_REUSE_GRACE="0")
    try:
        b = start_server(pg_url, workdir, "b", REFRESH_REUSE_GRACE="0")
    except BaseException:
        a.stop()
        raise
    yield a.url, b.url
    for server in (a, b):
        out = server.stop()
        assert "Traceback" not in out, out


async def login(base: str, user: str) -> str:
    reply = await call(base, "POST", "/auth", {"user": user, "pwd": PWD})
    assert reply.code == 200 and reply.cookie, reply
    return reply.cookie


def test_registered_on_a_logs_in_on_b(servers):
    a, b = servers

    async def main() -> None:
        assert (await call(a, "POST", "/register", {"user": "alice", "pwd": PWD})).code == 201
        assert (await call(b, "POST", "/register", {"user": "alice", "pwd": PWD})).code == 409
        await login(b, "alice")

    asyncio.run(main())


def test_100_interleaved_registrations_are_all_kept(servers, pg_url):
    a, b = servers

    async def main() -> None:
        replies = await asyncio.gather(
            *(call(a if i % 2 else b, "POST", "/register", {"user": f"user{i}", "pwd": PWD}) for i in range(100))
        )
        assert [r.code for r in replies] == [201] * 100
        store = await PgStore.connect(pg_url, pool_size=1)
        try:
            names = {u["username"] for u in await store.collection("auth.users").all()}
        finally:
            await store.close()
        assert {n for n in names if n.startswith("user")} == {f"user{i}" for i in range(100)}

    asyncio.run(main())


def test_one_refresh_token_at_a_and_b_at_once_rotates_at_most_once(servers, pg_url):
    a, b = servers

    async def main() -> None:
        assert (await call(a, "POST", "/register", {"user": "carol", "pwd": PWD})).code == 201
        for _ in range(10):
            token = await login(a, "carol")
            replies = await asyncio.gather(call(a, "GET", "/refresh", cookie=token), call(b, "GET", "/refresh", cookie=token))
            assert sorted(r.code for r in replies) in ([200, 403], [403, 403]), replies
            successors = [r.cookie for r in replies if r.code == 200 and r.cookie]
            assert len(successors) <= 1
            if successors:  # the loser presented a retired token: the whole family, successor included, is gone
                assert (await call(b, "GET", "/refresh", cookie=successors[0])).code == 403

    asyncio.run(main())


def test_a_token_replayed_on_b_after_rotation_on_a_revokes_the_family(servers):
    a, b = servers

    async def main() -> None:
        assert (await call(a, "POST", "/register", {"user": "dave", "pwd": PWD})).code == 201
        first = await login(a, "dave")
        rotated = await call(a, "GET", "/refresh", cookie=first)
        assert rotated.code == 200 and rotated.cookie
        assert (await call(b, "GET", "/refresh", cookie=first)).code == 403  # replay, grace window 0
        assert (await call(a, "GET", "/refresh", cookie=rotated.cookie)).code == 403  # the family was revoked
        assert (await call(b, "GET", "/refresh", cookie=rotated.cookie)).code == 403

    asyncio.run(main())


def test_a_logout_on_a_ends_the_session_for_b(servers):
    a, b = servers

    async def main() -> None:
        assert (await call(b, "POST", "/register", {"user": "erin", "pwd": PWD})).code == 201
        token = await login(a, "erin")
        other = await login(b, "erin")
        assert (await call(a, "GET", "/logout", cookie=token)).code in (200, 204)
        assert (await call(b, "GET", "/refresh", cookie=token)).code == 403
        assert (await call(b, "GET", "/refresh", cookie=other)).code == 200  # another login lives on

    asyncio.run(main())
