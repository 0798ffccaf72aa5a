"""The auth plugin's metrics: login answers and refresh tokens presented, by outcome."""

from __future__ import annotations

from dataclasses import dataclass

from core.plugin import Counter, PluginContext

LOGIN_OUTCOMES = ("ok", "bad_credentials", "locked", "overloaded")
REFRESH_OUTCOMES = ("rotated", "grace", "reused", "unknown")


@dataclass(frozen=True)
class AuthMetrics:
    logins: Counter
    refreshes: Counter

    @classmethod
    def register(cls, plugin: PluginContext) -> "AuthMetrics":
        """Define the counters on the app's registry (once per app), every outcome present at 0 so rates work from the first scrape."""
        logins = plugin.metrics.counter("turnstile_logins", "POST /auth answers, by outcome.", ["outcome"])
        refreshes = plugin.metrics.counter("turnstile_refresh", "Refresh tokens presented, by outcome.", ["outcome"])
        for outcome in LOGIN_OUTCOMES:
            logins.labels(outcome)
        for outcome in REFRESH_OUTCOMES:
            refreshes.labels(outcome)
        return cls(logins, refreshes)
