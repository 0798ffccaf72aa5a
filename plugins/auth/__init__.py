"""Accounts and sessions: register, log in, refresh, log out (one device or all), change password; the public key set."""

from __future__ import annotations

from core.plugin import PluginContext, Throttle

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
    plugin.every(PRUNE_EVERY, prune, "pruning expired records")
