import pytest

@pytest.mark.gen_test
async def test_flow(api, make_user):
    await make_user("alice")
    token = await api.login("alice")
    r = await api.get("/employees", headers={"Authorization": f"Bearer {token}"})
    assert r.code == 200, r.text
    print(r.json())
    r = await api.get("/refresh")
    assert r.code == 200, r.text
    r = await api.get("/logout")
    assert r.code == 204
    r = await api.get("/refresh")
    assert r.code == 401
    r = await api.get("/nope", headers={"Accept": "application/json"})
    print(r.code, r.text)
    r = await api.get("/css/style.css")
    print(r.code, r.headers.get("Content-Type"))
    r = await api.get("/")
    print(r.code, r.text[:40])
