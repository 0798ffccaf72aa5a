"""Lookups by key or by an indexed field never scan the collection."""

from __future__ import annotations

import asyncio

from core.jsondb import Store, _Table


class NoScan(dict):
    """A documents dict that fails the test if anything iterates over it."""

    def _scan(self, *args, **kwargs):
        raise AssertionError("the collection was scanned")

    __iter__ = items = values = keys = _scan  # type: ignore[assignment]


def test_get_and_indexed_find_do_not_scan(tmp_path):
    async def run() -> None:
        store = Store(tmp_path).open()
        sessions = store.collection("auth.sessions")
        sessions.ensure_index("username")
        async with store.transaction() as tx:
            for i in range(2000):
                tx.collection("auth.sessions").put(f"digest{i}", {"username": f"user{i % 500}", "expires": i})
        table: _Table = store._tables["auth.sessions"]
        table.docs = NoScan(table.docs)

        assert sessions.get("digest7") == {"username": "user7", "expires": 7}
        assert "digest1999" in sessions
        assert sorted(d["expires"] for d in sessions.find(username="user3")) == [3, 503, 1003, 1503]
        # The index follows updates and deletes, including inside a transaction before commit.
        await sessions.update("digest3", {"username": "moved"})
        await sessions.delete("digest503")
        async with store.transaction() as tx:
            view = tx.collection("auth.sessions")
            view.put("digest9999", {"username": "user3", "expires": 9999})
            assert sorted(d["expires"] for d in view.find(username="user3")) == [1003, 1503, 9999]
        assert sorted(d["expires"] for d in sessions.find(username="user3")) == [1003, 1503, 9999]
        assert [d["expires"] for d in sessions.find(username="moved")] == [3]
        await store.close()

    asyncio.run(run())


def test_index_is_rebuilt_on_load_and_delete_where_prunes(tmp_path):
    async def run() -> None:
        store = Store(tmp_path).open()
        async with store.transaction() as tx:
            for i in range(1000):
                tx.collection("auth.sessions").put(f"d{i}", {"username": f"u{i % 10}", "expires": i})
        reopened = Store(tmp_path).open()
        sessions = reopened.collection("auth.sessions")
        sessions.ensure_index("username")
        assert len(sessions.find(username="u1")) == 100
        assert await sessions.delete_where(lambda d: d["expires"] < 600) == 600
        assert sessions.count() == 400 and len(sessions.find(username="u1")) == 40
        assert Store(tmp_path).open().collection("auth.sessions").count() == 400
        await store.close()
        await reopened.close()

    asyncio.run(run())


def test_returned_documents_are_private_copies(tmp_path):
    async def run() -> None:
        store = Store(tmp_path).open()
        docs = store.collection("t.docs")
        await docs.put("a", {"tags": ["x"]})
        docs.get("a")["tags"].append("y")
        docs.all()[0]["tags"].append("z")
        docs.find()[0]["tags"].append("w")
        async with store.transaction() as tx:
            tx.collection("t.docs").all()[0]["tags"].append("v")
        assert docs.get("a") == {"tags": ["x"]}
        await store.close()

    asyncio.run(run())
