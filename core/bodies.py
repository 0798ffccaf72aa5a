"""Request bodies: the JSON Schema a route declares for ``/openapi.json`` is the check its body gets.

A handler declares its body once, in its ``openapi`` attribute
(``"requestBody": json_body(schema)``). `BaseHandler` compiles that schema
with fastjsonschema when the class is defined, and ``self.json_body()``
returns only bodies that pass it. So the published document and the check
are the same object and cannot drift apart.

A body that fails gets a 400 in the one error format, naming the field:

* ``Unknown field 'x'.`` for a property the schema does not list (with
  ``"additionalProperties": false``);
* ``Field 'x' must be a string.`` for a wrong type;
* ``Field 'x' must be at most N characters.`` for an over-long string;
* ``Field 'x' is required.`` for a missing one; and so on per keyword.
* ``Field 'x' must not contain the character U+0000.`` for a string (or a
  name) holding it, after the schema passed (`refuse_nul`).
* ``Field 'x' appears more than once.`` for a repeated name in one object
  (`refuse_duplicates`): parsers disagree on which copy wins, so a body that
  means different things to different readers is refused.

A non-empty body must be sent as ``application/json`` (else 415,
`require_json_type`): a form or ``text/plain`` POST is what a cross-site page
can send without a CORS preflight.

Where a route's contract fixes a message, the schema declares it beside the
keyword, with the ``x-message`` annotation on the schema node that fails:
either one string for any failure of that node, or a mapping from keyword to
message. For example, the credentials of ``/register`` and ``/auth``::

    {"type": "object", "required": ["user", "pwd"],
     "x-message": {"required": "Username and password are required."}, ...}

``x-message`` is an annotation: validators and OpenAPI tools ignore it, and
it is shown in ``/openapi.json`` as declared.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Mapping

import fastjsonschema
import orjson

from .errors import APIError

MESSAGE_KEY = "x-message"
_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
    "null": "null",
}
_SHOWN_NAME = 64  # longest client-chosen field name echoed in a message
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")  # \u0000 in JSON text: an escape not itself escaped
NUL_MESSAGE = "must not contain the character U+0000"
JSON_TYPE_MESSAGE = "Content-Type must be application/json."


class BodyCheck:
    """One declared body schema, compiled: call it with a parsed body to get it back or a 400."""

    __slots__ = ("schema", "_validate")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        # use_default=False: the check never changes the body it is given.
        self._validate: Callable[[Any], Any] = fastjsonschema.compile(dict(schema), use_default=False)

    def __call__(self, body: Any) -> Any:
        try:
            self._validate(body)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise APIError(400, failure_message(exc)) from None
        return body


_compiled: dict[bytes, BodyCheck] = {}


def compile_body(schema: Mapping[str, Any]) -> BodyCheck:
    """The compiled check for ``schema``; handlers declaring the same schema share one."""
    key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    check = _compiled.get(key)
    if check is None:
        check = _compiled[key] = BodyCheck(schema)
    return check


def request_schema(operation: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of an OpenAPI operation's ``requestBody``, if it declares one."""
    body = operation.get("requestBody") or {}
    return ((body.get("content") or {}).get("application/json") or {}).get("schema")


def failure_message(exc: fastjsonschema.JsonSchemaValueException) -> str:
    """The 400's message: the schema's declared ``x-message``, else one naming the field and the rule."""
    definition = exc.definition if isinstance(exc.definition, dict) else {}
    declared = definition.get(MESSAGE_KEY)
    if isinstance(declared, str):
        return declared
    if isinstance(declared, dict) and isinstance(declared.get(exc.rule), str):
        return declared[exc.rule]
    where = _field(exc.path or [])
    rule, limit, value = exc.rule, exc.rule_definition, exc.value
    if rule == "required" and isinstance(value, dict):
        missing = [name for name in limit if name not in value]
        return f"Field '{_join(where, missing[0] if missing else '?')}' is required."
    if rule == "additionalProperties" and isinstance(value, dict):
        known = definition.get("properties", {})
        unknown = sorted(name for name in value if name not in known)
        return f"Unknown field '{_join(where, _shown(unknown[0] if unknown else '?'))}'."
    if not where:
        return "Request body must be a JSON object." if rule == "type" else "Request body is not valid."
    subject = f"Field '{where}'"
    if rule == "type":
        kinds = limit if isinstance(limit, list) else [limit]
        return f"{subject} must be {' or '.join(_TYPE_NAMES.get(k, k) for k in kinds)}."
    if rule == "maxLength":
        return f"{subject} must be at most {limit} characters."
    if rule == "minLength":
        return f"{subject} must not be empty." if limit == 1 else f"{subject} must be at least {limit} characters."
    if rule in ("minimum", "exclusiveMinimum"):
        return f"{subject} must be at least {limit}." if rule == "minimum" else f"{subject} must be more than {limit}."
    if rule in ("maximum", "exclusiveMaximum"):
        return f"{subject} must be at most {limit}." if rule == "maximum" else f"{subject} must be less than {limit}."
    if rule == "enum":
        return f"{subject} must be one of {', '.join(map(str, limit))}."
    if rule == "pattern":
        return f"{subject} has the wrong format."
    if rule == "maxItems":
        return f"{subject} must have at most {limit} items."
    return f"{subject} is not valid."


def _field(path: list[Any]) -> str:
    """``data.a[0].b`` as ``a[0].b`` (the leading ``data`` is the body itself)."""
    out = ""
    for part in path[1:]:
        text = str(part)
        out += f"[{text}]" if isinstance(part, int) or text.isdigit() else (f".{_shown(text)}" if out else _shown(text))
    return out


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def _shown(name: str) -> str:
    return name if len(name) <= _SHOWN_NAME else name[:_SHOWN_NAME] + "..."


def refuse_nul(raw: bytes, body: Any) -> None:
    """A 400 naming the field when a string of the body holds U+0000.

    No store keeps that character the same way (PostgreSQL refuses it), so it is refused at
    the door on every backend. JSON can only carry it as the escape ``\\u0000``, so a body
    without one costs a single scan of its bytes.
    """
    if _NUL_ESCAPE.search(raw) is None:
        return
    where = _nul_path(body, "")
    if where is not None:
        raise APIError(400, f"Field '{where}' {NUL_MESSAGE}." if where else f"Request body {NUL_MESSAGE}.")


def _nul_path(value: Any, where: str) -> str | None:
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for name, item in value.items():
            here = _join(where, _shown(name.replace("\x00", "\\u0000")))
            if "\x00" in name:
                return here
            found = _nul_path(item, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _nul_path(item, f"{where}[{i}]")
            if found is not None:
                return found
    return None


def require_json_type(content_type: str | None) -> None:
    """415 unless ``content_type`` is ``application/json`` (parameters such as ``charset`` allowed).

    Browsers send a form or ``text/plain`` body cross-site without a preflight;
    requiring the JSON type makes such a request fail before any work is done.
    """
    if (content_type or "").split(";", 1)[0].strip().lower() != "application/json":
        raise APIError(415, JSON_TYPE_MESSAGE)


def refuse_duplicates(raw: bytes, body: Any) -> None:
    """A 400 naming the field when an object of the body repeats a name.

    orjson keeps the last copy silently. Every name in JSON text is followed by
    one ``:``, so when the body has as many colons as its parsed objects have
    names, no name was lost: one count of the bytes for most bodies. Only
    otherwise (a colon inside a string, or a real duplicate) is the body parsed
    again to find the name.
    """
    if raw.count(b":") == _name_count(body):
        return
    try:
        json.loads(raw, object_pairs_hook=_unique_pairs)
    except _Repeated as exc:
        raise APIError(400, f"Field '{_shown(exc.name)}' appears more than once.") from None
    except (ValueError, RecursionError):  # orjson parsed it already; nesting too deep for this parser
        pass


class _Repeated(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for name, value in pairs:
        if name in seen:
            raise _Repeated(name)
        seen[name] = value
    return seen


def _name_count(value: Any) -> int:
    """How many names the objects in ``value`` hold, nested ones included."""
    count = 0
    items = value.values() if type(value) is dict else value
    if type(value) is dict:
        count = len(value)
    for item in items:
        if type(item) is dict or type(item) is list:
            count += _name_count(item)
    return count
