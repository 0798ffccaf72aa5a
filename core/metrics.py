"""Prometheus metrics: one `Metrics` per application, served by the ``metrics`` plugin.

Each app owns its metric objects in a registry of its own, so two apps in
one test process never share counts. With ``PROMETHEUS_MULTIPROC_DIR`` set
(the supervisor sets it for every worker it starts), prometheus_client keeps
every value in a per-process file in that directory and `Metrics.render`
sums the files of all workers (its multiprocess mode).

Label values never come from user input: the route is the matched route
*pattern* (``unmatched`` for the default handler), the method is one of the
HTTP methods the app answers (anything else is ``other``), and outcomes are
fixed sets. Plugins add metrics of their own through ``plugin.metrics``
(`core.plugin_context.PluginMetrics`), on the same registry.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from tornado.web import Application, RequestHandler

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, float("inf"))
CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess_dir() -> str | None:
    """The directory shared by the workers' metric files, or None in a single process."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """The metric objects of one application, and a per-(method, route, status) cache of their children."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        if self.multiprocess and not _is_multiprocess_value(values.ValueClass):
            # prometheus_client picks its value class when first imported; the supervisor may
            # have imported it before setting the variable: pick again, before any metric exists.
            values.ValueClass = values.get_value_class()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "turnstile_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=r
        )
        self.http_duration = Histogram(
            "turnstile_http_request_duration_seconds", "Time to answer a request, by route.", ["route"], registry=r
        )
        self.hash_queue_depth = Gauge(
            "turnstile_hash_queue_depth",
            "bcrypt calls running or waiting for a thread (summed over live workers).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.hash_rejected = Counter(
            "turnstile_hash_rejected", "bcrypt calls refused at once because the queue was full.", registry=r
        )
        self.store_write_seconds = Histogram(
            "turnstile_store_write_seconds",
            "Durable store writes: a transaction that wrote, from its start until it is durable.",
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._routes: dict[type, list[tuple[Any, str]]] | None = None
        self._routes_size = -1
        self._served: CollectorRegistry | None = None

    # -- requests ---------------------------------------------------------------------

    def observe_request(self, handler: RequestHandler) -> None:
        """Count one finished request (Tornado's ``log_request`` hook calls this once per request)."""
        request = handler.request
        method = request.method if request.method in METHODS else "other"
        key = (method, self.route_of(handler), handler.get_status())
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.http_requests.labels(*key), self.http_duration.labels(key[1]))
        children[0].inc()
        children[1].observe(request.request_time())

    def route_of(self, handler: RequestHandler) -> str:
        """The route pattern that picked ``handler``, or ``unmatched`` for the default handler."""
        app = handler.application
        rules = app.wildcard_router.rules
        if self._routes is None or len(rules) != self._routes_size:
            self._routes = _patterns_by_class(app)
            self._routes_size = len(rules)
        patterns = self._routes.get(type(handler))
        if not patterns:
            return UNMATCHED
        if len(patterns) == 1:
            return patterns[0][1]
        path = handler.request.path
        for regex, pattern in patterns:
            if regex.match(path):
                return pattern
        return UNMATCHED

    # -- exposition ---------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition: this app's registry, or every worker's files in multiprocess mode."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        if self._served is None:
            self._served = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._served)
        return generate_latest(self._served)


def _patterns_by_class(app: Application) -> dict[type, list[tuple[Any, str]]]:
    """Route patterns by handler class (a class may serve several); the default handler has none of its own."""
    default = app.settings.get("default_handler_class")
    found: dict[type, list[tuple[Any, str]]] = {}
    for rule in app.wildcard_router.rules:
        target, regex = rule.target, getattr(rule.matcher, "regex", None)
        if isinstance(target, type) and regex is not None:
            found.setdefault(target, []).append((regex, regex.pattern.rstrip("$")))
    for cls, patterns in found.items():
        if cls is default and len(patterns) == 1:
            found[cls] = patterns + [(_NEVER, UNMATCHED)]  # also the default: match by path, else unmatched
    return found


class _Never:
    @staticmethod
    def match(_path: str) -> None:
        return None


_NEVER = _Never()


def _is_multiprocess_value(cls: Any) -> bool:
    return getattr(cls, "__name__", "") == "MmapedValue"
