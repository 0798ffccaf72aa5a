"""GET /openapi.json: an OpenAPI 3.1 document built from the loaded plugins, checked against the running API."""

import asyncio
import json
import secrets
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from plugin_kit import PROJECT

from core.app import create_app
from core.openapi import path_variants
from core.pytest_plugin import DEFAULT_PASSWORD, make_settings

SCHEMATHESIS_EXAMPLES = 12  # per operation and generation mode; keeps the whole run to a few seconds


@pytest.mark.gen_test
async def test_document_is_public_and_built_from_the_plugins(api):
    response = await api.get("/openapi.json")
    assert response.code == 200
    doc = response.json()
    assert doc["openapi"] == "3.1.0"
    assert {"/register", "/auth", "/refresh", "/logout", "/employees", "/employees/{employee_id}", "/", "/openapi.json"} <= set(doc["paths"])
    assert doc["paths"]["/employees"]["get"]["security"] == [{"bearerAuth": []}]
    assert {"401", "403"} <= set(doc["paths"]["/employees"]["get"]["responses"])
    assert doc["paths"]["/register"]["post"]["security"] == []
    assert doc["paths"]["/employees"]["post"]["tags"] == ["employees"]
    param = doc["paths"]["/employees/{employee_id}"]["get"]["parameters"][0]
    assert param == {"name": "employee_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^(?:[^/]+)$"}}


@pytest.mark.parametrize(
    "pattern, templates",
    [
        (r"/employees", ["/employees"]),
        (r"/(?:index(?:\.html)?)?", ["/index.html", "/index", "/"]),
        (r"/notes/([0-9]+)", ["/notes/\0"]),
        (r"/a/(?P<slug>[a-z]+(?:-[a-z]+)*)/b$", ["/a/\0/b"]),
    ],
)
def test_route_patterns_become_path_templates(pattern, templates):
    assert [t for t, _ in path_variants(pattern)] == templates


@pytest.mark.parametrize("pattern", [r"/a.*", r"/x|/y", r"/(\d+)?", r"/\d"])
def test_patterns_openapi_cannot_express_are_refused(pattern):
    with pytest.raises(ValueError):
        path_variants(pattern)


class LiveServer:
    """The app served on 127.0.0.1 from a thread with its own event loop, for synchronous HTTP clients."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self.app = await create_app(make_settings(self.tmp), PROJECT / "plugins", installed_plugins=False)
        self.server = self.app.listen(0, address="127.0.0.1")
        port = next(iter(self.server._sockets.values())).getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        assert self.ready.wait(20)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.server.stop)
        asyncio.run_coroutine_threadsafe(self.app.services.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")


def test_schemathesis_finds_no_5xx_and_responses_match_the_document(tmp_path):
    """Property-based requests against every documented operation, positive and negative, on a small budget."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, response_headers_conformance]
    started = time.monotonic()
    with LiveServer(tmp_path) as live:
        name = f"u{secrets.token_hex(4)}"
        live.post("/register", {"user": name, "pwd": DEFAULT_PASSWORD})
        token = live.post("/auth", {"user": name, "pwd": DEFAULT_PASSWORD})["accessToken"]
        with urllib.request.urlopen(live.url + "/openapi.json", timeout=10) as response:
            schema = schemathesis.openapi.from_dict(json.loads(response.read()))
        failures = []
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(
                    max_examples=SCHEMATHESIS_EXAMPLES,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                def run(case):
                    case.call_and_validate(base_url=live.url, headers={"Authorization": f"Bearer {token}"}, checks=checks, timeout=10)

                try:
                    run()
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE  # nothing to get wrong: no parameters, no body
                except Exception as exc:  # collect every operation's failure, then report them together
                    failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert not failures, "\n\n".join(failures)
    assert time.monotonic() - started < 60
