"""Finds plugins, checks them, and turns their declarations into Tornado routes.

Plugins come from two places, and the core never imports one by name:

* every package folder in ``plugins/`` (name = folder name), and
* every installed distribution's entry point in the group ``turnstile.plugins``
  (name = entry point name, value = the plugin's module).

``PLUGINS`` selects among them (see `select`). The selected plugins load in
alphabetical order of name, whatever their source, so route order (and so
which of two overlapping patterns wins) never depends on the file system or
on install order. Anything wrong stops start-up with a one-line `PluginError`
naming the plugin and its file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import logging
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .base import BaseHandler
from .plugin_context import PluginContext, PluginError
from .plugin_settings import load_config, raw_config
from .services import Services
from .store import Namespace

PROJECT_PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
ENTRY_POINT_GROUP = "turnstile.plugins"
PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
Route = tuple[str, type, dict[str, Any]]
log = logging.getLogger("turnstile.loader")


@dataclass(frozen=True)
class Candidate:
    """A plugin found but not yet imported."""

    name: str
    path: Path  # the file that defines it (package __init__.py or module)
    source: str  # "plugins/" or "distribution NAME VERSION"
    folder: Path | None = None
    entry_point: importlib.metadata.EntryPoint | None = None


def discover_folder(plugins_dir: Path) -> list[Candidate]:
    """Every package under ``plugins_dir`` (folders starting with ``_`` or ``.`` are skipped)."""
    if not plugins_dir.is_dir():
        return []
    found = []
    for child in sorted(plugins_dir.iterdir(), key=lambda p: p.name):
        if child.is_dir() and (child / "__init__.py").is_file() and not child.name.startswith(("_", ".")):
            found.append(Candidate(child.name, child / "__init__.py", "plugins/", folder=child))
    return found


def discover_installed() -> list[Candidate]:
    """Every entry point in the ``turnstile.plugins`` group, without importing it."""
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        source = f"distribution {dist.metadata['Name']} {dist.version}" if dist is not None else "distribution"
        found.append(Candidate(ep.name, _module_file(ep), source, entry_point=ep))
    return sorted(found, key=lambda c: (c.name, c.source))


def _module_file(ep: importlib.metadata.EntryPoint) -> Path:
    try:
        spec = importlib.util.find_spec(ep.module)
    except Exception:
        spec = None
    if spec is not None and spec.origin:
        return Path(spec.origin)
    dist = getattr(ep, "dist", None)
    return Path(str(dist.locate_file(""))) if dist is not None else Path(ep.value)


def select(candidates: Iterable[Candidate], spec: str) -> list[Candidate]:
    """Apply the ``PLUGINS`` setting and return the plugins to load, in load order.

    ``spec`` is a comma list of plugin names. Empty or ``*`` means every plugin
    found. A name prefixed with ``-`` disables that plugin. If the list names
    no plugin without ``-``, it starts from every plugin found, so
    ``PLUGINS=-employees`` means "all but employees"; otherwise only the
    named plugins load (``PLUGINS=auth,site,notes``). Naming a plugin that
    was not found is an error, so a typo never silently changes what runs.
    """
    by_name: dict[str, list[Candidate]] = {}
    for cand in candidates:
        by_name.setdefault(cand.name, []).append(cand)
    items = [item.strip() for item in spec.split(",") if item.strip()]
    wanted = [i for i in items if not i.startswith("-") and i != "*"]
    unwanted = {i[1:].strip() for i in items if i.startswith("-")}
    for name in [*wanted, *unwanted]:
        if name not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            raise PluginError(name, f"PLUGINS={spec}", f"PLUGINS names a plugin that was not found (found: {known})")
    names = set(wanted) if wanted and "*" not in items else set(by_name)
    selected = []
    for name in sorted(names - unwanted):
        cands = by_name[name]
        if not PLUGIN_NAME.match(name):
            raise PluginError(name, cands[0].path, "plugin names must be lowercase letters, digits and _, starting with a letter")
        if len(cands) > 1:
            where = " and ".join(f"{c.source} ({c.path})" for c in cands)
            raise PluginError(name, cands[0].path, f"found twice: {where}; remove one, or disable the name with PLUGINS")
        selected.append(cands[0])
    return selected


def _where(exc: BaseException) -> str:
    """``file:line`` of the deepest frame of ``exc`` (or of a SyntaxError's own location)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" at {exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}{_where(exc)}"


def import_plugin(cand: Candidate) -> Any:
    """Import a plugin (a package folder, or an entry point's module)."""
    if cand.entry_point is not None:
        try:
            return cand.entry_point.load()
        except Exception as exc:
            raise PluginError(cand.name, cand.path, f"failed to import: {_describe(exc)}") from exc
    assert cand.folder is not None
    folder = cand.folder.resolve()
    if folder.parent == PROJECT_PLUGINS:
        module_name = f"plugins.{cand.name}"
    else:
        digest = hashlib.sha1(str(folder.parent).encode()).hexdigest()[:10]
        module_name = f"turnstile_plugins_{digest}.{cand.name}"
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
        for key in [k for k in sys.modules if k == module_name or k.startswith(module_name + ".")]:
            sys.modules.pop(key, None)
        raise PluginError(cand.name, cand.path, f"failed to import: {_describe(exc)}") from exc
    return module


def plugin_routes(ctx: PluginContext) -> list[Route]:
    """The plugin's routes, checked, with its context added to each handler's kwargs."""
    if not hasattr(ctx.module, "routes"):
        raise PluginError(ctx.name, ctx.path, "declares no `routes` (a list of (pattern, handler) tuples, or a function returning one)")
    declared = ctx.module.routes
    if callable(declared):
        try:
            declared = declared(ctx)
        except Exception as exc:
            raise PluginError(ctx.name, ctx.path, f"routes(plugin) failed: {_describe(exc)}") from exc
    if isinstance(declared, (str, bytes)) or not isinstance(declared, Iterable):
        raise PluginError(ctx.name, ctx.path, "`routes` must be a list of (pattern, handler[, kwargs]) tuples")
    out = []
    for entry in declared:
        if not isinstance(entry, tuple) or len(entry) not in (2, 3) or not isinstance(entry[0], str):
            raise PluginError(ctx.name, ctx.path, f"bad route entry {entry!r}: expected (pattern, handler[, kwargs])")
        pattern, handler = entry[0], entry[1]
        kwargs = dict(entry[2]) if len(entry) == 3 else {}
        try:
            re.compile(pattern)
        except re.error as exc:
            raise PluginError(ctx.name, ctx.path, f"route {pattern!r} is not a valid regular expression: {exc}") from None
        check_handler(ctx, handler, f"route {pattern!r}")
        out.append((pattern, handler, {**kwargs, "plugin": ctx}))
    return out


def check_handler(ctx: PluginContext, handler: Any, where: str) -> None:
    """Refuse any handler that is not a BaseHandler, or whose public/protected status is not its own."""
    if not (inspect.isclass(handler) and issubclass(handler, BaseHandler)):
        raise PluginError(
            ctx.name, ctx.path, f"{where}: handler {handler!r} must derive from core.plugin.BaseHandler, which carries the auth check"
        )
    own = handler.__dict__.get("public", None)
    if own is None:
        if handler.public is not False:
            raise PluginError(
                ctx.name,
                ctx.path,
                f"{where}: handler {handler.__qualname__} inherits public access; mark it @public or @protected itself",
            )
    elif type(own) is not bool:
        raise PluginError(ctx.name, ctx.path, f"{where}: {handler.__qualname__}.public must be True or False, not {own!r}")


def plugin_config(cand: Candidate, module: Any, env: Mapping[str, str], others: Iterable[str] = ()) -> Any:
    """The plugin's typed settings if its module declares ``Config``, else its ``TURNSTILE_<NAME>_*`` strings.

    ``others``: the other plugins' names, so that ``TURNSTILE_AUTH_RECOVERY_*`` is not read as ``auth``'s.
    """
    declared = getattr(module, "Config", None)
    if declared is None:
        return raw_config(cand.name, env, others)
    return load_config(cand.name, cand.path, declared, env, others)


def find_plugins(
    plugins_dir: Path, spec: str = "", extra: Mapping[str, Path] | None = None, installed: bool = True
) -> list[Candidate]:
    """Every plugin to load, checked and in load order (see `select`)."""
    candidates = discover_folder(plugins_dir)
    for name, folder in (extra or {}).items():
        folder = Path(folder)
        candidates.append(Candidate(name, folder / "__init__.py", f"folder {folder}", folder=folder))
    if installed:
        candidates.extend(discover_installed())
    return select(candidates, spec)


def load_plugins(
    plugins_dir: Path, services: Services, extra: Mapping[str, Path] | None = None, installed: bool = True
) -> list[PluginContext]:
    """Import every selected plugin and build its context."""
    contexts = []
    candidates = find_plugins(plugins_dir, services.settings.plugins, extra, installed)
    names = [cand.name for cand in candidates]
    for cand in candidates:
        module = import_plugin(cand)
        contexts.append(
            PluginContext(
                name=cand.name,
                path=cand.path,
                module=module,
                services=services,
                db=Namespace(services.store, cand.name),
                log=logging.getLogger(f"turnstile.plugins.{cand.name}"),
                config=plugin_config(cand, module, services.settings.extra, names),
                source=cand.source,
            )
        )
    return contexts


def build_routes(
    contexts: list[PluginContext], reserved: Mapping[str, str] | None = None
) -> tuple[list[Route], tuple[type, dict[str, Any]] | None]:
    """All routes in plugin order, refusing a pattern claimed twice; plus the default handler.

    ``reserved`` maps patterns the core serves itself to a description of their owner.
    """
    routes: list[Route] = []
    owners: dict[str, str] = dict(reserved or {})
    default: tuple[type, dict[str, Any]] | None = None
    default_owner: PluginContext | None = None
    for ctx in contexts:
        for pattern, handler, kwargs in plugin_routes(ctx):
            if pattern in owners:
                raise PluginError(ctx.name, ctx.path, f"route {pattern!r} is already claimed by {owners[pattern]}")
            owners[pattern] = f"plugin {ctx.name!r} ({ctx.path})"
            routes.append((pattern, handler, kwargs))
        fallback = getattr(ctx.module, "default_handler", None)
        if fallback is not None:
            if default_owner is not None:
                raise PluginError(
                    ctx.name, ctx.path, f"default_handler is already declared by plugin {default_owner.name!r} ({default_owner.path})"
                )
            check_handler(ctx, fallback, "default_handler")
            default, default_owner = (fallback, {"plugin": ctx}), ctx
    return routes, default


async def run_setup(ctx: PluginContext) -> None:
    """Run the plugin's optional ``setup(plugin)``; a failure is a `PluginError`."""
    setup = getattr(ctx.module, "setup", None)
    if setup is None:
        return
    try:
        result = setup(ctx)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        raise PluginError(ctx.name, ctx.path, f"setup failed: {_describe(exc)}") from exc
