"""Builds the Tornado application: services first, then every plugin's routes."""

from __future__ import annotations

import inspect
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tornado.web

from .base import NotFoundHandler
from .config import Settings
from .jsondb import Store
from .loader import PROJECT_PLUGINS, build_routes, load_plugins
from .logs import log_request
from .plugin import PluginContext
from .security import PasswordHasher, TokenSigner


@dataclass
class Services:
    """Shared by all handlers through ``application.settings["services"]``; never a global."""

    settings: Settings
    store: Store
    passwords: PasswordHasher
    tokens: TokenSigner
    executor: ThreadPoolExecutor


def make_services(settings: Settings) -> Services:
    executor = ThreadPoolExecutor(thread_name_prefix="turnstile")
    store = Store(settings.data_dir, executor=executor).open()
    return Services(
        settings=settings,
        store=store,
        passwords=PasswordHasher(settings.bcrypt_rounds, executor=executor),
        tokens=TokenSigner(
            settings.access_secret, settings.refresh_secret, settings.access_ttl, settings.refresh_ttl, settings.token_leeway
        ),
        executor=executor,
    )


async def create_app(settings: Settings, plugins_dir: Path = PROJECT_PLUGINS, **tornado_settings: Any) -> tornado.web.Application:
    """Open the store, load the plugins, run their ``setup`` hooks, and return the app."""
    services = make_services(settings)
    plugins = load_plugins(plugins_dir, services)
    routes, default = build_routes(plugins)
    for ctx in plugins:
        await run_setup(ctx)
    handler, kwargs = default or (NotFoundHandler, {})
    app = tornado.web.Application(
        routes,
        default_handler_class=handler,
        default_handler_args=kwargs,
        log_function=log_request,
        services=services,
        plugins=plugins,
        **tornado_settings,
    )
    return app


async def run_setup(ctx: PluginContext) -> None:
    setup = getattr(ctx.module, "setup", None)
    if setup is None:
        return
    result = setup(ctx)
    if inspect.isawaitable(result):
        await result
