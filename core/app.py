"""Builds the Tornado application: services first, then every plugin's routes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import tornado.web

from .base import NotFoundHandler
from .config import Settings
from .jsondb import Store
from .lifecycle import RequestTracker, TurnstileApplication
from .loader import PROJECT_PLUGINS, build_routes, load_plugins, run_setup
from .logs import log_request
from .openapi import OPENAPI_ROUTE, OpenAPIHandler, build_document
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
        passwords=PasswordHasher(settings.bcrypt_rounds, workers=settings.hash_pool_size, queue=settings.hash_queue_size),
        tokens=TokenSigner(
            settings.access_secret, settings.refresh_secret, settings.access_ttl, settings.refresh_ttl, settings.token_leeway
        ),
        executor=executor,
    )


async def create_app(
    settings: Settings,
    plugins_dir: Path = PROJECT_PLUGINS,
    extra_plugins: Mapping[str, Path] | None = None,
    installed_plugins: bool = True,
    **tornado_settings: Any,
) -> tornado.web.Application:
    """Open the store, load the plugins, run their ``setup`` hooks, and return the app.

    ``extra_plugins`` maps plugin names to package folders loaded besides
    ``plugins_dir``; ``installed_plugins=False`` ignores entry points.
    """
    services = make_services(settings)
    plugins = load_plugins(plugins_dir, services, extra_plugins, installed_plugins)
    routes, default = build_routes(plugins, reserved={OPENAPI_ROUTE: "the core (core/openapi.py)"})
    document = build_document(routes)
    for ctx in plugins:
        await run_setup(ctx)
    handler, kwargs = default or (NotFoundHandler, {})
    app = TurnstileApplication(
        [(OPENAPI_ROUTE, OpenAPIHandler), *routes],
        default_handler_class=handler,
        default_handler_args=kwargs,
        log_function=log_request,
        services=services,
        plugins=plugins,
        openapi=document,
        requests=RequestTracker(),
        **tornado_settings,
    )
    return app

