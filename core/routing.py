"""Exact-path routes found with one dict lookup instead of a regex per route.

Tornado tries the route regexes one after another, so a route near the end
of the table pays for every route before it, on every request. For a route
whose pattern is a plain path (no regex syntax), the rule that Tornado's scan
would pick for exactly that path can be worked out in advance: it is the
first rule whose regex matches the path. `ExactRoutes` does that once, and
answers those paths with a dict lookup; every other path takes the scan.
"""

from __future__ import annotations

import re
from inspect import isclass
from typing import Any

from tornado import httputil
from tornado.routing import PathMatches, Rule
from tornado.web import Application, RequestHandler

# Characters that match only themselves in a regex; a pattern made of them is a plain path.
_PLAIN = re.compile(r"[A-Za-z0-9_/\-]*\$?")


class ExactRoutes:
    """The first matching rule for each plain path of an application's route table.

    Rebuilt when the table changes size; unused while host-specific routes
    (``add_handlers`` with a host pattern) are present, as those come first.
    """

    def __init__(self, app: Application) -> None:
        self.app = app
        self._size: tuple[int, int] | None = None
        self._rules: dict[str, Rule] = {}

    def lookup(self, path: str) -> Rule | None:
        size = (len(self.app.default_router.rules), len(self.app.wildcard_router.rules))
        if size != self._size:
            self._rules = self._build() if size[0] == 1 else {}
            self._size = size
        return self._rules.get(path)

    def _build(self) -> dict[str, Rule]:
        exact: dict[str, Rule] = {}
        earlier: list[PathMatches] = []
        for rule in self.app.wildcard_router.rules:
            matcher = rule.matcher
            if type(matcher) is not PathMatches:
                break  # a custom matcher (or subclass) may claim any path: from here on, only the scan knows
            pattern = matcher.regex.pattern
            if _PLAIN.fullmatch(pattern) and isclass(rule.target) and issubclass(rule.target, RequestHandler):
                path = pattern.rstrip("$")
                if path not in exact and not any(m.regex.match(path) for m in earlier):
                    exact[path] = rule
            earlier.append(matcher)
        return exact


class ExactRoutingApplication(Application):
    """A Tornado application that answers plain paths by `ExactRoutes` lookup and every other path by the scan."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exact_routes = ExactRoutes(self)

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        rule = self.exact_routes.lookup(request.path)
        if rule is not None:
            return self.get_handler_delegate(request, rule.target, rule.target_kwargs)
        return super().find_handler(request, **kwargs)
