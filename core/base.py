"""The base handler every plugin handler derives from.

It owns the cross-cutting rules so plugins cannot get them wrong:

* **Auth on by default.** The verify mixin runs before every request unless
  the class itself is marked public (``@public`` or ``public = True``).
  Forgetting to mark a handler keeps it protected; overriding ``prepare``
  (even without calling ``super()``) cannot skip the check, and only the
  built-in CORS preflight ``options`` is answered without a token.
* **CORS with credentials.** An allowed ``Origin`` is echoed with
  ``Access-Control-Allow-Credentials: true`` on every response, errors and
  preflights included; any other origin gets no CORS headers at all.
* **Nothing stored.** Responses say ``Cache-Control: no-store``: they carry
  tokens (RFC 6749 section 5.1 requires it for those) or per-user data. Such
  a response has no use for an ``Etag``, so none is computed; a handler whose
  answers may be cached sets ``cache_control = None``. No ``Server`` header
  names the Tornado version.
* **One error format.** `write_error` answers ``{"message": ...}`` and never
  a traceback; 404s are negotiated by ``Accept`` like the tutorial's.
* **Store outages are 503s.** `StoreUnavailable` raised anywhere in a request
  (the database is unreachable) is answered 503 with the store's
  ``Retry-After``, logged as a warning without a traceback: never a 500.
* **Declared bodies are the check.** The request schema a handler declares in
  ``openapi`` (``"requestBody": json_body(schema)``) is compiled when the
  class is defined, and `json_body` returns only bodies that pass it: a
  malformed or non-conforming body is a 400 naming the field (see
  `core.bodies`).
"""

from __future__ import annotations

import functools
import logging
import re
import time
from typing import Any, Callable, ClassVar, TypeVar

import orjson
from tornado import httputil
from tornado.web import HTTPError, RequestHandler

from .bodies import NUL_MESSAGE, BodyCheck, compile_body, refuse_duplicates, refuse_nul, request_schema, require_json_type
from .errors import APIError
from .headers import header
from .lifecycle import RequestTracker, TurnstileApplication
from .plugin_context import PluginContext
from .services import Services
from .store import Namespace, StoreUnavailable
from .verify import VerifyJWTMixin

error_log = logging.getLogger("turnstile.error")
_HEADER_LIST = re.compile(r"^[A-Za-z0-9\-, ]*$")
STORE_UNAVAILABLE = "The service is briefly unavailable; try again shortly."
NOT_FOUND_HTML = "<!DOCTYPE html><html><head><title>404</title></head><body><h1>404 Not Found</h1></body></html>"
_MISSING = object()
H = TypeVar("H", bound=type)
# ``Date`` has a resolution of one second; rendering it costs more than the rest of the headers.
_http_date = functools.lru_cache(maxsize=2)(httputil.format_timestamp)


def public(cls: H) -> H:
    """Class decorator: anyone may call this handler (no token needed)."""
    cls.public = True  # type: ignore[attr-defined]
    return cls


def protected(cls: H) -> H:
    """Class decorator: a valid access token is required (the default, stated explicitly)."""
    cls.public = False  # type: ignore[attr-defined]
    return cls


def _gated(prepare: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a subclass's ``prepare`` so the auth gate always runs first."""

    @functools.wraps(prepare)
    def gated_prepare(self: "BaseHandler", *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return prepare(self, *args, **kwargs)

    gated_prepare._turnstile_gated = True  # type: ignore[attr-defined]
    return gated_prepare


class BaseHandler(VerifyJWTMixin, RequestHandler):
    """Protected by default; set ``public = True`` on handlers anyone may call."""

    public: ClassVar[bool] = False
    _gate_passed = False
    application: TurnstileApplication
    #: The app's shared services: settings, store, accounts, password hasher, token signer.
    services: Services
    plugin: PluginContext | None
    cors_methods: ClassVar[str] = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
    #: ``Cache-Control`` on every response of this handler; ``None`` sends none and keeps Tornado's ``Etag``.
    cache_control: ClassVar[str | None] = "no-store"
    #: OpenAPI operations by method name, e.g. ``{"get": {"summary": ..., "responses": ...}}``.
    openapi: ClassVar[dict[str, dict[str, Any]]] = {}
    #: The compiled body check of each method whose ``openapi`` entry declares a JSON ``requestBody``.
    body_checks: ClassVar[dict[str, BodyCheck]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls.prepare, "_turnstile_gated", False):
            cls.prepare = _gated(cls.prepare)  # type: ignore[method-assign]
        checks = {}
        for method, operation in (cls.openapi or {}).items():
            schema = request_schema(operation)
            if schema is not None:
                checks[method.upper()] = compile_body(schema)
        cls.body_checks = checks

    def __init__(self, application: TurnstileApplication, request: httputil.HTTPServerRequest, **kwargs: Any) -> None:
        self.services = application.services
        # Counted from here until `on_finish`, so a graceful shutdown can wait for it.
        self._tracker: RequestTracker | None = application.requests
        self._tracker.begin()
        super().__init__(application, request, **kwargs)

    def initialize(self, plugin: PluginContext | None = None) -> None:
        self.plugin = plugin

    # -- what handlers use -------------------------------------------------------------

    @property
    def db(self) -> Namespace:
        """This plugin's own collections in the store."""
        if self.plugin is None:
            raise RuntimeError(f"{type(self).__name__} was not registered by a plugin")
        return self.plugin.db

    @property
    def username(self) -> str | None:
        return self.current_user["username"] if self.current_user else None

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object that passed the schema this method declares; else a 400.

        An empty body counts as ``{}``, so a schema's ``required`` answers it.
        Without a declared schema, any JSON object passes. A body not sent as
        ``application/json`` is a 415; one repeating a name in an object, a 400.
        """
        if not self.request.body:
            body: Any = {}
        else:
            require_json_type(self.request.headers.get("Content-Type"))
            try:
                # orjson also refuses what json.loads lets through and later code
                # would choke on: lone surrogates, integers past 64 bits, deep nesting.
                body = orjson.loads(self.request.body)
            except orjson.JSONDecodeError:
                raise APIError(400, "Request body must be valid JSON.") from None
            if not isinstance(body, dict):
                raise APIError(400, "Request body must be a JSON object.")
            refuse_duplicates(self.request.body, body)
        check = self.body_checks.get(self.request.method or "")
        if check is not None:
            check(body)
        refuse_nul(self.request.body, body)
        return body

    @staticmethod
    def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...] = str, default: Any = None) -> Any:
        """``body[name]`` if it has type ``kind``; ``default`` if absent or null; else 400."""
        value = body.get(name, _MISSING)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise APIError(400, f"Field '{name}' has the wrong type.")
        if not isinstance(value, kind):
            raise APIError(400, f"Field '{name}' has the wrong type.")
        return value

    def send_json(self, data: Any, status: int = 200) -> None:
        """Write any JSON value (Tornado's ``write`` refuses lists); orjson encodes it several times faster."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(orjson.dumps(data))

    # -- request lifecycle --------------------------------------------------------------

    def prepare(self) -> None:
        if "%00" in self.request.path:  # decoded, it would reach a handler's path arguments
            raise APIError(400, f"The path {NUL_MESSAGE}.")
        self._gate()

    def _gate(self) -> None:
        """Authenticate once per request unless public or a built-in CORS preflight."""
        if self._gate_passed:
            return
        preflight = self.request.method == "OPTIONS" and type(self).options is BaseHandler.options
        if not preflight and self.public is not True:
            self.authenticate()
        self._gate_passed = True

    def on_finish(self) -> None:
        """Subclasses that override this must call ``super().on_finish()``."""
        if self._tracker is not None:
            self._tracker.end()
            self._tracker = None

    def clear(self) -> None:
        """Tornado's reset of the response, without its ``Server`` banner and with ``Date`` rendered once a second."""
        headers = httputil.HTTPHeaders()
        headers["Content-Type"] = "text/html; charset=UTF-8"
        headers["Date"] = _http_date(int(time.time()))
        if self.cache_control:
            headers["Cache-Control"] = self.cache_control
        self._headers = headers
        self.set_default_headers()
        self._write_buffer: list[bytes] = []
        self._status_code = 200
        self._reason = httputil.responses[200]

    def compute_etag(self) -> str | None:
        """No ``Etag`` for a response nobody may store: there is nothing to revalidate."""
        return None if self.cache_control == "no-store" else super().compute_etag()

    def set_default_headers(self) -> None:
        origin = self.allowed_origin()
        if origin:
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Allow-Credentials", "true")
            # A browser client may read how long to wait after a 429 (a lockout, a mail limit) or a 503.
            self.set_header("Access-Control-Expose-Headers", "Retry-After")
        self.add_header("Vary", "Origin")

    def allowed_origin(self) -> str | None:
        origin = header(self.request.headers, "Origin")
        if origin and origin.rstrip("/") in self.services.settings.allowed_origins:
            return origin
        return None

    def options(self, *args: Any, **kwargs: Any) -> None:
        """CORS preflight: 204 for an allowed origin, 403 for any other."""
        if self.request.headers.get("Origin") is not None and not self.allowed_origin():
            raise APIError(403, "Origin not allowed.", log_message="CORS preflight from a disallowed origin")
        self.set_header("Access-Control-Allow-Methods", self.cors_methods)
        requested = self.request.headers.get("Access-Control-Request-Headers", "")
        allowed = requested if requested and _HEADER_LIST.match(requested) else "Authorization, Content-Type"
        self.set_header("Access-Control-Allow-Headers", allowed)
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    # -- errors -------------------------------------------------------------------------

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, StoreUnavailable):  # Tornado calls anything not an HTTPError a 500
            self.set_status(503)
            self.set_header("Retry-After", str(max(1, int(exc.retry_after))))
            self.finish({"message": STORE_UNAVAILABLE})
            return
        if isinstance(exc, APIError):
            for name, value in exc.headers.items():
                self.set_header(name, value)
        if status_code == 404 and not (isinstance(exc, APIError) and exc.message):
            self.write_not_found()
            return
        message = exc.message if isinstance(exc, APIError) and exc.message else None
        extra = exc.body if isinstance(exc, APIError) else {}
        self.finish({**extra, "message": message or httputil.responses.get(status_code, "Error")})

    def write_not_found(self) -> None:
        """The tutorial's 404: an HTML page, else JSON, else plain text, by ``Accept``."""
        self.set_status(404)
        if self.accepts("text/html"):
            self.set_header("Content-Type", "text/html; charset=UTF-8")
            self.finish(self.not_found_html())
        elif self.accepts("application/json"):
            self.finish({"error": "404 Not Found"})
        else:
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
            self.finish("404 Not Found")

    def not_found_html(self) -> str:
        return NOT_FOUND_HTML

    def accepts(self, mime: str) -> bool:
        """Whether the ``Accept`` header admits ``mime`` (a missing header admits anything)."""
        header = self.request.headers.get("Accept")
        if not header:
            return True
        kind = mime.split("/")[0]
        for part in header.split(","):
            item, *params = [p.strip() for p in part.split(";")]
            q = 1.0
            for param in params:
                if param.startswith("q="):
                    try:
                        q = float(param[2:])
                    except ValueError:
                        q = 0.0
            if q > 0 and item.lower() in (mime, f"{kind}/*", "*/*"):
                return True
        return False

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Log by path only: query strings and headers may carry credentials."""
        where = f"{self.request.method} {self.request.path}"
        if isinstance(value, StoreUnavailable):
            error_log.warning("503 %s: store unavailable: %s", where, value)
        elif isinstance(value, HTTPError):
            if value.log_message:
                error_log.warning("%d %s: %s", value.status_code, where, value.log_message % value.args if value.args else value.log_message)
        else:
            error_log.error("Uncaught exception in %s", where, exc_info=(typ, value, tb))


BaseHandler.prepare._turnstile_gated = True  # type: ignore[attr-defined]


class UnknownPathHandler(BaseHandler):
    """What a path no route matches answers to a method that may change something.

    As in the Express original, where the token check comes before the
    catch-all 404: ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` to an unknown
    path is a 401 without a token (403 with a bad one) and a 404 with a valid
    one, never a 405 that would tell an anonymous caller what exists. ``GET``
    and ``HEAD`` stay public, for the site's pages and its 404 page. The app
    gives a plugin's ``default_handler`` these methods unless it defines its own.
    """

    public = True

    def unknown_path(self, *args: Any, **kwargs: Any) -> None:
        self.authenticate()
        raise HTTPError(404)

    post = put = patch = delete = unknown_path


def answering_unknown_paths(handler: type[BaseHandler]) -> type[BaseHandler]:
    """``handler``, given `UnknownPathHandler`'s answer for the methods it does not define itself."""
    if issubclass(handler, UnknownPathHandler):
        return handler
    namespace = {"__module__": handler.__module__, "__doc__": handler.__doc__, "__qualname__": handler.__qualname__}
    return type(handler.__name__, (handler, UnknownPathHandler), namespace)


class NotFoundHandler(UnknownPathHandler):
    """What the app answers when no route matches (and no plugin declares a ``default_handler``)."""

    def get(self, *args: Any, **kwargs: Any) -> None:
        raise HTTPError(404)

    head = get
