"""Finds plugin packages and turns their declarations into Tornado routes.

The core never imports a plugin by name: every sub-package of the plugins
folder is loaded, in alphabetical order of its folder name, so route order
(and therefore which of two overlapping patterns wins) never depends on the
file system.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .base import BaseHandler
from .plugin import PluginContext, PluginError

if TYPE_CHECKING:
    from .app import Services

PROJECT_PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
log = logging.getLogger("turnstile.loader")


def discover(plugins_dir: Path) -> list[tuple[str, Path]]:
    """``(name, package folder)`` for every package under ``plugins_dir``, sorted by name."""
    if not plugins_dir.is_dir():
        return []
    found = []
    for child in sorted(plugins_dir.iterdir(), key=lambda p: p.name):
        if child.is_dir() and (child / "__init__.py").is_file() and not child.name.startswith(("_", ".")):
            found.append((child.name, child))
    return found


def import_plugin(name: str, folder: Path) -> Any:
    """Import a plugin package so that its relative imports work."""
    folder = folder.resolve()
    if folder.parent == PROJECT_PLUGINS:
        module_name = f"plugins.{name}"
    else:
        module_name = f"turnstile_plugins_{hashlib.sha1(str(folder.parent).encode()).hexdigest()[:10]}.{name}"
    existing = sys.modules.get(module_name)
    if existing is not None and Path(getattr(existing, "__file__", "")).resolve() == folder / "__init__.py":
        return existing
    spec = importlib.util.spec_from_file_location(module_name, folder / "__init__.py", submodule_search_locations=[str(folder)])
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PluginError(name, folder / "__init__.py", f"failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def plugin_routes(ctx: PluginContext) -> list[tuple[str, type, dict[str, Any]]]:
    """The plugin's routes, checked, with its context added to each handler's kwargs."""
    declared = getattr(ctx.module, "routes", None)
    if declared is None:
        raise PluginError(ctx.name, ctx.path, "declares no `routes`")
    if callable(declared):
        declared = declared(ctx)
    if not isinstance(declared, Iterable):
        raise PluginError(ctx.name, ctx.path, "`routes` must be a list of (pattern, handler[, kwargs]) tuples")
    out = []
    for entry in declared:
        if not isinstance(entry, tuple) or len(entry) not in (2, 3) or not isinstance(entry[0], str):
            raise PluginError(ctx.name, ctx.path, f"bad route entry {entry!r}: expected (pattern, handler[, kwargs])")
        pattern, handler = entry[0], entry[1]
        kwargs = dict(entry[2]) if len(entry) == 3 else {}
        check_handler(ctx, handler)
        out.append((pattern, handler, {**kwargs, "plugin": ctx}))
    return out


def check_handler(ctx: PluginContext, handler: Any) -> None:
    if not (inspect.isclass(handler) and issubclass(handler, BaseHandler)):
        raise PluginError(
            ctx.name, ctx.path, f"handler {handler!r} must derive from core.base.BaseHandler (auth is on by default)"
        )


def load_plugins(plugins_dir: Path, services: "Services") -> list[PluginContext]:
    """Import every plugin in ``plugins_dir`` and build its context."""
    contexts = []
    for name, folder in discover(plugins_dir):
        module = import_plugin(name, folder)
        prefix = f"TURNSTILE_{name.upper()}_"
        config = {k[len(prefix):]: v for k, v in services.settings.extra.items() if k.startswith(prefix)}
        contexts.append(
            PluginContext(
                name=name,
                path=folder / "__init__.py",
                module=module,
                services=services,
                db=services.store.namespace(name),
                log=logging.getLogger(f"turnstile.plugins.{name}"),
                config=config,
            )
        )
    return contexts


def build_routes(contexts: list[PluginContext]) -> tuple[list[tuple[str, type, dict[str, Any]]], tuple[type, dict[str, Any]] | None]:
    """All routes in plugin order, refusing a pattern claimed twice; plus the default handler."""
    routes: list[tuple[str, type, dict[str, Any]]] = []
    owners: dict[str, PluginContext] = {}
    default: tuple[type, dict[str, Any]] | None = None
    default_owner: PluginContext | None = None
    for ctx in contexts:
        for pattern, handler, kwargs in plugin_routes(ctx):
            if pattern in owners:
                other = owners[pattern]
                raise PluginError(
                    ctx.name, ctx.path, f"route {pattern!r} is already claimed by plugin {other.name!r} ({other.path})"
                )
            owners[pattern] = ctx
            routes.append((pattern, handler, kwargs))
        fallback = getattr(ctx.module, "default_handler", None)
        if fallback is not None:
            if default_owner is not None:
                raise PluginError(
                    ctx.name, ctx.path, f"default_handler is already declared by plugin {default_owner.name!r} ({default_owner.path})"
                )
            check_handler(ctx, fallback)
            default, default_owner = (fallback, {"plugin": ctx}), ctx
    return routes, default
