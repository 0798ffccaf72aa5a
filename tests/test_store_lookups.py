"""Lookups by key or by an indexed field never scan the collection; indexes never change an answer."""

from __future__ import annotations

import asyncio

from store_kit import closing

from core.jsondb import JsonStore
from core.jsondb.tables import Table
from core.store import where


class NoScan(dict):
    """A documents dict that fails the test if anything iterates over it."""

    def _scan(self, *args, **kwargs):
        raise AssertionError("the collection was scanned")

    __iter__ = items = values = keys = _scan  # type: ignore[assignment]


def test_get_and_indexed_find_do_not_scan(tmp_path):
    """JSON only: it watches the JSON store's in-memory table (PostgreSQL's plans: test_pg_store)."""

    async def run() -> None:
        async with closing(JsonStore(tmp_path).open()) as store:
            sessions = store.collection("auth.sessions")
            await store.ensure_index("auth.sessions", "username")
            async with store.transaction() as tx:
                for i in range(2000):
                    await tx.collection("auth.sessions").put(f"digest{i}", {"username": f"user{i % 500}", "expires": i})
            table: Table = store._tables["auth.sessions"]
            table.docs = NoScan(table.docs)

            assert await sessions.get("digest7") == {"username": "user7", "expires": 7}
            assert await sessions.exists("digest1999")
            assert sorted(d["expires"] for d in await sessions.find(username="user3")) == [3, 503, 1003, 1503]
            # A comparison next to an indexed equality only filters the indexed matches.
            assert sorted(d["expires"] for d in await sessions.find(where("expires") > 1000, username="user3")) == [1003, 1503]
            assert await sessions.count(username="user3") == 4
            # The index follows updates and deletes, including inside a transaction before commit.
            await sessions.update("digest3", {"username": "moved"})
            await sessions.delete("digest503")
            async with store.transaction() as tx:
                view = tx.collection("auth.sessions")
                await view.put("digest9999", {"username": "user3", "expires": 9999})
                assert sorted(d["expires"] for d in await view.find(username="user3")) == [1003, 1503, 9999]
            assert sorted(d["expires"] for d in await sessions.find(username="user3")) == [1003, 1503, 9999]
            assert [d["expires"] for d in await sessions.find(username="moved")] == [3]

    asyncio.run(run())


def test_index_is_rebuilt_on_load_and_delete_where_prunes(open_store):
    async def run() -> None:
        async with open_store() as store:
            async with store.transaction() as tx:
                for i in range(1000):
                    await tx.collection("auth.sessions").put(f"d{i}", {"username": f"u{i % 10}", "expires": i})
            async with open_store() as reopened:
                sessions = reopened.collection("auth.sessions")
                await reopened.ensure_index("auth.sessions", "username")
                await reopened.ensure_index("auth.sessions", "username")  # idempotent
                assert len(await sessions.find(username="u1")) == 100
                assert await sessions.delete_where(where("expires") < 600) == 600
                assert await sessions.count() == 400 and len(await sessions.find(username="u1")) == 40
                async with open_store() as again:
                    assert await again.collection("auth.sessions").count() == 400

    asyncio.run(run())


def test_returned_documents_are_private_copies(open_store):
    async def run() -> None:
        async with open_store() as store:
            docs = store.collection("t.docs")
            await docs.put("a", {"tags": ["x"]})
            (await docs.get("a"))["tags"].append("y")
            (await docs.all())[0]["tags"].append("z")
            (await docs.find())[0]["tags"].append("w")
            (await docs.items())[0][1]["tags"].append("u")
            async with store.transaction() as tx:
                (await tx.collection("t.docs").all())[0]["tags"].append("v")
                (await tx.collection("t.docs").items())[0][1]["tags"].append("t")
            assert await docs.get("a") == {"tags": ["x"]}

    asyncio.run(run())
