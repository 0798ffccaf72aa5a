"""``GET /openapi.json``: an OpenAPI 3.1 document built from the loaded plugins.

Each handler describes its operations next to its code, in its ``openapi``
class attribute: ``{"get": {OpenAPI Operation}, "post": {...}}``. The core
fills in what it knows better than the author:

* paths and path parameters from the route pattern (a named group
  ``(?P<id>...)`` gives ``{id}``; an unnamed one takes the name of the
  handler method's argument), each constrained by its group's regex;
* ``security``: none for ``@public`` handlers, the bearer token otherwise,
  with 401 and 403 responses added;
* ``x-required-roles`` and a 403 response for ``@require_roles`` methods;
* a 400 response for operations with a ``requestBody``;
* ``summary`` from the method's docstring, ``tags`` from the plugin name;
* for an operation that declares no responses, a ``default`` response: the
  document promises no status the handler may not keep.

Every implemented method is documented, described or not; describing a method
the handler does not implement stops start-up. The document is built once at
start-up, so a pattern that cannot be written as an OpenAPI path is reported
then, naming the plugin.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import re
from typing import Any, Iterable

from tornado.web import RequestHandler

from .base import BaseHandler, public
from .plugin_context import PluginError

OPENAPI_ROUTE = "/openapi.json"
METHODS = ("get", "post", "put", "patch", "delete")
ERROR_REF = {"$ref": "#/components/schemas/Error"}
_META = set(".^$*+?{}[]|")
Params = list[tuple[str | None, str]]


def error_response(description: str) -> dict[str, Any]:
    """A response whose body is ``{"message": ...}``, for use in ``openapi`` declarations."""
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON response with ``schema``, for use in ``openapi`` declarations."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def json_body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    """A JSON ``requestBody`` with ``schema``."""
    return {"required": required, "content": {"application/json": {"schema": schema}}}


# -- route pattern -> OpenAPI path templates ------------------------------------------------


def path_variants(pattern: str) -> list[tuple[str, Params]]:
    """``(template, [(group name or None, group regex), ...])`` for each path ``pattern`` matches.

    Supports literals, escaped literals, capturing groups and optional
    non-capturing groups ``(?:...)?``; anything else raises ValueError.
    """
    body = pattern[1:] if pattern.startswith("^") else pattern
    if body.endswith("$") and not body.endswith("\\$"):
        body = body[:-1]
    variants, pos = _sequence(body, 0)
    if pos != len(body):
        raise ValueError(f"unbalanced ')' at {pos}")
    return variants


def _sequence(s: str, i: int) -> tuple[list[tuple[str, Params]], int]:
    parts: list[list[tuple[str, Params]]] = []
    while i < len(s) and s[i] != ")":
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s) or s[i + 1].isalnum():
                raise ValueError(f"unsupported escape {s[i:i + 2]!r}")
            parts.append([(s[i + 1], [])])
            i += 2
        elif c == "(" and s.startswith("(?:", i):
            inner, i = _sequence(s, i + 3)
            if i >= len(s):
                raise ValueError("unclosed group")
            i += 1
            if i < len(s) and s[i] == "?":
                inner = [*inner, ("", [])]
                i += 1
            parts.append(inner)
        elif c == "(":
            name = None
            start = i + 1
            if s.startswith("(?P<", i):
                close = s.index(">", i)
                name, start = s[i + 4 : close], close + 1
            elif s.startswith("(?", i):
                raise ValueError(f"unsupported group {s[i:i + 3]!r}")
            end = _group_end(s, start)
            if end + 1 < len(s) and s[end + 1] in "?*+{":
                raise ValueError("a repeated or optional capturing group")
            parts.append([("\0", [(name, s[start:end])])])
            i = end + 1
        elif c in _META:
            raise ValueError(f"unsupported {c!r} outside a group")
        else:
            parts.append([(c, [])])
            i += 1
    out = []
    for combo in itertools.product(*parts):
        out.append(("".join(t for t, _ in combo), [p for _, ps in combo for p in ps]))
    return out, i


def _group_end(s: str, i: int) -> int:
    depth, in_class = 0, False
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise ValueError("unclosed group")


# -- handlers -> operations ---------------------------------------------------------------


def implemented_methods(handler: type) -> list[str]:
    return [m for m in METHODS if getattr(handler, m) is not getattr(RequestHandler, m)]


def _arg_names(handler: type, methods: Iterable[str]) -> list[str]:
    for m in methods:
        fn = inspect.unwrap(getattr(handler, m))
        names = [p.name for p in inspect.signature(fn).parameters.values()][1:]
        names = [n for n in names if n not in ("args", "kwargs")]
        if names:
            return names
    return []


def _slug(template: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", template).strip("_")
    return slug or "root"


def operations(handler: type, plugin: str, template: str, params: list[tuple[str, str]]) -> dict[str, Any]:
    """The path item for one route of ``handler`` (``params``: name and regex of each path parameter)."""
    declared = getattr(handler, "openapi", {}) or {}
    methods = implemented_methods(handler)
    unknown = sorted(set(declared) - set(methods))
    if unknown:
        raise ValueError(f"{handler.__qualname__}.openapi describes {', '.join(unknown)} but the handler has no such method")
    item: dict[str, Any] = {}
    for method in methods:
        op = copy.deepcopy(declared.get(method, {}))
        fn = getattr(handler, method)
        doc = inspect.getdoc(fn)
        op.setdefault("summary", doc.splitlines()[0] if doc else f"{method.upper()} {template}")
        op.setdefault("operationId", f"{method}_{_slug(template)}")
        op.setdefault("tags", [plugin])
        responses = op.setdefault("responses", {})
        if not responses:  # undescribed: promise no particular status (a 201, a 400 are as likely as a 200)
            responses["default"] = {"description": "Not described by its plugin."}
        roles = getattr(fn, "required_roles", None)
        if handler.public is True and not roles:
            op["security"] = []
        else:
            op["security"] = [{"bearerAuth": []}]
            responses.setdefault("401", error_response("No bearer access token."))
            responses.setdefault("403", error_response("Invalid or expired access token."))
        if roles:
            op["x-required-roles"] = list(roles)
            responses["403"] = error_response(f"Invalid token, or the user holds none of the roles {list(roles)}.")
        if "requestBody" in op:
            responses.setdefault("400", error_response("The body is not the JSON object described."))
        declared_params = {(p.get("in"), p.get("name")) for p in op.get("parameters", [])}
        for name, regex in params:
            if ("path", name) not in declared_params:
                op.setdefault("parameters", []).append(
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": f"^(?:{regex})$"}}
                )
        item[method] = op
    return item


def build_document(routes: Iterable[tuple[str, type, dict[str, Any]]], title: str = "Turnstile") -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``routes`` (plus ``/openapi.json`` itself)."""
    paths: dict[str, Any] = {OPENAPI_ROUTE: operations(OpenAPIHandler, "core", OPENAPI_ROUTE, [])}
    for pattern, handler, kwargs in routes:
        ctx = kwargs.get("plugin")
        name = ctx.name if ctx is not None else "core"
        try:
            variants = path_variants(pattern)
            arg_names = _arg_names(handler, implemented_methods(handler))
            for template, params in variants:
                named = []
                for index, (group, regex) in enumerate(params):
                    pname = group or (arg_names[index] if index < len(arg_names) else f"arg{index + 1}")
                    named.append((pname, regex))
                path = template
                for pname, _ in named:
                    path = path.replace("\0", "{" + pname + "}", 1)
                if path not in paths:
                    paths[path] = operations(handler, name, path, named)
        except ValueError as exc:
            if ctx is None:
                raise
            raise PluginError(ctx.name, ctx.path, f"route {pattern!r} cannot be described in {OPENAPI_ROUTE}: {exc}") from None
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1.0.0", "description": "Built at start-up from the loaded plugins."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}
            },
        },
    }


@public
class OpenAPIHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "This API's OpenAPI 3.1 document.",
            "responses": {"200": json_response("The document.", {"type": "object", "required": ["openapi", "paths"]})},
        }
    }

    def get(self) -> None:
        """This API's OpenAPI 3.1 document."""
        self.send_json(self.application.openapi)
