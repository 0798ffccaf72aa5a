"""The employees CRUD API: the tutorial's sample protected resource."""

import json

import pytest

SAMPLE = [{"id": 1, "firstname": "Dave", "lastname": "Gray"}, {"id": 2, "firstname": "John", "lastname": "Smith"}]


@pytest.mark.gen_test
async def test_list_starts_with_the_seeded_rows(api, headers):
    response = await api.get("/employees", headers=headers)
    assert response.code == 200
    assert response.json() == SAMPLE


@pytest.mark.gen_test
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
async def test_every_method_needs_a_token(api, method):
    response = await api.request(method, "/employees", json={"id": 1, "firstname": "A", "lastname": "B"})
    assert response.code == 401


@pytest.mark.gen_test
async def test_create(api, headers):
    response = await api.post("/employees", json={"firstname": "Ada", "lastname": "Lovelace"}, headers=headers)
    assert response.code == 201
    assert response.json() == [*SAMPLE, {"id": 3, "firstname": "Ada", "lastname": "Lovelace"}]


@pytest.mark.gen_test
@pytest.mark.parametrize("body", [{}, {"firstname": "Ada"}, {"lastname": "Lovelace"}, {"firstname": "", "lastname": "L"}])
async def test_create_without_a_name_is_400(api, headers, body):
    response = await api.post("/employees", json=body, headers=headers)
    assert response.code == 400
    assert response.json() == {"message": "First and last names are required."}


@pytest.mark.gen_test
async def test_update(api, headers):
    response = await api.put("/employees", json={"id": 2, "lastname": "Smythe"}, headers=headers)
    assert response.code == 200
    assert response.json()[1] == {"id": 2, "firstname": "John", "lastname": "Smythe"}


@pytest.mark.gen_test
async def test_update_unknown_is_400(api, headers):
    response = await api.put("/employees", json={"id": 99, "firstname": "X"}, headers=headers)
    assert response.code == 400
    assert response.json() == {"message": "Employee ID 99 not found"}


@pytest.mark.gen_test
async def test_delete(api, headers):
    response = await api.delete("/employees", json={"id": 1}, headers=headers)
    assert response.code == 200
    assert response.json() == SAMPLE[1:]


@pytest.mark.gen_test
async def test_delete_unknown_is_400(api, headers):
    response = await api.delete("/employees", json={"id": 42}, headers=headers)
    assert response.code == 400
    assert response.json() == {"message": "Employee ID 42 not found"}


@pytest.mark.gen_test
async def test_get_one(api, headers):
    response = await api.get("/employees/2", headers=headers)
    assert response.code == 200
    assert response.json() == SAMPLE[1]


@pytest.mark.gen_test
async def test_get_unknown_is_400(api, headers):
    response = await api.get("/employees/77", headers=headers)
    assert response.code == 400
    assert response.json() == {"message": "Employee ID 77 not found"}


@pytest.mark.gen_test
async def test_ids_are_never_reused_after_delete(api, headers):
    """The tutorial's "last id + 1" handed a deleted id to the next employee."""
    await api.post("/employees", json={"firstname": "A", "lastname": "A"}, headers=headers)  # id 3
    await api.delete("/employees", json={"id": 3}, headers=headers)
    response = await api.post("/employees", json={"firstname": "B", "lastname": "B"}, headers=headers)
    assert [e["id"] for e in response.json()] == [1, 2, 4]


@pytest.mark.gen_test
async def test_fields_come_in_one_order_on_every_backend(app, api, headers):
    """id, firstname, lastname, as the tutorial and the JSON store give them (PostgreSQL's jsonb would not)."""
    await api.post("/employees", json={"lastname": "Lovelace", "firstname": "Ada"}, headers=headers)
    await api.put("/employees", json={"id": 1, "lastname": "Grey"}, headers=headers)
    for path in ("/employees", "/employees/1", "/employees/3"):
        response = await api.get(path, headers=headers)
        body = json.loads(response.body)
        for row in body if isinstance(body, list) else [body]:
            assert list(row) == ["id", "firstname", "lastname"], (app.services.store.backend, path, row)
