"""PgStore keeps the store's promises exactly as the JSON store does: same documents, same filters, same ids."""

from __future__ import annotations

import asyncio
import json
import math

import asyncpg
import pytest

from core.jsondb import JsonStore
from core.pg import PgStore
from core.pg.testing import run_with_store
from core.store import Cond, KeyExists, Store, matches, where

MISSING = object()
VALUES = [
    MISSING, None, True, False, 0, 1, 1.0, 2, -3, 2.5, 2**63, "", "a", "B", "é", "10", "1", [1], [], {"a": 1}, {},
]  # fmt: skip
COMPARED = [0, 1, 1.5, -1, 2**63, "a", "", "B", float("inf"), float("nan")]


def _exact(value) -> str:
    """Equality that also tells 1 from 1.0 and True from 1."""
    return json.dumps(value, sort_keys=True)


def _variants(collection: str) -> dict[str, dict]:
    """Documents whose fields take every kind of value, the typed columns' fields and the key's included."""
    docs: dict[str, dict] = {}
    for i, value in enumerate(VALUES):
        for field in ("v", "expires", "username", "roles", "digest"):
            key = f"k{i}{field}"
            if collection == "auth.sessions":
                doc = {"digest": key, "username": "alice", "family": "f1", "created": 5, "expires": 100, "retired": None}
            elif collection == "auth.users":
                doc = {"username": key, "password": "hash", "roles": [1], "created": 7}
            else:
                doc = {}
            doc.pop(field, None)
            if value is not MISSING:
                doc[field] = value
            doc["tag"] = key
            docs[key] = doc
    return docs


FILTER_FIELDS = ("v", "expires", "username", "roles", "created", "family", "digest", "nothere")


def _filters():
    for field in FILTER_FIELDS:
        for value in VALUES[1:]:
            yield (), {field: value}
        for op in ("<", "<=", ">", ">=", "!="):
            for value in COMPARED:
                yield (Cond(field, op, value),), {}
    yield (where("expires") > 0,), {"username": "alice"}
    yield (where("v") >= 0, where("v") < 2), {}


@pytest.mark.parametrize("collection", ["things", "auth.sessions", "auth.users"])
def test_documents_and_filters_match_the_reference_and_the_json_store(pg_url, tmp_path, collection):
    docs = _variants(collection)
    filters = list(_filters())

    async def body(pg: PgStore) -> None:
        js = JsonStore(tmp_path / "json").open()
        try:
            for store in (pg, js):
                async with store.transaction() as tx:
                    for key, doc in docs.items():
                        await tx.collection(collection).put(key, doc)
            # Every document reads back exactly: values, their kinds, and the keys present.
            pg_pairs = dict(await pg.collection(collection).items())
            assert {k: _exact(d) for k, d in pg_pairs.items()} == {k: _exact(d) for k, d in docs.items()}
            assert [_exact(d) for d in await pg.collection(collection).all()] == [_exact(d) for d in docs.values()]

            async def compare(conds, equals) -> None:
                expected = sorted(k for k, d in docs.items() if matches(d, conds, equals))
                found = sorted(_key(collection, d) for d in await pg.collection(collection).find(*conds, **equals))
                from_json = sorted(_key(collection, d) for d in await js.collection(collection).find(*conds, **equals))
                assert found == expected, (conds, equals)
                assert from_json == expected, (conds, equals)
                assert await pg.collection(collection).count(*conds, **equals) == len(expected)

            for start in range(0, len(filters), 50):
                await asyncio.gather(*(compare(c, e) for c, e in filters[start : start + 50]))
            # Inside a transaction the same filters give the same answers.
            async with pg.transaction() as tx:
                view = tx.collection(collection)
                for conds, equals in filters[::7]:
                    expected = sorted(k for k, d in docs.items() if matches(d, conds, equals))
                    assert sorted(_key(collection, d) for d in await view.find(*conds, **equals)) == expected
        finally:
            await js.close()

    run_with_store(pg_url, body)


def _key(collection: str, doc: dict) -> str:
    return doc["tag"]


def test_documents_handed_out_are_private_copies(pg_url):
    async def body(store: PgStore) -> None:
        things = store.collection("things")
        doc = {"tags": ["a"], "n": {"x": 1}}
        returned = await things.put("one", doc)
        doc["tags"].append("changed outside")
        returned["tags"].append("changed the returned copy")
        got = await things.get("one")
        got["n"]["x"] = 99
        assert await things.get("one") == {"tags": ["a"], "n": {"x": 1}}
        async with store.transaction() as tx:
            inside = await tx.collection("things").get("one")
            inside["tags"].clear()
            assert await tx.collection("things").get("one") == {"tags": ["a"], "n": {"x": 1}}

    run_with_store(pg_url, body)


def test_insert_update_delete_and_their_errors(pg_url):
    async def body(store: PgStore) -> None:
        things = store.collection("things")
        assert await things.insert({"a": 1}, key="x") == {"a": 1}
        with pytest.raises(KeyExists):
            await things.insert({"a": 2}, key="x")
        assert await things.update("x", {"b": 2}) == {"a": 1, "b": 2}
        assert await things.update("x", {"a": None}) == {"a": None, "b": 2}
        assert await things.update("nobody", {"a": 1}) is None
        assert await things.get("nobody") is None
        assert await things.exists("x") and not await things.exists("nobody")
        assert await things.delete("x") is True
        assert await things.delete("x") is False
        with pytest.raises(ValueError):
            await things.delete_where()
        with pytest.raises(TypeError):
            await things.find(lambda d: True)
        with pytest.raises(TypeError):
            await things.put("y", ["not", "a", "dict"])
        # A KeyExists inside a transaction leaves it usable, as on the JSON store.
        await things.put("z", {"n": 1})
        async with store.transaction() as tx:
            with pytest.raises(KeyExists):
                await tx.collection("things").insert({}, key="z")
            await tx.collection("things").put("w", {"n": 2})
        assert sorted(d["n"] for d in await things.all()) == [1, 2]
        # delete_where removes exactly the matches.
        for i in range(10):
            await things.put(f"e{i}", {"expires": i})
        assert await things.delete_where(where("expires") < 5) == 5
        assert sorted(d["expires"] for d in await things.find(where("expires") >= 0)) == [5, 6, 7, 8, 9]

    run_with_store(pg_url, body)


def test_automatic_ids_never_repeat(pg_url):
    async def first(store: PgStore) -> None:
        staff = store.collection("employees")
        assert await store.id_counter("employees") == 1
        assert (await staff.insert({"name": "a"}))["id"] == 1
        assert (await staff.insert({"name": "b"}))["id"] == 2
        await staff.delete(2)
        assert (await staff.insert({"name": "c"}))["id"] == 3
        await staff.insert({"name": "by hand"}, key=10)  # a numeric key moves the counter past it
        assert (await staff.insert({"name": "d"}))["id"] == 11
        await staff.put("12", {"name": "put, not insert"})  # put does not move it: insert skips the key
        assert (await staff.insert({"name": "e"}))["id"] == 13
        await store.advance_id_counter("employees", 20)
        await store.advance_id_counter("employees", 5)  # never back
        assert await store.id_counter("employees") == 20
        with pytest.raises(ValueError):
            await store.advance_id_counter("employees", 2**53)
        with pytest.raises(TypeError):
            await store.advance_id_counter("employees", "30")
        for doc in await staff.all():
            await staff.delete(doc.get("id", 12))

    async def after_restart(store: PgStore) -> None:
        assert (await store.collection("employees").insert({"name": "f"}))["id"] == 20
        assert "employees" in await store.collections()
        # Concurrent inserts from one pool all get distinct ids.
        docs = await asyncio.gather(*(store.collection("employees").insert({"n": i}) for i in range(30)))
        assert sorted(d["id"] for d in docs) == list(range(21, 51))

    run_with_store(pg_url, first)
    run_with_store(pg_url, after_restart)


def test_users_and_sessions_live_in_real_tables(pg_url):
    user = {"username": "alice", "password": "$2b$hash", "roles": [1, 2], "created": 1700000000}
    session = {
        "digest": "d" * 64, "username": "alice", "family": "fam", "created": 1, "expires": 2,
        "retired": None, "successor": None, "note": {"extra": True},
    }  # fmt: skip

    async def body(store: PgStore) -> list:
        await store.collection("auth.users").insert(user, key="alice")
        await store.collection("auth.sessions").put(session["digest"], session)
        assert await store.collection("auth.users").get("alice") == user
        assert list(await store.collection("auth.sessions").get(session["digest"])) == list(session)  # same key order
        with pytest.raises(ValueError, match="password"):
            await store.collection("auth.users").put("bob", {"username": "bob"})
        # Documents that do not carry their key (or carry another) are kept as they are, as on the JSON store.
        await store.collection("auth.sessions").put("abc", {"username": "alice", "expires": 1})
        await store.collection("auth.sessions").put("xyz", {"digest": "other"})
        assert await store.collection("auth.sessions").get("abc") == {"username": "alice", "expires": 1}
        assert await store.collection("auth.sessions").find(digest="other") == [{"digest": "other"}]
        assert await store.collection("auth.sessions").count(digest=None) == 1
        for key in ("abc", "xyz"):
            await store.collection("auth.sessions").delete(key)
        assert await store.collections() == ["auth.sessions", "auth.users"]

    run_with_store(pg_url, body)

    async def rows() -> tuple:
        conn = await asyncpg.connect(pg_url)
        try:
            u = await conn.fetchrow("SELECT username, password, created, extra::text FROM users")
            s = await conn.fetchrow("SELECT digest, username, family, expires, retired, extra::text FROM sessions")
            indexes = {r[0] for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'sessions'")}
            return u, s, indexes
        finally:
            await conn.close()

    u, s, indexes = asyncio.run(rows())
    assert tuple(u) == ("alice", "$2b$hash", 1700000000, "{}")
    assert tuple(s)[:5] == (session["digest"], "alice", "fam", 2, None)
    assert json.loads(s[5]) == {"retired": None, "successor": None, "note": {"extra": True}}
    assert {"sessions_pkey", "sessions_family", "sessions_username", "sessions_expires"} <= indexes


def test_ensure_index_builds_a_partial_expression_index_once(pg_url):
    async def body(store: PgStore) -> None:
        await store.ensure_index("notes.notes", "owner")
        await store.ensure_index("notes.notes", "owner")
        await store.ensure_index("auth.sessions", "username")  # a typed column: already indexed
        for i in range(200):
            await store.collection("notes.notes").put(str(i), {"owner": f"u{i % 20}"})
        assert len(await store.collection("notes.notes").find(owner="u3")) == 10
        async with store.connections.connection() as conn:
            rows = await conn.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = 'documents' AND indexname LIKE 'ix_%'")
            assert len(rows) == 1
            assert "(doc -> 'owner'::text)" in rows[0][0] and "WHERE (collection = 'notes.notes'::text)" in rows[0][0]
            await conn.execute("SET enable_seqscan = off")
            plan = "\n".join(
                r[0] for r in await conn.fetch(
                    "EXPLAIN SELECT * FROM documents WHERE collection = 'notes.notes' AND (doc -> 'owner') = $1::jsonb", '"u3"'
                )
            )
            await conn.execute("RESET enable_seqscan")
        assert "ix_notes_notes_owner" in plan

    run_with_store(pg_url, body)


def test_all_lists_documents_in_first_write_order(pg_url):
    async def body(store: PgStore) -> None:
        things = store.collection("things")
        for key in ("b", "a", "10", "2"):
            await things.put(key, {"k": key})
        await things.put("a", {"k": "a again"})  # a replacement keeps its place, as in a dict
        assert [k for k, _ in await things.items()] == ["b", "a", "10", "2"]

    run_with_store(pg_url, body)


def test_nan_and_infinity_comparisons_follow_python(pg_url):
    async def body(store: PgStore) -> None:
        things = store.collection("things")
        await things.put("a", {"x": 1})
        await things.put("b", {"x": "s"})
        assert await things.count(where("x") < math.inf) == 1
        assert await things.count(where("x") < math.nan) == 0
        assert await things.count(where("x") != math.nan) == 1

    run_with_store(pg_url, body)


def test_session_lookups_and_pruning_use_the_indexes(pg_url):
    from core.pg.tables import SESSIONS, Params

    async def body(store: PgStore) -> None:
        async with store.connections.connection() as conn:
            await conn.execute("SET enable_seqscan = off")
            for conds, equals, index in [
                ((where("expires") < 50,), {}, "sessions_expires"),
                ((), {"username": "u5"}, "sessions_username"),
                ((), {"family": "f7"}, "sessions_family"),
                ((), {"digest": "d1"}, "sessions_pkey"),
            ]:
                params = Params()
                sql = SESSIONS.select_sql(SESSIONS.filter_sql(conds, equals, params))
                plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *params.values))
                assert index in plan and "Seq Scan" not in plan, plan
            await conn.execute("RESET enable_seqscan")

    run_with_store(pg_url, body)


def test_a_closed_store_answers_503_and_reports_unwritable(pg_url):
    from core.store import StoreUnavailable

    async def main() -> None:
        store = await PgStore.connect(pg_url, pool_size=1)
        await store.close()
        with pytest.raises(StoreUnavailable):
            await store.collection("things").get("x")
        with pytest.raises(StoreUnavailable):
            async with store.transaction():
                pass
        health = await store.check()
        assert health.writable is False and "closed" in (health.error or "")

    asyncio.run(main())


def test_two_instances_ensure_the_same_index_at_once(pg_url):
    async def main() -> None:
        stores = [await PgStore.connect(pg_url, pool_size=2) for _ in range(3)]
        try:
            await asyncio.gather(*(s.ensure_index("plug.items", "owner") for s in stores))
            async with stores[0].connections.connection() as conn:
                names = await conn.fetch("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'ix_plug_items_owner_%'")
                fields = await conn.fetch("SELECT field FROM indexed_fields WHERE collection = 'plug.items'")
            assert len(names) == 1 and [r[0] for r in fields] == ["owner"]
        finally:
            for s in stores:
                await s.close()

    asyncio.run(main())
