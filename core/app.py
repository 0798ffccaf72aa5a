"""Builds the Tornado application: services first, then every plugin's routes."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Mapping

from .base import NotFoundHandler, answering_unknown_paths
from .config import Settings
from .lifecycle import TurnstileApplication
from .loader import PROJECT_PLUGINS, build_routes, load_plugins, run_setup
from .logs import log_request
from .openapi import OPENAPI_ROUTE, OpenAPIHandler, build_document
from .services import Services, make_services

__all__ = ["Services", "create_app", "make_services"]


async def create_app(
    settings: Settings,
    plugins_dir: Path = PROJECT_PLUGINS,
    extra_plugins: Mapping[str, Path] | None = None,
    installed_plugins: bool = True,
    **tornado_settings: Any,
) -> TurnstileApplication:
    """Open the store, load the plugins, run their ``setup`` hooks, and return the app.

    ``extra_plugins`` maps plugin names to package folders loaded besides
    ``plugins_dir``; ``installed_plugins=False`` ignores entry points. If
    start-up fails, what was opened is closed again.
    """
    async with contextlib.AsyncExitStack() as on_failure:
        services = await on_failure.enter_async_context(await make_services(settings))
        plugins = load_plugins(plugins_dir, services, extra_plugins, installed_plugins)
        routes, default = build_routes(plugins, reserved={OPENAPI_ROUTE: "the core (core/openapi.py)"})
        document = build_document(routes)
        for ctx in plugins:
            await run_setup(ctx)
        on_failure.pop_all()  # started: the application owns the services now
    handler, kwargs = default or (NotFoundHandler, {})
    handler = answering_unknown_paths(handler)
    return TurnstileApplication(
        [(OPENAPI_ROUTE, OpenAPIHandler), *routes],
        services=services,
        plugins=plugins,
        openapi=document,
        default_handler_class=handler,
        default_handler_args=kwargs,
        log_function=log_request,
        **tornado_settings,
    )
