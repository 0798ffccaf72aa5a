"""The notes plugin: per-user notes behind a login, everyone's notes behind the Admin role."""

import pytest

from core.plugin import ADMIN


@pytest.mark.gen_test
async def test_notes_need_a_login(api):
    response = await api.get("/notes")
    assert response.code == 401


@pytest.mark.gen_test
async def test_each_user_sees_only_their_own_notes(logged_in):
    alice, bob = await logged_in("alice"), await logged_in("bob")
    created = await alice.post("/notes", json={"text": "buy milk"})
    assert created.code == 201
    note_id = created.json()["id"]
    assert [n["text"] for n in (await alice.get("/notes")).json()] == ["buy milk"]
    assert (await bob.get("/notes")).json() == []
    assert (await bob.get(f"/notes/{note_id}")).code == 404
    assert (await bob.delete(f"/notes/{note_id}")).code == 404
    assert (await alice.delete(f"/notes/{note_id}")).code == 204
    assert (await alice.get(f"/notes/{note_id}")).code == 404


@pytest.mark.gen_test
async def test_empty_note_is_400(logged_in):
    alice = await logged_in("alice")
    response = await alice.post("/notes", json={"text": ""})
    assert response.code == 400
    assert response.json()["message"]


@pytest.mark.gen_test
async def test_all_notes_is_admin_only(logged_in):
    alice, boss = await logged_in("alice"), await logged_in("boss", roles=[ADMIN])
    await alice.post("/notes", json={"text": "mine"})
    assert (await alice.get("/notes/all")).code == 403
    response = await boss.get("/notes/all")
    assert response.code == 200
    assert [(n["owner"], n["text"]) for n in response.json()] == [("alice", "mine")]


@pytest.mark.gen_test
async def test_an_absurdly_long_id_is_404_not_500(logged_in):
    alice = await logged_in("alice")
    assert (await alice.get("/notes/" + "9" * 5000)).code == 404
