"""Plain paths are routed by lookup; the answer must always be the one Tornado's route-by-route scan gives."""

import pytest
import tornado.web
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from core.routing import ExactRoutingApplication


class A(tornado.web.RequestHandler):
    pass


class B(tornado.web.RequestHandler):
    pass


class C(tornado.web.RequestHandler):
    pass


def request(path: str, host: str = "localhost") -> HTTPServerRequest:
    return HTTPServerRequest(start_line=RequestStartLine("GET", path, "HTTP/1.1"), headers=HTTPHeaders({"Host": host}))


def routed(app: tornado.web.Application, path: str, host: str = "localhost", scan: bool = False):
    find = tornado.web.Application.find_handler if scan else type(app).find_handler
    delegate = find(app, request(path, host))
    return delegate.handler_class, delegate.handler_kwargs, delegate.path_args, delegate.path_kwargs


def test_every_route_of_the_app_is_found_as_the_scan_finds_it(app):
    patterns = [rule.matcher.regex.pattern.rstrip("$") for rule in app.wildcard_router.rules]
    plain = [p for p in patterns if p.replace("/", "").replace("-", "").replace("_", "").isalnum()]
    assert "/employees" in plain and "/auth" in plain
    assert app.exact_routes.lookup("/employees") is not None  # the fast path is really taken
    probes = ["/", "/index.html", "/employees/1", "/nope", "/css/style.css", "/openapi.json"]
    for path in plain:
        probes += [path, path + "/", path + "/x", path.upper()]
    for path in probes:
        assert routed(app, path) == routed(app, path, scan=True), path


def test_an_earlier_pattern_still_wins_over_a_later_plain_path():
    app = ExactRoutingApplication([(r"/item.*", A), (r"/items", B), (r"/other", C), (r"/other", B)])
    assert routed(app, "/items")[0] is A
    assert routed(app, "/other")[0] is C


def test_routes_added_later_are_seen():
    app = ExactRoutingApplication([(r"/a", A)])
    assert routed(app, "/a")[0] is A
    app.wildcard_router.add_rules([(r"/b", B)])
    assert routed(app, "/b")[0] is B
    app.add_handlers(r"example\.com", [(r"/a", C)])  # host-specific routes come first
    assert routed(app, "/a", host="example.com")[0] is C
    assert routed(app, "/a")[0] is A


@pytest.mark.gen_test
async def test_requests_reach_plain_and_pattern_routes(api, auth_headers, make_user):
    await make_user("alice")
    headers = await auth_headers("alice")
    assert (await api.get("/employees", headers=headers)).code == 200
    assert (await api.get("/employees/1", headers=headers)).json()["id"] == 1
