"""Filters are data: comparisons hold only between values of one kind, and an index never changes an answer (every backend)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from core.store import Cond, Store, matches, where

# Values chosen to trip equality up: 1 == 1.0 == True, also inside lists and objects ([1] == [True]), "1" != 1.
VALUES = [0, 1, 1.0, 2.5, -3, True, False, "1", "a", "b", "", None, [1], [1.0], [True], ["1"], [0], [False], [0.0, "x"],
          {"a": 1}, {"a": 1.0}, {"a": True}, {"a": "1"}, {"a": {"b": [True]}}, {"a": {"b": [1.0]}}, {"a": None}, [None], [[]]]
MISSING = object()


def docs() -> dict[str, dict]:
    out = {f"k{i}": {"v": value, "i": i} for i, value in enumerate(VALUES)}
    out["missing"] = {"i": -1}
    return out


async def fill(store: Store, names: list[str]) -> None:
    for name in names:
        async with store.transaction() as tx:
            for key, doc in docs().items():
                await tx.collection(name).put(key, doc)


def keys(found: list[dict]) -> list[int]:
    return sorted(d["i"] for d in found)


def expected(conds: tuple[Cond, ...], equals: dict) -> list[int]:
    return sorted(d["i"] for d in docs().values() if matches(d, conds, equals))


def test_comparisons_hold_only_between_values_of_one_kind(open_store):
    async def run() -> None:
        async with open_store() as store:
            await fill(store, ["t.docs"])
            coll = store.collection("t.docs")
            by_i = {d["i"]: d.get("v", MISSING) for d in docs().values()}

            async def values(*conds: Cond) -> list:
                return sorted((by_i[i] for i in keys(await coll.find(*conds))), key=repr)

            assert await values(where("v") < 1) == sorted([0, -3], key=repr)
            assert await values(where("v") <= 1) == sorted([0, 1, 1.0, -3], key=repr)
            assert await values(where("v") > 1) == [2.5]
            assert await values(where("v") >= 2.5) == [2.5]
            assert await values(where("v") > "") == sorted(["1", "a", "b"], key=repr)
            assert await values(where("v") < "b") == sorted(["", "1", "a"], key=repr)
            # != is a comparison too: only numbers take part against a number (no bool, None, string, list or missing).
            assert await values(where("v") != 1) == sorted([0, 2.5, -3], key=repr)
            assert await values(where("v") != "a") == sorted(["1", "b", ""], key=repr)
            assert keys(await coll.find(where("v") > 0, where("v") < 2)) == [1, 2]
            assert await coll.count(where("v") >= 0) == 4
            assert await coll.find(where("nothing") < 10) == []

    asyncio.run(run())


def test_every_filter_agrees_with_the_reference_semantics(open_store):
    async def run() -> None:
        async with open_store() as store:
            await fill(store, ["t.docs"])
            coll = store.collection("t.docs")
            filters: list[tuple[tuple[Cond, ...], dict]] = [((), {"v": value}) for value in VALUES]
            filters += [((Cond("v", op, value),), {}) for op in ("<", "<=", ">", ">=", "!=") for value in (0, 1, 2.5, "", "a", "1")]
            filters += [((where("i") >= 3,), {"v": None}), ((), {"v": 1, "i": 1}), ((), {"v": 1, "i": 99})]
            for conds, equals in filters:
                assert keys(await coll.find(*conds, **equals)) == expected(conds, equals), (conds, equals)
                assert await coll.count(*conds, **equals) == len(expected(conds, equals)), (conds, equals)

    asyncio.run(run())


def test_a_missing_field_equals_none(open_store):
    async def run() -> None:
        async with open_store() as store:
            await fill(store, ["t.docs"])
            found = await store.collection("t.docs").find(v=None)
            assert sorted(d["i"] for d in found) == [-1, VALUES.index(None)]
            await store.ensure_index("t.docs", "v")
            found = await store.collection("t.docs").find(v=None)
            assert sorted(d["i"] for d in found) == [-1, VALUES.index(None)]

    asyncio.run(run())


def test_indexed_and_unindexed_equality_give_the_same_results(open_store):
    async def run() -> None:
        async with open_store() as store:
            await fill(store, ["t.plain", "t.indexed"])
            await store.ensure_index("t.indexed", "v")
            plain, indexed = store.collection("t.plain"), store.collection("t.indexed")
            for value in VALUES + [2, "2", [], {}, ["a", 1], (1,), {1}]:
                want = keys(await plain.find(v=value))
                assert keys(await indexed.find(v=value)) == want, value
                assert await indexed.count(v=value) == len(want), value
                if not isinstance(value, (tuple, set)):
                    assert want == expected((), {"v": value}), value
            # The same inside a transaction, where staged writes are not in the index yet.
            async with store.transaction() as tx:
                for name in ("t.plain", "t.indexed"):
                    view = tx.collection(name)
                    await view.put("k1", {"v": "moved", "i": 1})
                    await view.put("new", {"v": 1.0, "i": 100})
                    await view.delete("k2")
                for value in VALUES + ["moved"]:
                    assert keys(await tx.collection("t.indexed").find(v=value)) == keys(await tx.collection("t.plain").find(v=value)), value
            assert keys(await indexed.find(v=1)) == keys(await plain.find(v=1)) == [5, 100]

    asyncio.run(run())


def test_delete_where_requires_a_filter(open_store):
    async def run() -> None:
        async with open_store() as store:
            await fill(store, ["t.docs"])
            coll = store.collection("t.docs")
            with pytest.raises(ValueError, match="filter"):
                await coll.delete_where()
            async with store.transaction() as tx:
                with pytest.raises(ValueError, match="filter"):
                    await tx.collection("t.docs").delete_where()
            assert await coll.count() == len(docs())
            assert await coll.delete_where(where("v") < 1) == 2
            assert await coll.delete_where(v=None) == 2
            assert await coll.count() == len(docs()) - 4

    asyncio.run(run())


def test_callables_and_bad_field_names_are_refused(open_store):
    async def run() -> None:
        async with open_store() as store:
            await fill(store, ["t.docs"])
            coll = store.collection("t.docs")
            for call in (coll.find, coll.count, coll.delete_where):
                with pytest.raises(TypeError, match="Cond"):
                    await call(lambda d: True)
            with pytest.raises(ValueError, match="field"):
                await coll.find(**{"a.b": 1})
            with pytest.raises(ValueError, match="field"):
                await store.ensure_index("t.docs", "a-b")
            with pytest.raises(TypeError):
                where("v") < None  # noqa: B015 - the comparison itself must be refused
            with pytest.raises(TypeError):
                where("v") < True  # noqa: B015
            assert await coll.count() == len(docs())

    asyncio.run(run())


def test_conds_and_equality_combine(open_store):
    async def run() -> None:
        async with open_store() as store:
            await fill(store, ["t.docs"])
            coll = store.collection("t.docs")
            await store.ensure_index("t.docs", "v")
            for value, bound in itertools.product((1, "a", None), (0, 5, 10)):
                assert keys(await coll.find(where("i") > bound, v=value)) == expected((Cond("i", ">", bound),), {"v": value})

    asyncio.run(run())
