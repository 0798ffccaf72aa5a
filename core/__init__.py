"""Turnstile core: configuration, store, security, the base handler and the plugin loader."""
