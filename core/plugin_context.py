"""What a loaded plugin is given: its `PluginContext`, handed to its handlers as ``self.plugin``.

A module of its own so that `core.base` can name it without importing the
plugin-author API (`core.plugin`), which imports `core.base`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from prometheus_client import Counter, Gauge, Histogram
from tornado.ioloop import PeriodicCallback

from .config import Settings
from .metrics import Metrics
from .secretbox import SecretBox
from .services import Services
from .signin import SignInStep
from .store import Namespace, StoreUnavailable, check_name
from .throttle import COLLECTION as THROTTLE_COLLECTION
from .throttle import Throttle

M = TypeVar("M")


@dataclass
class PluginContext:
    """Everything a plugin may use.

    ``db`` is the plugin's own namespace in the store (collection ``"notes"``
    of plugin ``notes`` is stored as ``notes.notes``). ``config`` is the
    plugin's typed settings, an instance of the ``Config`` dataclass its
    module declares (see `core.plugin_settings`); a plugin without one gets
    the ``TURNSTILE_<NAME>_*`` environment variables as strings, prefix removed.
    """

    name: str
    path: Path
    module: ModuleType
    services: Services
    db: Namespace
    log: logging.Logger
    config: Any = field(default_factory=dict)
    source: str = "plugins/"

    @property
    def settings(self) -> Settings:
        """The application's settings (not the plugin's own: those are `config`)."""
        return self.services.settings

    @property
    def metrics(self) -> "PluginMetrics":
        """Registers this plugin's metrics on the application's Prometheus registry (served at ``/metrics``)."""
        return PluginMetrics(self)

    def every(self, seconds: float, work: Callable[[], Awaitable[Any]], what: str) -> None:
        """Run ``await work()`` every ``seconds`` until the application closes (pruning expired records, say).

        A run that fails is logged on the plugin's logger, naming ``what``: a
        store outage as a warning (the next run tries again), anything else as
        an error with its traceback; the schedule goes on either way.
        """

        def run() -> None:
            asyncio.ensure_future(work()).add_done_callback(report)

        def report(task: asyncio.Future) -> None:
            if task.cancelled() or task.exception() is None:
                return
            exc = task.exception()
            if isinstance(exc, StoreUnavailable):
                self.log.warning("%s skipped: %s", what, exc)
            else:
                self.log.error("%s failed", what, exc_info=exc)

        timer = PeriodicCallback(run, seconds * 1000)
        timer.start()
        self.services.on_close(timer.stop)

    def sign_in_step(self, step: SignInStep) -> None:
        """Step into every sign-in between "password checked" and "tokens issued" (`core.signin`).

        ``await step(sign_in)`` returns None to let it through, or the JSON
        object to answer instead (no token, no cookie); the plugin then ends the
        sign-in itself with `finish_sign_in`. Register in ``routes(plugin)`` or
        ``setup(plugin)``; steps run in plugin order.
        """
        self.services.sign_in_steps.append(step)

    def secret_box(self, purpose: str) -> SecretBox:
        """Seals values this plugin must keep in the store but never show (a TOTP seed): Fernet under a key
        derived from ``ACCESS_TOKEN_SECRET`` for this plugin and ``purpose``, so a copy of the data alone opens nothing."""
        return SecretBox(self.settings.access_secret, f"plugin:{self.name}:{purpose}")

    def throttle(self, window: int, lockout: int, collection: str = THROTTLE_COLLECTION) -> Throttle:
        """A `Throttle` over this plugin's namespace: failures of a key counted over ``window`` seconds, a
        key over its limit (given per key to `Throttle.begin`) locked for ``lockout`` seconds.

        Its counts are in the store (``<plugin>.<collection>``), so every worker
        and instance on the same data shares them; build it as often as you like.
        A bad ``collection`` name is refused here, at start-up, not at the first request.
        """
        check_name(f"{self.name}.{collection}")
        return Throttle(self.db, window, lockout, collection=collection)


class PluginError(RuntimeError):
    """A plugin cannot be loaded; the one-line message names the plugin, its file and the cause."""

    def __init__(self, name: str, path: Path | str, cause: str) -> None:
        cause = " ".join(str(cause).split())
        super().__init__(f"plugin {name!r} ({path}): {cause}")
        self.plugin = name
        self.path = Path(path)
        self.cause = cause


class PluginMetrics:
    """Defines a plugin's Prometheus metrics on the application's registry.

    Each call registers one metric; a name that is invalid or already taken
    (by the core or another plugin) is a `PluginError` naming the plugin. Call
    it once per application, in ``routes(plugin)`` or ``setup(plugin)``, and
    hand the metric to the handlers that count (as a route kwarg, say). In a
    multi-worker server every worker's values are summed at ``/metrics``.
    """

    def __init__(self, plugin: PluginContext) -> None:
        self._plugin = plugin
        self._metrics: Metrics = plugin.services.metrics

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """A counter; exposed as ``<name>_total`` (give ``name`` without the suffix)."""
        return self._register(name, lambda r: Counter(name, documentation, list(labels), registry=r))

    def histogram(
        self, name: str, documentation: str, labels: Sequence[str] = (), buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS
    ) -> Histogram:
        """A histogram of observations (seconds, bytes...), with ``buckets`` as upper bounds."""
        return self._register(name, lambda r: Histogram(name, documentation, list(labels), buckets=buckets, registry=r))

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = (), multiprocess_mode: str = "livesum") -> Gauge:
        """A gauge; under several workers ``multiprocess_mode`` says how their values combine (summed over live ones by default)."""
        return self._register(
            name, lambda r: Gauge(name, documentation, list(labels), registry=r, multiprocess_mode=multiprocess_mode)  # type: ignore[arg-type]
        )

    def _register(self, name: str, make: Callable[[Any], M]) -> M:
        try:
            return make(self._metrics.registry)
        except ValueError as exc:
            raise PluginError(self._plugin.name, self._plugin.path, f"metric {name!r}: {exc}") from None
