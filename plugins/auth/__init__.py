"""Accounts and sessions: register, log in, refresh, log out (one device or all), change password; the public key set."""

from __future__ import annotations

import asyncio

from tornado.ioloop import PeriodicCallback

from core.plugin import PluginContext, StoreUnavailable, Throttle

from .handlers import (
    AuthHandler,
    LogoutAllHandler,
    LogoutHandler,
    PasswordHandler,
    RefreshHandler,
    RegisterHandler,
)
from .metrics import AuthMetrics
from .wellknown import DiscoveryHandler, JWKSHandler

PRUNE_EVERY = 600  # seconds between sweeps of expired session records and throttle entries


def login_throttle(plugin: PluginContext) -> Throttle:
    """The login throttle: stateless here, its counts are in ``auth.throttle``, shared by every process on the store."""
    settings = plugin.settings
    return plugin.throttle(settings.login_failure_window, settings.login_lockout)


def routes(plugin: PluginContext) -> list:
    throttle = login_throttle(plugin)
    metrics = AuthMetrics.register(plugin)
    return [
        (r"/register", RegisterHandler),
        (r"/auth", AuthHandler, {"throttle": throttle, "metrics": metrics}),
        (r"/refresh", RefreshHandler, {"metrics": metrics}),
        (r"/logout", LogoutHandler),
        (r"/logout-all", LogoutAllHandler),
        (r"/password", PasswordHandler, {"throttle": throttle}),
        (r"/\.well-known/jwks\.json", JWKSHandler),
        (r"/\.well-known/openid-configuration", DiscoveryHandler),
    ]


async def setup(plugin: PluginContext) -> None:
    """Prune expired sessions and throttle entries now, then every ``PRUNE_EVERY`` seconds until the app closes."""
    accounts = plugin.services.accounts
    throttle = login_throttle(plugin)

    async def prune() -> None:
        await accounts.prune()
        await throttle.prune()

    await prune()

    def sweep() -> None:
        task = asyncio.ensure_future(prune())
        task.add_done_callback(_report)

    def _report(task: asyncio.Future) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if isinstance(exc, StoreUnavailable):  # the next sweep tries again
            plugin.log.warning("pruning expired records skipped: %s", exc)
        else:
            plugin.log.error("pruning expired records failed", exc_info=exc)

    sweeper = PeriodicCallback(sweep, PRUNE_EVERY * 1000)
    sweeper.start()
    plugin.services.on_close(sweeper.stop)
