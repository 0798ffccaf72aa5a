"""GET /metrics: counts that match what was sent, fixed label values, access rules, and several processes summed."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from bench.harness import PASSWORD, ServerProcess
from core.cookies import REFRESH_COOKIE
from core.pytest_plugin import DEFAULT_PASSWORD
from plugins.metrics.handlers import may_read_metrics

TOKEN = "metrics-token-" + "x" * 20


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of the exposition, by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(api, **headers: str) -> dict:
    response = await api.get("/metrics", headers=headers)
    assert response.code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return parse(response.text)


def requests_total(samples: dict, method: str, route: str, status: int) -> float:
    return value(samples, "turnstile_http_requests_total", method=method, route=route, status=str(status))


@pytest.mark.gen_test
async def test_request_counts_match_what_was_sent_by_method_route_and_status(api, logged_in):
    client = await logged_in("alice")
    before = await scrape(api)
    for _ in range(3):
        assert (await client.get("/employees")).code == 200
    assert (await client.get("/employees/1")).code == 200
    assert (await client.get("/employees/999999")).code == 400
    assert (await api.get("/employees")).code == 401  # no token
    for _ in range(2):
        assert (await api.get("/no-such-page")).code == 404
    assert (await api.request("BREW", "/employees")).code == 405
    after = await scrape(api)

    def delta(method: str, route: str, status: int) -> float:
        return requests_total(after, method, route, status) - requests_total(before, method, route, status)

    assert delta("GET", "/employees", 200) == 3
    assert delta("GET", "/employees/([^/]+)", 200) == 1
    assert delta("GET", "/employees/([^/]+)", 400) == 1
    assert delta("GET", "/employees", 401) == 1
    assert delta("GET", "unmatched", 404) == 2
    assert delta("other", "/employees", 405) == 1  # a method name is user input too
    assert delta("GET", "/metrics", 200) == 1  # the first scrape, counted once it was answered
    duration = value(after, "turnstile_http_request_duration_seconds_count", route="/employees")
    assert duration - value(before, "turnstile_http_request_duration_seconds_count", route="/employees") == 5  # 3 + 401 + 405


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=2)
async def test_logins_are_counted_by_outcome(api, app, make_user):
    await make_user("bob")
    assert (await api.post("/auth", json={"user": "bob", "pwd": DEFAULT_PASSWORD})).code == 200
    for _ in range(2):
        assert (await api.post("/auth", json={"user": "bob", "pwd": "wrong password"})).code == 401
    assert (await api.post("/auth", json={"user": "bob", "pwd": DEFAULT_PASSWORD})).code == 429
    assert (await api.post("/auth", json={})).code == 400  # no attempt at all: not counted
    hasher = app.services.passwords
    hasher.pending = hasher.capacity  # every bcrypt thread busy and the queue full
    try:
        assert (await api.post("/auth", json={"user": "carol", "pwd": DEFAULT_PASSWORD})).code == 503
    finally:
        hasher.pending = 0
    samples = await scrape(api)
    counts = {o: value(samples, "turnstile_logins_total", outcome=o) for o in ("ok", "bad_credentials", "locked", "overloaded")}
    assert counts == {"ok": 1, "bad_credentials": 2, "locked": 1, "overloaded": 1}
    assert value(samples, "turnstile_hash_rejected_total") == 1


@pytest.mark.gen_test
@pytest.mark.settings(hash_workers=1)
async def test_hash_queue_depth_follows_the_bcrypt_calls_in_progress(api, app):
    hasher = app.services.passwords
    release = threading.Event()
    blocker = hasher.executor.submit(release.wait, 10)  # hold the only bcrypt thread
    calls = [asyncio.ensure_future(hasher.check(DEFAULT_PASSWORD, None)) for _ in range(3)]
    try:
        await asyncio.sleep(0.05)  # each call is now waiting for the thread
        assert value(await scrape(api), "turnstile_hash_queue_depth") == 3
    finally:
        release.set()
    await asyncio.gather(*calls)
    assert blocker.result()
    assert value(await scrape(api), "turnstile_hash_queue_depth") == 0


def refresh_counts(samples: dict) -> dict[str, float]:
    return {o: value(samples, "turnstile_refresh_total", outcome=o) for o in ("rotated", "grace", "reused", "unknown")}


@pytest.mark.gen_test
async def test_refreshes_are_counted_by_outcome_rotated_and_grace(api, logged_in):
    client = await logged_in("dave")
    first = client.cookies[REFRESH_COOKIE]
    assert (await client.refresh()).code == 200  # rotated
    assert (await api.get("/refresh", headers={"Cookie": f"{REFRESH_COOKIE}={first}"}, cookies=False)).code == 200  # grace
    assert refresh_counts(await scrape(api)) == {"rotated": 1, "grace": 1, "reused": 0, "unknown": 0}


@pytest.mark.gen_test
@pytest.mark.settings(refresh_reuse_grace=0)
async def test_refreshes_are_counted_by_outcome_reused_and_unknown(api, logged_in):
    client = await logged_in("erin")
    first = client.cookies[REFRESH_COOKIE]
    assert (await client.refresh()).code == 200  # rotated
    assert (await api.get("/refresh", headers={"Cookie": f"{REFRESH_COOKIE}={first}"}, cookies=False)).code == 403  # reused
    # The reuse revoked the session: its newest token is now unknown.
    assert (await client.refresh()).code == 403
    assert refresh_counts(await scrape(api)) == {"rotated": 1, "grace": 0, "reused": 1, "unknown": 1}


@pytest.mark.gen_test
async def test_no_label_value_comes_from_user_input(api, logged_in):
    name = "u" + uuid.uuid4().hex[:12]
    path_word = "p" + uuid.uuid4().hex[:12]
    client = await logged_in(name)
    await api.post("/auth", json={"user": name, "pwd": "wrong password"})
    await client.get(f"/employees/{path_word}")
    await api.get(f"/{path_word}/x?{path_word}=1")
    await api.request(path_word.upper(), f"/{path_word}")
    text = (await api.get("/metrics")).text
    assert "turnstile_http_requests_total" in text
    assert name not in text and path_word not in text.lower()


@pytest.mark.gen_test
async def test_store_writes_are_timed_and_reads_are_not(api, app, make_user, logged_in):
    before = value(await scrape(api), "turnstile_store_write_seconds_count")
    await make_user("frank")  # one transaction that writes the user
    after_write = value(await scrape(api), "turnstile_store_write_seconds_count")
    assert after_write == before + 1
    client = await logged_in("frank")
    written = value(await scrape(api), "turnstile_store_write_seconds_count")
    for _ in range(3):
        assert (await client.get("/employees")).code == 200
    assert value(await scrape(api), "turnstile_store_write_seconds_count") == written


@pytest.mark.gen_test
async def test_store_writes_are_timed_on_postgres_too(pg_url, tmp_path):
    from core.app import create_app
    from core.pytest_plugin import make_settings

    app = await create_app(make_settings(tmp_path, database_url=pg_url))
    try:
        histogram = app.services.metrics.store_write_seconds
        users = app.services.store.collection("metrics_probe")
        start = sum(s.value for s in histogram.collect()[0].samples if s.name.endswith("_count"))
        await users.put("a", {"n": 1})  # a one-statement write
        await users.update("a", {"n": 2})  # a transaction that wrote
        await users.get("a")
        async with app.services.store.transaction() as tx:  # a transaction that only read
            await tx.collection("metrics_probe").get("a")
        count = sum(s.value for s in histogram.collect()[0].samples if s.name.endswith("_count"))
        assert count - start == 2
    finally:
        await app.services.close()


@pytest.mark.gen_test
@pytest.mark.settings(metrics_token=TOKEN)
async def test_with_metrics_token_only_that_bearer_token_gets_an_answer(api):
    assert (await api.get("/metrics")).code == 404  # even from loopback
    assert (await api.get("/metrics", headers={"Authorization": "Bearer wrong"})).code == 404
    assert (await api.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})).code == 404
    response = await api.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.code == 200 and "turnstile_logins_total" in response.text


def fake_request(peer: str, **headers: str) -> HTTPServerRequest:
    connection = SimpleNamespace(context=SimpleNamespace(address=(peer, 40000), remote_ip=peer, protocol="http"))
    start_line = RequestStartLine("GET", "/metrics", "HTTP/1.1")
    headers = {"Host": "turnstile.example", **headers}
    return HTTPServerRequest(start_line=start_line, headers=HTTPHeaders(headers), connection=connection)


def test_without_a_token_only_loopback_peers_may_read_and_forwarding_headers_are_not_trusted():
    assert may_read_metrics(fake_request("127.0.0.1"), "")
    assert may_read_metrics(fake_request("127.3.4.5"), "")
    assert may_read_metrics(fake_request("::1"), "")
    assert not may_read_metrics(fake_request("203.0.113.7", **{"X-Real-Ip": "127.0.0.1", "X-Forwarded-For": "127.0.0.1"}), "")
    assert not may_read_metrics(fake_request("::ffff:203.0.113.7"), "")
    assert not may_read_metrics(fake_request("127.0.0.1"), TOKEN)  # a token set applies to loopback too
    assert may_read_metrics(fake_request("203.0.113.7", Authorization=f"Bearer {TOKEN}"), TOKEN)


def test_two_server_processes_sharing_a_multiprocess_dir_are_summed(tmp_path: Path):
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "DATA_DIR": str(tmp_path / "data")}
    with ServerProcess(tmp_path / "a", **env) as a, ServerProcess(tmp_path / "b", **env) as b:

        def scrape_from(server: ServerProcess) -> dict:
            status, _, body = server.request("GET", "/metrics")
            assert status == 200, body
            return parse(body.decode())

        # A process counts a request just after writing its answer; a request it answered since
        # proves the earlier one counted. So b answers one more (its start-up probe counted) first.
        scrape_from(b)
        before = scrape_from(a)
        for _ in range(3):
            assert a.request("GET", "/healthz")[0] == 200
        for _ in range(2):
            assert b.request("GET", "/healthz")[0] == 200
        assert b.request("POST", "/register", {"user": "gina", "pwd": PASSWORD})[0] == 201
        assert a.request("POST", "/auth", {"user": "gina", "pwd": PASSWORD})[0] == 200
        assert b.request("POST", "/auth", {"user": "gina", "pwd": "wrong password"})[0] == 401
        for server in (b, a):  # b first: its answer proves its last request (the 401) counted
            after = scrape_from(server)
            healthz = requests_total(after, "GET", "/healthz", 200) - requests_total(before, "GET", "/healthz", 200)
            assert healthz == 5
            assert requests_total(after, "GET", "/metrics", 200) - requests_total(before, "GET", "/metrics", 200) >= 1
            assert value(after, "turnstile_logins_total", outcome="ok") == 1
            assert value(after, "turnstile_logins_total", outcome="bad_credentials") == 1
            assert value(after, "turnstile_hash_queue_depth") == 0
        assert len(list(metrics_dir.glob("*.db"))) >= 2  # each process wrote files of its own


def test_with_two_workers_metrics_count_the_requests_sent_to_each_worker(tmp_path: Path):
    from test_workers import connection_per_worker

    with ServerProcess(tmp_path, WORKERS="2") as server:
        conns = connection_per_worker(server)
        try:

            def scrape_on(conn) -> dict:
                status, _, body = server.request("GET", "/metrics", conn=conn)
                assert status == 200, body
                return parse(body.decode())

            before = scrape_on(conns[0])
            for index, count in ((0, 3), (1, 2)):
                for _ in range(count):
                    assert server.request("GET", "/healthz", conn=conns[index])[0] == 200
            status, _, body = server.request("GET", "/no-such-page", conn=conns[1])
            assert status == 404, (status, body[:200])
            for index in (0, 1):
                # A worker counts a request just after writing its answer: the other worker may scrape a moment early.
                deadline = time.monotonic() + 2
                while True:
                    after = scrape_on(conns[index])
                    counts = (
                        requests_total(after, "GET", "/healthz", 200) - requests_total(before, "GET", "/healthz", 200),
                        requests_total(after, "GET", "unmatched", 404) - requests_total(before, "GET", "unmatched", 404),
                    )
                    if counts == (5, 1) or time.monotonic() > deadline:
                        break
                    time.sleep(0.02)
                assert counts == (5, 1)
        finally:
            for conn in conns.values():
                conn.close()
        code, output = server.stop()
    assert code == 0, output
